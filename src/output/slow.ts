import type { ChalkInstance } from 'chalk';
import { originLabel, shortenQuery } from '../diagnostics/prisma-origin.js';
import type { GateResult, SlowQueryReport, StatementStats } from '../diagnostics/slow-queries.js';
import { renderTable } from './table.js';

/** 0.42 ms, 12.3 ms, 1.25 s, 3.2 min. */
/** The statements table's columns and how it gives way to a narrow terminal. */
export const SLOW_TABLE = {
  head: [
    '#',
    '',
    'calls',
    'total',
    'mean',
    'max',
    'stddev',
    'rows/call',
    'share',
    'hit',
    'temp wr',
    'role',
    'prisma',
    'query',
  ],
  alignRight: [0, 2, 3, 4, 5, 6, 7, 8, 9, 10],
  // Kept to the last: #, calls, total, mean and the statement itself.
  droppable: [6, 10, 9, 11, 7, 5, 8, 12, 1],
  keep: [0, 2, 3, 4],
};

export function fmtDuration(ms: number): string {
  if (ms < 1) return `${ms.toFixed(3)} ms`;
  if (ms < 100) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

function fmtCount(count: number): string {
  if (count < 10_000) return String(Math.round(count));
  if (count < 10_000_000) return `${(count / 1000).toFixed(1)}k`;
  return `${(count / 1_000_000).toFixed(1)}M`;
}

function origin(stats: StatementStats): string {
  return originLabel(stats.origin);
}

function maxCell(stats: StatementStats): string {
  if (stats.maxMs !== null) return fmtDuration(stats.maxMs);
  return stats.maxUpperBoundMs === undefined ? '' : `≤${fmtDuration(stats.maxUpperBoundMs)}`;
}

const QUERY_WIDTH = 60;
const shorten = (q: string) => shortenQuery(q, QUERY_WIDTH);

export interface RenderSlowOptions {
  full: boolean;
  savedTo?: string | undefined;
}

/** The gates' verdict: PostgreSQL judges statements by role, ClickHouse query groups across users. */
export function renderGates(
  g: GateResult,
  paint: ChalkInstance,
  words: { items: string; calls: string; roles: boolean },
): string[] {
  const what = [
    g.checked.failOnMeanMs !== null ? `mean > ${g.checked.failOnMeanMs} ms` : '',
    g.checked.failOnRegressionPct !== null
      ? `regression > ${g.checked.failOnRegressionPct}% vs a baseline of ${g.checked.baselineStatements} ${words.items}`
      : '',
  ]
    .filter(Boolean)
    .join(', ');
  const scope = `${words.items} with ≥ ${g.checked.gateMinCalls} ${words.calls}`;
  if (!g.failed) return [paint.green(`gate passed (${what}; ${scope})`)];
  return [
    paint.red(`gate FAILED (${what}; ${scope}):`),
    ...g.failures.map(
      (f) =>
        `  ${paint.red('✗')} [${f.kind}] queryid ${f.queryid}${words.roles ? ` (${f.rolname ?? '?'})` : ''}: ${f.message}`,
    ),
  ];
}

export function renderSlowQueries(
  report: SlowQueryReport,
  paint: ChalkInstance,
  colour: boolean,
  opts: RenderSlowOptions,
): string {
  const lines: string[] = [];
  const w = report.window;
  const span = w.seconds === null ? '' : ` (${fmtDuration(w.seconds * 1000)})`;
  const windowText =
    w.mode === 'since-snapshot'
      ? `since the snapshot of ${w.from}${span}`
      : w.from
        ? `since the last full reset at ${w.from}${span} (a reset of one database does not move this time)`
        : 'since the statistics were last reset';
  lines.push(
    `pg_stat_statements ${report.server.pgssVersion} on PostgreSQL ${report.server.serverVersion}, database ${report.server.database}; ${windowText}`,
    `${report.totals.statements} statements, ${fmtCount(report.totals.calls)} calls, ${fmtDuration(report.totals.totalMs)} in total; ` +
      `${report.totals.slowStatements} slow (mean ≥ ${report.slowRule.minMeanMs} ms over ≥ ${report.slowRule.minCalls} calls); sorted by ${report.sort}; ` +
      `total and mean include planning time when tracked, max and stddev are execution only`,
  );
  if (report.statements.length === 0) {
    lines.push(report.onlySlow ? 'no slow statements in this window' : 'no statements recorded in this window');
  } else {
    const rows = report.statements.map((s, i) => [
      String(i + 1),
      s.slow ? paint.red('slow') : '',
      fmtCount(s.calls),
      fmtDuration(s.totalMs),
      s.slow ? paint.red(fmtDuration(s.meanMs)) : fmtDuration(s.meanMs),
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
    lines.push(renderTable({ ...SLOW_TABLE, rows, colour }));
    if (report.truncated) lines.push(paint.dim(`showing ${report.statements.length}; --limit 0 shows all`));
    if (report.statements.some((s) => s.origin.source !== 'none')) {
      lines.push(
        paint.dim(
          'prisma: Model.operation from a Prisma comment or a shape only that call emits; with "?" a guess (--json: origin.note says what else)',
        ),
      );
    }
  }
  if (opts.full) {
    for (const [i, s] of report.statements.entries())
      lines.push(`\n#${i + 1} queryid ${s.queryid} (${s.rolname ?? s.userid})\n${s.query}`);
  }
  for (const note of report.notes) lines.push(`${paint.yellow('note:')} ${note}`);
  if (report.disappeared.length > 0 && opts.full) {
    for (const d of report.disappeared)
      lines.push(`  gone: queryid ${d.queryid} (${d.rolname ?? '?'}) ${shorten(d.query)}`);
  }
  if (report.gates)
    lines.push(...renderGates(report.gates, paint, { items: 'statements', calls: 'calls', roles: true }));
  if (opts.savedTo) lines.push(`snapshot of ${report.server.database} saved to ${opts.savedTo}`);
  return lines.join('\n');
}
