/**
 * Verdicts on a pool or locks snapshot: a severity, one sentence, one suggestion. Pure. The
 * rules and thresholds are documented in docs/pool.md ("Findings"); any critical finding makes
 * `dbops pool` / `dbops locks` exit 3.
 */
import type { Backend, Headroom, ServerInfo, SessionRow, StatementStats } from './activity.js';
import { xidHeldBack } from './activity.js';
import type { BlockingTree, LockNode } from './locks.js';
import { walkTree } from './locks.js';
import type { PgBouncerView } from './pgbouncer.js';
import type { CapacityBudget } from './pool-budget.js';

export type Severity = 'info' | 'warning' | 'critical';

export interface Finding {
  severity: Severity;
  code: string;
  message: string;
  suggestion: string;
  /** Sessions concerned, when any. */
  pids?: number[];
  /** Statements a person may choose to run (dbops never runs them). */
  statements?: string[];
}

export interface Thresholds {
  /** Long-running query, idle in transaction, and a lock wait that is critical (ms). */
  longMs: number;
  /** pg_stat_statements: a statement whose mean time exceeds this is slow (ms). */
  slowMs: number;
  /** Warn when fewer than this share of usable slots is free. */
  headroomWarnRatio: number;
  xidWarn: number;
  xidCritical: number;
  /** PgBouncer: a client waiting this long is critical (ms). */
  bouncerWaitCriticalMs: number;
  errorRateWarn: number;
  errorRateMinXacts: number;
  /** Info when idle connections take more than this share of usable slots. */
  idleShareInfo: number;
}

export const DEFAULT_THRESHOLDS: Thresholds = {
  longMs: 60_000,
  slowMs: 1000,
  headroomWarnRatio: 0.1,
  xidWarn: 10_000_000,
  xidCritical: 200_000_000,
  bouncerWaitCriticalMs: 5000,
  errorRateWarn: 0.05,
  errorRateMinXacts: 100,
  idleShareInfo: 0.5,
};

export interface FindingsInput {
  server?: ServerInfo;
  backends?: Backend[];
  headroom?: Headroom;
  idleInTransaction?: SessionRow[];
  longRunning?: SessionRow[];
  locks: BlockingTree;
  statements?: StatementStats;
  errorRate?: { rate: number | null; xacts: number };
  pgbouncer?: PgBouncerView | null;
  /** PGBOUNCER_ADMIN_URL was configured but the console could not be reached. */
  pgbouncerError?: string | null;
  budget?: CapacityBudget | null;
}

const SEVERITY_ORDER: Record<Severity, number> = { critical: 0, warning: 1, info: 2 };
export const sec = (ms: number | null | undefined) =>
  ms === null || ms === undefined ? '?' : ms >= 10_000 ? `${Math.round(ms / 1000)} s` : `${(ms / 1000).toFixed(1)} s`;
const app = (name: string) => `app=${name || '(none)'}`;

function byApp<T extends { application: string }>(rows: T[]): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const r of rows) m.set(r.application, [...(m.get(r.application) ?? []), r]);
  return m;
}

function lockFindings(tree: BlockingTree, t: Thresholds): Finding[] {
  const out: Finding[] = [];
  for (const root of tree.roots) {
    const waiters = walkTree({ roots: [root], waiterCount: 0 })
      .slice(1)
      .map((x) => x.node);
    // How long each has waited for its lock (PostgreSQL 14+), else how long its query has run.
    const longest = waiters.reduce((a, w) => Math.max(a, w.waitingFor?.waitMs ?? w.queryAgeMs ?? 0), 0);
    const what = describeRoot(root);
    const ddl = waiters.find((w) =>
      /^\s*(ALTER|CREATE\s+INDEX|DROP|TRUNCATE|VACUUM\s+FULL|REINDEX|CLUSTER)\b/i.test(w.query ?? ''),
    );
    const idle = root.state?.startsWith('idle in transaction');
    const suggestion = [
      idle
        ? `the root is idle in a transaction: fix the code path that leaves it open, set idle_in_transaction_session_timeout; if it must go now, run ${(root.terminate ?? '').replace(/;$/, '')}`
        : root.terminate
          ? `if the root's work can be lost, run ${root.terminate.replace(/;$/, '')}`
          : 'commit or roll back the prepared transaction (COMMIT PREPARED / ROLLBACK PREPARED)',
      ddl ? `run DDL with SET lock_timeout = '2s' so a queued ALTER does not stall every reader (pid ${ddl.pid})` : '',
    ]
      .filter(Boolean)
      .join('; ');
    out.push({
      severity: longest >= t.longMs ? 'critical' : 'warning',
      code: 'lock-blocking',
      message: `pid ${root.pid} (${what}) blocks ${waiters.length} session${waiters.length === 1 ? '' : 's'}; longest wait ${sec(longest)}`,
      suggestion,
      pids: [root.pid, ...waiters.map((w) => w.pid)],
      ...(root.terminate ? { statements: [root.terminate] } : {}),
    });
  }
  return out;
}

