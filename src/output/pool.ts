/** Human views of `dbops pool` and `dbops locks`: tables, the blocking tree, findings. */
import type { ChalkInstance } from 'chalk';
import type { Finding } from '../diagnostics/findings.js';
import type { BlockingTree, LockNode } from '../diagnostics/locks.js';
import type { PgBouncerView } from '../diagnostics/pgbouncer.js';
import type { LocksReport, PoolReport } from '../diagnostics/pool.js';
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
  c: ChalkInstance;
  colour: boolean;
  /** Draw the whole blocking tree (pool --locks). */
  showLocks: boolean;
}

export function renderPool(r: PoolReport, o: RenderOptions): string {
  const { c, colour } = o;
  const out: string[] = [];
  out.push(c.bold(`PostgreSQL ${r.server.version}`) + c.dim(`  database ${r.server.database} as ${r.server.user}  snapshot ${r.takenAt}`));
  const p = r.pool;
  out.push(
    `pool      active ${p.active}  idle ${p.idle}  idle in transaction ${p.idleInTransaction}  waiting ${p.waiting === null ? 'n/a (no PgBouncer console)' : p.waiting}  lock waits ${p.lockWaiting}  max ${p.max} (usable ${p.usable})`,
  );
  const m = r.metrics;
  const err =
    m.errorRate === null ? 'n/a' : `${(m.errorRate * 100).toFixed(2)}% (${int(m.xactRollback)} of ${int(m.xactCommit + m.xactRollback)} transactions)`;
  out.push(
    `metrics   total connections ${m.totalConnections}  active queries ${m.activeQueries}  avg query time ${m.avgQueryTimeMs === null ? 'n/a' : `${m.avgQueryTimeMs.toFixed(2)} ms`}  slow queries ${m.slowQueries === null ? 'n/a' : m.slowQueries} (mean > ${m.slowQueryMs} ms)  error rate ${err}`,
  );
  const h = r.headroom;
  const free = h.free <= 0 ? c.red(String(h.free)) : h.free < h.usable * r.thresholds.headroomWarnRatio ? c.yellow(String(h.free)) : c.green(String(h.free));
  out.push(`headroom  ${h.formula.replace(/= -?\d+$/, `= ${free}`)} free`);
  out.push('');
  out.push(c.bold('Connections by database, application, user, client and state'));
  out.push(
    r.groups.length
      ? renderTable({
          head: ['database', 'application', 'user', 'client', 'state', 'count', 'longest in state', 'oldest xact'],
          rows: r.groups.map((g) => [
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
  if (r.idleInTransaction.length) {
    out.push('');
    out.push(c.bold(`Idle in transaction (${r.idleInTransaction.length})`));
    out.push(
      renderTable({
        head: ['pid', 'application', 'user', 'idle for', 'transaction age', 'xid age held', 'last query'],
        rows: r.idleInTransaction.map((s) => [
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
    out.push(c.dim(`to end one (dbops never does): ${r.idleInTransaction[0]?.terminate ?? ''}`));
  }
  out.push('');
  out.push(c.bold(`Long-running queries over ${fmtAge(r.thresholds.longMs)} (${r.longRunning.length})`));
  if (r.longRunning.length) {
    out.push(
      renderTable({
        head: ['pid', 'application', 'user', 'running', 'waiting on', 'query'],
        rows: r.longRunning.map((s) => [
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
    out.push(c.dim(`to cancel one (dbops never does): ${r.longRunning[0]?.cancel ?? ''}`));
  } else out.push('none');
  out.push('');
  if (o.showLocks) {
    out.push(renderTree(r.locks, c));
  } else {
    out.push(
      r.locks.waiterCount
        ? `${c.bold('Lock waits')}: ${r.locks.waiterCount} session(s) wait behind ${r.locks.roots.length} root(s): dbops locks (or pool --locks) draws the tree`
        : `${c.bold('Lock waits')}: none`,
    );
  }
  if (r.pgbouncer) {
    out.push('');
    if ('pools' in r.pgbouncer) out.push(renderBouncer(r.pgbouncer, c, colour));
    else out.push(`${c.bold('PgBouncer')}: ${r.pgbouncer.error ?? 'not read'}`);
  }
  out.push('');
  out.push(c.bold('Capacity budget'));
  if (r.budget) for (const line of r.budget.lines) out.push(`  ${line}`);
  else out.push(c.dim('  give --app-instances N (and --app-pool-size, --surge) to check what the application may open against the limits'));
  out.push('');
  out.push(renderFindings(r.findings, c));
  return out.join('\n');
}

function renderBouncer(b: PgBouncerView, c: ChalkInstance, colour: boolean): string {
  const out: string[] = [];
  const cfg = b.config;
  out.push(
    c.bold(`PgBouncer ${b.version ?? ''}`) +
      c.dim(
        `  pool_mode ${cfg.poolMode ?? '?'}  max_client_conn ${cfg.maxClientConn ?? '?'}  default_pool_size ${cfg.defaultPoolSize ?? '?'}  reserve_pool_size ${cfg.reservePoolSize ?? '?'}  max_db_connections ${cfg.maxDbConnections ?? '?'}`,
      ),
  );
  if (b.error) out.push(c.yellow(`console read incomplete: ${b.error}`));
  if (b.pools.length === 0) out.push('no pools yet');
  else {
    out.push(
      renderTable({
        head: ['pool', 'mode', 'cl active', 'cl waiting', 'max wait', 'sv active', 'sv idle', 'sv used', 'backends (PostgreSQL)'],
        rows: b.pools.map((p) => {
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
  for (const p of b.pools) if (p.explanation) out.push(p.explanation);
  return out.join('\n');
}

function nodeLine(n: LockNode, c: ChalkInstance): string {
  const parts: string[] = [c.bold(n.pid === 0 ? 'prepared transaction' : `pid ${n.pid}`)];
  if (n.root) {
    const age = n.state?.startsWith('idle') ? n.stateAgeMs : n.queryAgeMs;
    parts.push(c.red(`${n.state ?? '?'} ${fmtAge(age)}`));
  } else {
    const target = n.waitingFor ? `${n.waitingFor.mode} on ${n.waitingFor.relation ?? n.waitingFor.locktype}` : 'a lock';
    parts.push(c.yellow(`waiting ${fmtAge(n.waitingFor?.waitMs ?? n.queryAgeMs)} for ${target}`));
    const soft = n.blockedBy.filter((b) => b.kind === 'queued').map((b) => b.pid);
    const others = n.blockedBy.map((b) => b.pid);
    if (others.length > 1) parts.push(`blocked by ${others.join(', ')}`);
    if (soft.length) parts.push(c.dim(`queued behind waiter ${soft.join(', ')}`));
  }
  if (n.xactAgeMs !== null) parts.push(`xact ${fmtAge(n.xactAgeMs)}`);
  parts.push(`app=${app(n.application)}`);
  if (n.user) parts.push(`user=${n.user}`);
  if (n.cycle) parts.push(c.red('(wait cycle)'));
  parts.push(c.cyan(oneLine(n.query, 70)));
  return parts.join('  ');
}

export function renderTree(tree: BlockingTree, c: ChalkInstance): string {
  if (tree.roots.length === 0) return `${c.bold('Blocking tree')}: no session waits on a lock`;
  const out: string[] = [c.bold(`Blocking tree: ${tree.waiterCount} waiting session(s), ${tree.roots.length} root(s)`)];
  const visit = (n: LockNode, prefix: string, last: boolean, depth: number) => {
    const branch = depth === 0 ? '' : last ? '└─ ' : '├─ ';
    out.push(`${prefix}${branch}${nodeLine(n, c)}`);
    const next = depth === 0 ? '   ' : `${prefix}${last ? '   ' : '│  '}`;
    n.children.forEach((ch, i) => {
      visit(ch, next, i === n.children.length - 1, depth + 1);
    });
  };
  for (const r of tree.roots) {
    visit(r, '', true, 0);
    if (r.terminate) out.push(c.dim(`   to end the root (dbops never does): ${r.terminate}`));
  }
  return out.join('\n');
}

export function renderFindings(findings: Finding[], c: ChalkInstance): string {
  if (findings.length === 0) return c.green('Findings: none');
  const out = [c.bold(`Findings (${findings.length})`)];
  for (const f of findings) {
    const label = f.severity === 'critical' ? c.red('CRITICAL') : f.severity === 'warning' ? c.yellow('WARNING ') : c.blue('INFO    ');
    out.push(`${label} ${f.message}`);
    out.push(`         ${c.dim('→')} ${f.suggestion}`);
  }
  return out.join('\n');
}

export function renderLocks(r: LocksReport, c: ChalkInstance): string {
  return [c.dim(`snapshot ${r.takenAt}`), renderTree(r.locks, c), '', renderFindings(r.findings, c)].join('\n');
}
