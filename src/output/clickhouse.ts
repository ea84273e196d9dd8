/** Human views of ClickHouse: the slow-query report and the `dbops pool` section. */
import type { ChalkInstance } from 'chalk';
import type { ClickHousePoolReport, Headroom } from '../diagnostics/clickhouse/activity.js';
import type { ClickHouseSlowReport, QueryGroup } from '../diagnostics/clickhouse/slow-report.js';
import { fmtAge, oneLine, renderFindings } from './pool.js';
import { fmtDuration, renderGates } from './slow.js';
import { renderTable } from './table.js';

/** 950, 12.3k, 4.5M, 7.1G (counts). */
export function fmtCount(n: number): string {
  if (n < 10_000) return String(Math.round(n));
  if (n < 1_000_000) return `${(n / 1000).toFixed(1)}k`;
  if (n < 1_000_000_000) return `${(n / 1_000_000).toFixed(1)}M`;
  return `${(n / 1_000_000_000).toFixed(1)}G`;
}

/** 512 B, 3.4 KiB, 12.0 MiB, 1.2 GiB. */
export function fmtBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${Math.round(v)} B` : `${v.toFixed(1)} ${units[u]}`;
}

const ms = (n: number) => fmtDuration(n);
const QUERY_WIDTH = 56;

function users(group: QueryGroup): string {
  return group.users.length <= 2
    ? group.users.join(', ')
    : `${group.users.slice(0, 2).join(', ')} +${group.users.length - 2}`;
}

export interface RenderClickHouseSlowOptions {
  full: boolean;
}

export function renderClickHouseSlow(
  report: ClickHouseSlowReport,
  paint: ChalkInstance,
  colour: boolean,
  opts: RenderClickHouseSlowOptions,
): string {
  const lines: string[] = [];
  const server = report.server;
  lines.push(
    `system.query_log on ClickHouse ${server.version} at ${server.endpoint} as ${server.user}; ${report.window.from} to ${report.window.to} (${fmtDuration(report.window.seconds * 1000)})`,
    `${report.totals.statements} queries, ${fmtCount(report.totals.calls)} executions (${report.totals.failed} failed), ${fmtDuration(report.totals.totalMs)} in total; ` +
      `${report.totals.slowStatements} slow (mean ≥ ${report.slowRule.minMeanMs} ms over ≥ ${report.slowRule.minCalls} executions); sorted by ${report.sort}; ` +
      `grouped by ${server.grouping === 'normalized_query_hash' ? 'normalized_query_hash' : "dbops' normalized text"}`,
  );
  if (report.statements.length === 0) {
    lines.push(report.onlySlow ? 'no slow queries in this window' : 'no queries logged in this window');
  } else {
    const rows = report.statements.map((g, i) => [
      String(i + 1),
      g.slow ? paint.red('slow') : '',
      fmtCount(g.calls),
      g.failed ? paint.red(fmtCount(g.failed)) : '',
      ms(g.totalMs),
      g.slow ? paint.red(ms(g.meanMs)) : ms(g.meanMs),
      ms(g.p50Ms),
      ms(g.p95Ms),
      ms(g.p99Ms),
      ms(g.maxMs),
      fmtCount(g.readRows),
      fmtBytes(g.readBytes),
      fmtCount(g.resultRows),
      fmtBytes(g.peakMemoryBytes),
      `${g.sharePct.toFixed(1)}%`,
      users(g),
      oneLine(g.query, QUERY_WIDTH),
    ]);
    lines.push(
      renderTable({
        head: [
          '#',
          '',
          'calls',
          'failed',
          'total',
          'mean',
          'p50',
          'p95',
          'p99',
          'max',
          'rows read',
          'read',
          'result rows',
          'peak mem',
          'share',
          'users',
          'query',
        ],
        rows,
        colour,
        alignRight: [0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
      }),
    );
    if (report.truncated) lines.push(paint.dim(`showing ${report.statements.length}; --limit 0 shows all`));
    for (const [i, g] of report.statements.entries()) {
      if (g.lastError)
        lines.push(
          `${paint.red('✗')} #${i + 1} ${g.failed} of ${g.calls} failed; last at ${g.lastError.at}: ${oneLine(g.lastError.message, 160)}`,
        );
    }
  }
  if (opts.full) {
    for (const [i, g] of report.statements.entries()) {
      const tables = g.tables === null ? 'not recorded by this server' : g.tables.join(', ') || '(none)';
      lines.push(
        `\n#${i + 1} queryid ${g.queryid}; users ${g.users.join(', ')}; tables ${tables}; first ${g.firstSeen}, last ${g.lastSeen}\n${g.query}`,
      );
    }
  }
  for (const note of report.notes) lines.push(`${paint.yellow('note:')} ${note}`);
  if (report.gates)
    lines.push(...renderGates(report.gates, paint, { items: 'queries', calls: 'executions', roles: false }));
  return lines.join('\n');
}

function headroomText(headroom: Headroom | null, setting: string, paint: ChalkInstance, warnRatio: number): string {
  if (!headroom) return `${setting} unknown`;
  const free =
    headroom.free <= 0
      ? paint.red(String(headroom.free))
      : headroom.free < headroom.max * warnRatio
        ? paint.yellow(String(headroom.free))
        : paint.green(String(headroom.free));
  return `${headroom.inUse} of ${setting} ${headroom.max}, ${free} free`;
}

export function renderClickHousePool(
  report: ClickHousePoolReport,
  opts: { paint: ChalkInstance; colour: boolean },
): string {
  const { paint, colour } = opts;
  const out: string[] = [];
  const conns = report.connections;
  const shown = (x: number | null) => (x === null ? 'n/a' : String(x));
  out.push(
    paint.bold(`ClickHouse ${report.server.version}`) +
      paint.dim(`  ${report.server.endpoint} as ${report.server.user}  snapshot ${report.takenAt}`),
  );
  out.push(
    `connections  tcp ${shown(conns.tcp)}  http ${shown(conns.http)}  interserver ${shown(conns.interserver)}${conns.mysql !== null ? `  mysql ${conns.mysql}` : ''}${conns.postgresql !== null ? `  postgresql ${conns.postgresql}` : ''}  (dbops' own http connection included)`,
  );
  const warnRatio = report.thresholds.headroomWarnRatio;
  out.push(
    `headroom     connections: ${headroomText(report.headroom.connections, 'max_connections', paint, warnRatio)}; queries: ${headroomText(report.headroom.queries, 'max_concurrent_queries', paint, warnRatio)}`,
  );
  out.push('');
  out.push(paint.bold(`Running queries (${report.running.length}), longest first`));
  out.push(
    report.running.length
      ? renderTable({
          head: ['elapsed', 'user', 'memory', 'peak', 'rows read', 'query_id', 'query'],
          rows: report.running.map((q) => [
            q.elapsedMs >= report.thresholds.longMs ? paint.red(fmtAge(q.elapsedMs)) : fmtAge(q.elapsedMs),
            q.user,
            fmtBytes(q.memoryBytes),
            fmtBytes(q.peakMemoryBytes),
            fmtCount(q.readRows),
            q.queryId,
            `${q.cancelled ? '(cancelled) ' : ''}${oneLine(q.query, 60)}`,
          ]),
          colour,
          alignRight: [0, 2, 3, 4],
        })
      : paint.dim('none (besides this one)'),
  );
  out.push('');
  out.push(renderFindings(report.findings, paint));
  for (const f of report.findings)
    for (const s of f.statements ?? []) out.push(paint.dim(`   to stop it (dbops never does): ${s}`));
  return out.join('\n');
}