function describeRoot(root: LockNode): string {
  const state = root.state ?? 'state unknown';
  const age = root.state?.startsWith('idle') ? root.stateAgeMs : root.queryAgeMs;
  return `${state} ${sec(age)}, ${app(root.application)}${root.xactAgeMs !== null ? `, transaction open ${sec(root.xactAgeMs)}` : ''}`;
}

export function evaluateFindings(input: FindingsInput, t: Thresholds = DEFAULT_THRESHOLDS): Finding[] {
  const out: Finding[] = [];
  const h = input.headroom;
  if (h) {
    if (h.free <= 0) {
      out.push({
        severity: 'critical',
        code: 'headroom-exhausted',
        message: `no connection slots left for ordinary roles: ${h.selfInReservedSlot ? `${h.inUse - 1} in use by others` : `${h.inUse} in use`} of ${h.usable} usable (${h.formula})`,
        suggestion: `find who holds connections in the groups above; lower application pool sizes or put PgBouncer in front${
          h.selfInReservedSlot
            ? " (dbops itself got in through a reserved slot: the application's roles are being refused now)"
            : ''
        }`,
      });
    } else if (h.free < Math.max(1, h.usable * t.headroomWarnRatio)) {
      out.push({
        severity: 'warning',
        code: 'headroom-low',
        message: `only ${h.free} of ${h.usable} usable connection slots are free`,
        suggestion: 'check the capacity budget (--app-instances) before the next deploy or scale-out',
      });
    }
  }
  out.push(...lockFindings(input.locks, t));
  const idleTx = (input.idleInTransaction ?? []).filter((s) => (s.stateAgeMs ?? 0) >= t.longMs);
  for (const [name, rows] of byApp(idleTx)) {
    out.push({
      severity: 'warning',
      code: 'idle-in-transaction',
      message: `${rows.length} session${rows.length === 1 ? '' : 's'} idle in transaction for over ${sec(t.longMs)} from ${app(name)} (longest ${sec(Math.max(...rows.map((r) => r.stateAgeMs ?? 0)))})`,
      suggestion:
        'set idle_in_transaction_session_timeout (or PgBouncer idle_transaction_timeout) and close transactions in the application',
      pids: rows.map((r) => r.pid),
      statements: rows.map((r) => r.terminate),
    });
  }
  const holders = (input.backends ?? []).map((b) => ({ b, age: xidHeldBack(b) ?? 0 })).sort((a, b) => b.age - a.age);
  const top = holders[0];
  if (top && top.age >= t.xidWarn) {
    out.push({
      severity: top.age >= t.xidCritical ? 'critical' : 'warning',
      code: 'xid-held-back',
      message: `pid ${top.b.pid} (${app(top.b.application)}, ${top.b.state ?? '?'}) holds back the xmin horizon by ${top.age.toLocaleString('en-US')} transactions`,
      suggestion: `vacuum cannot remove rows newer than its snapshot: end that transaction (SELECT pg_terminate_backend(${top.b.pid}))`,
      pids: [top.b.pid],
      statements: [`SELECT pg_terminate_backend(${top.b.pid});`],
    });
  }
  for (const [name, rows] of byApp(input.longRunning ?? [])) {
    out.push({
      severity: 'warning',
      code: 'long-running',
      message: `${rows.length} quer${rows.length === 1 ? 'y' : 'ies'} from ${app(name)} running for over ${sec(t.longMs)} (longest ${sec(Math.max(...rows.map((r) => r.queryAgeMs ?? 0)))})`,
      suggestion: 'set statement_timeout for the application role; cancel one with the statement shown',
      pids: rows.map((r) => r.pid),
      statements: rows.map((r) => r.cancel ?? r.terminate),
    });
  }
  if (input.pgbouncerError) {
    out.push({
      severity: 'warning',
      code: 'pgbouncer-unreadable',
      message: `PgBouncer admin console could not be read: ${input.pgbouncerError}`,
      suggestion:
        'check PGBOUNCER_ADMIN_URL: the user must be in admin_users or stats_users; the database is "pgbouncer"',
    });
  }
  const bouncer = input.pgbouncer;
  if (bouncer) {
    for (const p of bouncer.pools) {
      if (p.clWaiting > 0) {
        const idle = p.backends.filter((b) => b.state?.startsWith('idle in transaction')).length;
        out.push({
          severity: p.maxWaitMs >= t.bouncerWaitCriticalMs ? 'critical' : 'warning',
          code: 'pgbouncer-clients-waiting',
          message: p.explanation ?? `${p.clWaiting} clients waiting on pool ${p.database}/${p.user}`,
          suggestion:
            idle > 0
              ? 'server connections are held by open transactions: set idle_transaction_timeout in PgBouncer and fix the application'
              : 'the pool is busy: find slow queries (dbops slow), or raise pool_size if PostgreSQL has headroom',
          pids: p.backends.map((b) => b.pid),
        });
      }
    }
    const modes = new Set(bouncer.pools.map((p) => p.poolMode).filter(Boolean));
    if (modes.size === 0 && bouncer.config.poolMode) modes.add(bouncer.config.poolMode);
    for (const mode of modes) {
      if (mode !== 'transaction') {
        const names = bouncer.pools.filter((p) => p.poolMode === mode).map((p) => `${p.database}/${p.user}`);
        out.push({
          severity: 'warning',
          code: 'pgbouncer-pool-mode',
          message: `PgBouncer pool mode is ${mode}${names.length ? ` for ${names.join(', ')}` : ''}: a Prisma application needs transaction mode`,
          suggestion:
            mode === 'session'
              ? 'set pool_mode = transaction: in session mode each client keeps a server connection for its whole life'
              : 'set pool_mode = transaction: statement mode breaks multi-statement transactions',
        });
      }
    }
  }
  for (const c of input.budget?.checks ?? []) {
    if (c.ok) continue;
    const critical = c.id !== 'app-vs-pgbouncer-pools';
    out.push({
      severity: critical ? 'critical' : 'info',
      code: `budget-${c.id}`,
      message: c.text,
      suggestion:
        c.id === 'app-vs-postgres'
          ? 'lower DATABASE_POOL_SIZE, run fewer instances, put PgBouncer in front, or raise max_connections'
          : c.id === 'app-vs-max-client-conn'
            ? 'raise max_client_conn in PgBouncer (it costs little memory) or lower the application pool size'
            : c.id === 'pgbouncer-vs-postgres'
              ? 'lower default_pool_size / reserve_pool_size, set max_db_connections, or raise max_connections'
              : 'expected with PgBouncer; make sure the application pool has a connectionTimeoutMillis so requests fail instead of waiting forever',
    });
  }
  const err = input.errorRate;
  if (
    err?.rate !== null &&
    err !== undefined &&
    err.rate !== null &&
    err.xacts >= t.errorRateMinXacts &&
    err.rate >= t.errorRateWarn
  ) {
    out.push({
      severity: 'warning',
      code: 'error-rate',
      message: `${(err.rate * 100).toFixed(1)}% of ${err.xacts.toLocaleString('en-US')} transactions in this database rolled back (since the statistics were reset)`,
      suggestion:
        'look for failing statements in the server log; rollbacks also come from aborted interactive transactions',
    });
  }
  const st = input.statements;
  if (st && !st.available) {
    out.push({
      severity: 'info',
      code: 'pg-stat-statements-unavailable',
      message: `average query time and slow queries unknown: ${st.reason ?? 'pg_stat_statements unavailable'}`,
      suggestion:
        "add pg_stat_statements to shared_preload_libraries and CREATE EXTENSION pg_stat_statements (see 'dbops doctor')",
    });
  } else if (st && st.slowStatements > 0) {
    out.push({
      severity: 'info',
      code: 'slow-statements',
      message: `${st.slowStatements} statement${st.slowStatements === 1 ? '' : 's'} in this database average over ${t.slowMs} ms`,
      suggestion: 'see them with dbops slow',
    });
  }
  if (input.server && !input.server.canSeeAllQueries) {
    out.push({
      severity: 'warning',
      code: 'limited-visibility',
      message: `role ${input.server.user} cannot see other roles' queries and states`,
      suggestion: 'GRANT pg_monitor (or pg_read_all_stats) to the role dbops uses',
    });
  }
  if (h && input.backends) {
    const idle = input.backends.filter((b) => b.state === 'idle' && !b.self);
    if (h.usable > 0 && idle.length > h.usable * t.idleShareInfo) {
      const top = [...byApp(idle).entries()].sort((a, b) => b[1].length - a[1].length)[0];
      out.push({
        severity: 'info',
        code: 'idle-connections',
        message: `${idle.length} idle connections hold ${Math.round((idle.length / h.usable) * 100)}% of usable slots${top ? ` (most from ${app(top[0])}: ${top[1].length})` : ''}`,
        suggestion: 'lower pool sizes or idleTimeoutMillis in the application, or pool through PgBouncer',
      });
    }
  }
  return out.sort((a, b) => SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity]);
}

/** The worst severity present, or null. */
export function worstSeverity(findings: Finding[]): Severity | null {
  return findings.reduce<Severity | null>(
    (w, f) => (w === null || SEVERITY_ORDER[f.severity] < SEVERITY_ORDER[w] ? f.severity : w),
    null,
  );
}
