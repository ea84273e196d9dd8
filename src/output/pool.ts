/** Human views of `dbops pool` and `dbops locks`: tables, the blocking tree, findings. */
import type { ChalkInstance } from 'chalk';
import type { Finding } from '../diagnostics/findings.js';
import type { BlockingTree, LockNode, WaitTarget } from '../diagnostics/locks.js';
import type { PgBouncerView } from '../diagnostics/pgbouncer.js';
import type { LocksReport, PoolReport, ServerFullReport } from '../diagnostics/pool.js';
import { renderTable } from './table.js';

/** 350 ms, 12.3 s, 4m05s, 2h03m. */
export function fmtAge(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** One line of SQL, at most `max` characters. */
export function oneLine(sql: string | null | undefined, max = 60): string {
  if (sql === null || sql === undefined) return '(not visible)';
  const s = sql.replace(/\s+/g, ' ').trim();
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

const int = (n: number) => n.toLocaleString('en-US');
const app = (name: string) => name || '(none)';

export interface RenderOptions {
  paint: ChalkInstance;
  colour: boolean;
  /** Draw the whole blocking tree (pool --locks). */
  showLocks: boolean;
}

export function renderPool(report: PoolReport | ServerFullReport, options: RenderOptions): string {
  const { paint, colour } = options;
  const out: string[] = [];
  if ('serverFull' in report) {
    out.push(paint.bold(`PostgreSQL ${report.serverFull.endpoint}`) + paint.dim(`  snapshot ${report.takenAt}`));
    out.push(paint.red(`full: ${report.serverFull.message}`));
    if (report.pgbouncer) {
      out.push('');
      if ('pools' in report.pgbouncer) out.push(renderBouncer(report.pgbouncer, paint, colour));
      else out.push(`${paint.bold('PgBouncer')}: ${report.pgbouncer.error ?? 'not read'}`);
    }
    out.push('');
    out.push(renderFindings(report.findings, paint));
    return out.join('\n');
  }
  out.push(
    paint.bold(`PostgreSQL ${report.server.version}`) +
      paint.dim(`  database ${report.server.database} as ${report.server.user}  snapshot ${report.takenAt}`),
  );
  const p = report.pool;
  out.push(
    `pool      active ${p.active}  idle ${p.idle}  idle in transaction ${p.idleInTransaction}  waiting ${p.waiting === null ? 'n/a (no PgBouncer console)' : p.waiting}  lock waits ${p.lockWaiting}  max ${p.max} (usable ${p.usable})`,
  );
  const m = report.metrics;
  const err =
    m.errorRate === null
      ? 'n/a'
      : `${(m.errorRate * 100).toFixed(2)}% (${int(m.xactRollback)} of ${int(m.xactCommit + m.xactRollback)} transactions)`;
  out.push(
    `metrics   total connections ${m.totalConnections}  active queries ${m.activeQueries}  avg query time ${m.avgQueryTimeMs === null ? 'n/a' : `${m.avgQueryTimeMs.toFixed(2)} ms`}  slow queries ${m.slowQueries === null ? 'n/a' : m.slowQueries} (mean > ${m.slowQueryMs} ms)  error rate ${err}`,
  );
  const h = report.headroom;
  const free =
    h.free <= 0
      ? paint.red(String(h.free))
      : h.free < h.usable * report.thresholds.headroomWarnRatio
        ? paint.yellow(String(h.free))
        : paint.green(String(h.free));
  out.push(`headroom  ${h.formula.replace(/= -?\d+$/, `= ${free}`)} free`);
  out.push('');
  out.push(paint.bold('Connections by database, application, user, client and state'));
  out.push(
    report.groups.length
      ? renderTable({
          head: ['database', 'application', 'user', 'client', 'state', 'count', 'longest in state', 'oldest xact'],
          rows: report.groups.map((g) => [
            g.database,
            app(g.application),
            g.user,
            g.clientAddr ?? 'local',
            g.state,
            g.count,
            fmtAge(g.longestInStateMs),
            fmtAge(g.oldestXactMs),
          ]),
          colour,
          alignRight: [5, 6, 7],
        })
      : '(no other connections)',
  );
  if (report.idleInTransaction.length) {
    out.push('');
    out.push(paint.bold(`Idle in transaction (${report.idleInTransaction.length})`));
    out.push(
      renderTable({
        head: ['pid', 'application', 'user', 'idle for', 'transaction age', 'xid age held', 'last query'],
        rows: report.idleInTransaction.map((s) => [
          s.pid,
          app(s.application),
          s.user,
          fmtAge(s.stateAgeMs),
          fmtAge(s.xactAgeMs),
          s.xidHeldBack ?? '',
          oneLine(s.query),
        ]),
        colour,
        alignRight: [0, 3, 4, 5],
      }),
    );
    out.push(paint.dim(`to end one (dbops never does): ${report.idleInTransaction[0]?.terminate ?? ''}`));
  }
  out.push('');
  out.push(paint.bold(`Long-running queries over ${fmtAge(report.thresholds.longMs)} (${report.longRunning.length})`));
  if (report.longRunning.length) {
    out.push(
      renderTable({
        head: ['pid', 'application', 'user', 'running', 'waiting on', 'query'],
        rows: report.longRunning.map((s) => [
          s.pid,
          app(s.application),
          s.user,
          fmtAge(s.queryAgeMs),
          s.waitEventType ? `${s.waitEventType}:${s.waitEvent}` : '',
          oneLine(s.query),
        ]),
        colour,
        alignRight: [0, 3],
      }),
    );
    out.push(paint.dim(`to cancel one (dbops never does): ${report.longRunning[0]?.cancel ?? ''}`));
  } else out.push('none');
  out.push('');
  if (options.showLocks) {
    out.push(renderTree(report.locks, paint));
  } else {
    out.push(
      report.locks.waiterCount
        ? `${paint.bold('Lock waits')}: ${report.locks.waiterCount} session(s) wait behind ${report.locks.roots.length} root(s): dbops locks (or pool --locks) draws the tree`
        : `${paint.bold('Lock waits')}: none`,
    );
  }
  if (report.pgbouncer) {
    out.push('');
    if ('pools' in report.pgbouncer) out.push(renderBouncer(report.pgbouncer, paint, colour));
    else out.push(`${paint.bold('PgBouncer')}: ${report.pgbouncer.error ?? 'not read'}`);
  }
  out.push('');
  out.push(paint.bold('Capacity budget'));
  if (report.budget) for (const line of report.budget.lines) out.push(`  ${line}`);
  else
    out.push(
      paint.dim(
        '  give --app-instances N (and --app-pool-size, --surge) to check what the application may open against the limits',
      ),
    );
  out.push('');
  out.push(renderFindings(report.findings, paint));
  return out.join('\n');
}

function renderBouncer(view: PgBouncerView, paint: ChalkInstance, colour: boolean): string {
  const out: string[] = [];
  const cfg = view.config;
  out.push(
    paint.bold(`PgBouncer ${view.version ?? ''}`) +
      paint.dim(
        `  pool_mode ${cfg.poolMode ?? '?'}  max_client_conn ${cfg.maxClientConn ?? '?'}  default_pool_size ${cfg.defaultPoolSize ?? '?'}  reserve_pool_size ${cfg.reservePoolSize ?? '?'}  max_db_connections ${cfg.maxDbConnections ?? '?'}`,
      ),
  );
  if (view.error) out.push(paint.yellow(`console read incomplete: ${view.error}`));
  if (view.pools.length === 0) out.push('no pools yet');
  else {
    out.push(
      renderTable({
        head: [
          'pool',
          'mode',
          'cl active',
          'cl waiting',
          'max wait',
          'sv active',
          'sv idle',
          'sv used',
          'backends (PostgreSQL)',
        ],
        rows: view.pools.map((p) => {
          const states = new Map<string, number>();
          for (const x of p.backends) {
            const k = `${x.state ?? '?'} app=${app(x.application)}`;
            states.set(k, (states.get(k) ?? 0) + 1);
          }
          const backends = [...states.entries()].map(([k, v]) => `${v} ${k}`).join(', ');
          return [
            `${p.database}/${p.user}`,
            p.poolMode,
            p.clActive,
            p.clWaiting,
            fmtAge(p.maxWaitMs),
            p.svActive,
            p.svIdle,
            p.svUsed,
            backends + (p.unmatchedServers ? ` (+${p.unmatchedServers} not found)` : ''),
          ];
        }),
        colour,
        alignRight: [2, 3, 4, 5, 6, 7],
      }),
    );
  }
  const groups = view.pools.flatMap((p) => p.clientGroups.map((g) => ({ pool: `${p.database}/${p.user}`, g })));
  if (groups.length > 0) {
    out.push(
      renderTable({
        head: ['pool', 'clients', 'state', 'application', 'user', 'address', 'longest wait', 'holding (backend pid)'],
        rows: groups.map(({ pool, g }) => [
          pool,
          g.count,
          g.state,
          app(g.applicationName),
          g.user,
          g.addr,
          g.state === 'waiting' ? (g.longestWaitMs === null ? '?' : fmtAge(g.longestWaitMs)) : '',
          g.linked > 0 ? `${g.linked} (pid ${g.pids.slice(0, 5).join(', ')}${g.pids.length > 5 ? ', …' : ''})` : '',
        ]),
        colour,
        alignRight: [1, 6],
      }),
    );
  }
  for (const p of view.pools) if (p.explanation) out.push(p.explanation);
  return out.join('\n');
}

function nodeLine(node: LockNode, paint: ChalkInstance): string {
  const parts: string[] = [paint.bold(node.pid === 0 ? 'prepared transaction' : `pid ${node.pid}`)];
  if (node.root) {
    const age = node.state?.startsWith('idle') ? node.stateAgeMs : node.queryAgeMs;
    parts.push(paint.red(`${node.state ?? '?'} ${fmtAge(age)}`));
  } else {
    const target = node.waitingFor ? describeWait(node.waitingFor) : 'a lock';
    parts.push(paint.yellow(`waiting ${fmtAge(node.waitingFor?.waitMs ?? node.queryAgeMs)} for ${target}`));
    const soft = node.blockedBy.filter((b) => b.kind === 'queued').map((b) => b.pid);
    const others = node.blockedBy.map((b) => b.pid);
    if (others.length > 1) parts.push(`blocked by ${others.join(', ')}`);
    if (soft.length) parts.push(paint.dim(`queued behind waiter ${soft.join(', ')}`));
  }
  if (node.xactAgeMs !== null) parts.push(`xact ${fmtAge(node.xactAgeMs)}`);
  parts.push(`app=${app(node.application)}`);
  if (node.user) parts.push(`user=${node.user}`);
  if (node.cycle) parts.push(paint.red('(wait cycle)'));
  parts.push(paint.cyan(oneLine(node.query, 70)));
  return parts.join('  ');
}

export function renderTree(tree: BlockingTree, paint: ChalkInstance): string {
  if (tree.roots.length === 0) return `${paint.bold('Blocking tree')}: no session waits on a lock`;
  const out: string[] = [
    paint.bold(`Blocking tree: ${tree.waiterCount} waiting session(s), ${tree.roots.length} root(s)`),
  ];
  const visit = (n: LockNode, prefix: string, last: boolean, depth: number) => {
    const branch = depth === 0 ? '' : last ? '└─ ' : '├─ ';
    out.push(`${prefix}${branch}${nodeLine(n, paint)}`);
    const next = depth === 0 ? '   ' : `${prefix}${last ? '   ' : '│  '}`;
    n.children.forEach((ch, i) => {
      visit(ch, next, i === n.children.length - 1, depth + 1);
    });
  };
  for (const r of tree.roots) {
    visit(r, '', true, 0);
    if (r.terminate) out.push(paint.dim(`   to end the root (dbops never does): ${r.terminate}`));
  }
  return out.join('\n');
}

export function renderFindings(findings: Finding[], paint: ChalkInstance): string {
  if (findings.length === 0) return paint.green('Findings: none');
  const out = [paint.bold(`Findings (${findings.length})`)];
  for (const f of findings) {
    const label =
      f.severity === 'critical'
        ? paint.red('CRITICAL')
        : f.severity === 'warning'
          ? paint.yellow('WARNING ')
          : paint.blue('INFO    ');
    out.push(`${label} ${f.message}`);
    out.push(`         ${paint.dim('→')} ${f.suggestion}`);
  }
  return out.join('\n');
}

export function renderLocks(report: LocksReport, paint: ChalkInstance): string {
  return [
    paint.dim(`snapshot ${report.takenAt}`),
    renderTree(report.locks, paint),
    '',
    renderFindings(report.findings, paint),
  ].join('\n');
}

/** pg_locks' row-lock modes, as the SQL that takes them. */
const ROW_LOCK: Record<string, string> = {
  AccessExclusiveLock: 'FOR UPDATE',
  ExclusiveLock: 'FOR NO KEY UPDATE',
  RowShareLock: 'FOR SHARE',
  AccessShareLock: 'FOR KEY SHARE',
};

/**
 * What a waiter waits for, as it is: a table lock names its mode and table; a row lock names the
 * row and its strength (pg_locks shows FOR UPDATE as AccessExclusiveLock on the tuple, which is no
 * table lock); a wait for another transaction names it and the row involved when known.
 */
export function describeWait(wait: WaitTarget): string {
  if (wait.locktype === 'tuple')
    return `a row lock (${ROW_LOCK[wait.mode] ?? wait.mode}) on row ${wait.row ?? '?'} of ${wait.relation ?? 'a table'}`;
  if (wait.locktype === 'transactionid') {
    const row = wait.rowOf
      ? `: row ${wait.rowOf.row} of ${wait.rowOf.relation}, which it changed or locked`
      : ': a row it changed or locked';
    return `transaction ${wait.transactionId ?? '?'} to end${row}`;
  }
  if (wait.locktype === 'relation') return `${wait.mode} on ${wait.relation ?? 'a table'}`;
  return `${wait.mode} on ${wait.relation ?? `a ${wait.locktype} lock`}`;
}
