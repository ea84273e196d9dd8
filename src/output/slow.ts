import type { ChalkInstance } from 'chalk';
import { shortenQuery } from '../diagnostics/prisma-origin.js';
import type { GateResult, SlowQueryReport, StatementStats } from '../diagnostics/slow-queries.js';
import { renderTable } from './table.js';

/** 0.42 ms, 12.3 ms, 1.25 s, 3.2 min. */
export function fmtDuration(ms: number): string {
  if (ms < 1) return `${ms.toFixed(3)} ms`;
  if (ms < 100) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

function fmtCount(n: number): string {
  if (n < 10_000) return String(Math.round(n));
  if (n < 10_000_000) return `${(n / 1000).toFixed(1)}k`;
  return `${(n / 1_000_000).toFixed(1)}M`;
}

function origin(s: StatementStats): string {
  const o = s.origin;
  if (o.source === 'none') return '';
  const text = [o.model, o.operation].filter(Boolean).join('.');
  return o.source === 'sql' ? `${text}?` : text;
}

function maxCell(s: StatementStats): string {
  if (s.maxMs !== null) return fmtDuration(s.maxMs);
  return s.maxUpperBoundMs === undefined ? '' : `≤${fmtDuration(s.maxUpperBoundMs)}`;
}

const QUERY_WIDTH = 60;
const shorten = (q: string) => shortenQuery(q, QUERY_WIDTH);

export interface RenderSlowOptions {
  full: boolean;
  savedTo?: string | undefined;
}

/** The gates' verdict: PostgreSQL judges statements by role, ClickHouse query groups across users. */
export function renderGates(g: GateResult, c: ChalkInstance, words: { items: string; calls: string; roles: boolean }): string[] {
  const what = [
    g.checked.failOnMeanMs !== null ? `mean > ${g.checked.failOnMeanMs} ms` : '',
    g.checked.failOnRegressionPct !== null
      ? `regression > ${g.checked.failOnRegressionPct}% vs a baseline of ${g.checked.baselineStatements} ${words.items}`
      : '',
  ]
    .filter(Boolean)
    .join(', ');
  const scope = `${words.items} with ≥ ${g.checked.gateMinCalls} ${words.calls}`;
  if (!g.failed) return [c.green(`gate passed (${what}; ${scope})`)];
  return [
    c.red(`gate FAILED (${what}; ${scope}):`),
    ...g.failures.map((f) => `  ${c.red('✗')} [${f.kind}] queryid ${f.queryid}${words.roles ? ` (${f.rolname ?? '?'})` : ''}: ${f.message}`),
  ];
}

export function renderSlowQueries(r: SlowQueryReport, c: ChalkInstance, colour: boolean, opts: RenderSlowOptions): string {
  const lines: string[] = [];
  const w = r.window;
  const span = w.seconds === null ? '' : ` (${fmtDuration(w.seconds * 1000)})`;
  const windowText =
    w.mode === 'since-snapshot'
      ? `since the snapshot of ${w.from}${span}`
      : w.from
        ? `since the last full reset at ${w.from}${span} (a reset of one database does not move this time)`
        : 'since the statistics were last reset';
  lines.push(
    `pg_stat_statements ${r.server.pgssVersion} on PostgreSQL ${r.server.serverVersion}, database ${r.server.database}; ${windowText}`,
    `${r.totals.statements} statements, ${fmtCount(r.totals.calls)} calls, ${fmtDuration(r.totals.totalMs)} in total; ` +
      `${r.totals.slowStatements} slow (mean ≥ ${r.slowRule.minMeanMs} ms over ≥ ${r.slowRule.minCalls} calls); sorted by ${r.sort}; ` +
      `total and mean include planning time when tracked, max and stddev are execution only`,
  );
  if (r.statements.length === 0) {
    lines.push(r.onlySlow ? 'no slow statements in this window' : 'no statements recorded in this window');
  } else {
    const rows = r.statements.map((s, i) => [
      String(i + 1),
      s.slow ? c.red('slow') : '',
      fmtCount(s.calls),
      fmtDuration(s.totalMs),
      s.slow ? c.red(fmtDuration(s.meanMs)) : fmtDuration(s.meanMs),
      maxCell(s),
      fmtDuration(s.stddevMs),
      s.rowsPerCall < 10 ? s.rowsPerCall.toFixed(1) : fmtCount(s.rowsPerCall),
      `${s.sharePct.toFixed(1)}%`,
      s.hitRatio === null ? '' : `${(100 * s.hitRatio).toFixed(1)}%`,
      s.tempBlksWritten ? fmtCount(s.tempBlksWritten) : '',
      s.rolname ?? String(s.userid),
      origin(s),
      `${s.status === 'new' ? '(new) ' : s.status === 'reset' ? '(reset) ' : ''}${shorten(s.query)}`,
    ]);
    lines.push(
      renderTable({
        head: ['#', '', 'calls', 'total', 'mean', 'max', 'stddev', 'rows/call', 'share', 'hit', 'temp wr', 'role', 'prisma', 'query'],
        rows,
        colour,
        alignRight: [0, 2, 3, 4, 5, 6, 7, 8, 9, 10],
      }),
    );
    if (r.truncated) lines.push(c.dim(`showing ${r.statements.length}; --limit 0 shows all`));
    if (r.statements.some((s) => s.origin.source === 'sql')) {
      lines.push(c.dim('prisma: Model.operation from a Prisma SQL comment tag; with "?" guessed from the SQL shape'));
    }
  }
  if (opts.full) {
    for (const [i, s] of r.statements.entries()) lines.push(`\n#${i + 1} queryid ${s.queryid} (${s.rolname ?? s.userid})\n${s.query}`);
  }
  for (const note of r.notes) lines.push(`${c.yellow('note:')} ${note}`);
  if (r.disappeared.length > 0 && opts.full) {
    for (const d of r.disappeared) lines.push(`  gone: queryid ${d.queryid} (${d.rolname ?? '?'}) ${shorten(d.query)}`);
  }
  if (r.gates) lines.push(...renderGates(r.gates, c, { items: 'statements', calls: 'calls', roles: true }));
  if (opts.savedTo) lines.push(`snapshot of ${r.server.database} saved to ${opts.savedTo}`);
  return lines.join('\n');
}
