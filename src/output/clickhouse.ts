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

function users(g: QueryGroup): string {
  return g.users.length <= 2 ? g.users.join(', ') : `${g.users.slice(0, 2).join(', ')} +${g.users.length - 2}`;
}

export interface RenderClickHouseSlowOptions {
  full: boolean;
}

export function renderClickHouseSlow(r: ClickHouseSlowReport, c: ChalkInstance, colour: boolean, opts: RenderClickHouseSlowOptions): string {
  const lines: string[] = [];
  const s = r.server;
  lines.push(
    `system.query_log on ClickHouse ${s.version} at ${s.endpoint} as ${s.user}; ${r.window.from} to ${r.window.to} (${fmtDuration(r.window.seconds * 1000)})`,
    `${r.totals.statements} queries, ${fmtCount(r.totals.calls)} executions (${r.totals.failed} failed), ${fmtDuration(r.totals.totalMs)} in total; ` +
      `${r.totals.slowStatements} slow (mean ≥ ${r.slowRule.minMeanMs} ms over ≥ ${r.slowRule.minCalls} executions); sorted by ${r.sort}; ` +
      `grouped by ${s.grouping === 'normalized_query_hash' ? 'normalized_query_hash' : "dbops' normalized text"}`,
  );
  if (r.statements.length === 0) {
    lines.push(r.onlySlow ? 'no slow queries in this window' : 'no queries logged in this window');
  } else {
    const rows = r.statements.map((g, i) => [
      String(i + 1),
      g.slow ? c.red('slow') : '',
      fmtCount(g.calls),
      g.failed ? c.red(fmtCount(g.failed)) : '',
      ms(g.totalMs),
      g.slow ? c.red(ms(g.meanMs)) : ms(g.meanMs),
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
    if (r.truncated) lines.push(c.dim(`showing ${r.statements.length}; --limit 0 shows all`));
    for (const [i, g] of r.statements.entries()) {
      if (g.lastError) lines.push(`${c.red('✗')} #${i + 1} ${g.failed} of ${g.calls} failed; last at ${g.lastError.at}: ${oneLine(g.lastError.message, 160)}`);
    }
  }
  if (opts.full) {
    for (const [i, g] of r.statements.entries()) {
      const tables = g.tables === null ? 'not recorded by this server' : g.tables.join(', ') || '(none)';
      lines.push(`\n#${i + 1} queryid ${g.queryid}; users ${g.users.join(', ')}; tables ${tables}; first ${g.firstSeen}, last ${g.lastSeen}\n${g.query}`);
    }
  }
  for (const note of r.notes) lines.push(`${c.yellow('note:')} ${note}`);
  if (r.gates) lines.push(...renderGates(r.gates, c, { items: 'queries', calls: 'executions', roles: false }));
  return lines.join('\n');
}

function headroomText(h: Headroom | null, setting: string, c: ChalkInstance, warnRatio: number): string {
  if (!h) return `${setting} unknown`;
  const free = h.free <= 0 ? c.red(String(h.free)) : h.free < h.max * warnRatio ? c.yellow(String(h.free)) : c.green(String(h.free));
  return `${h.inUse} of ${setting} ${h.max}, ${free} free`;
}

export function renderClickHousePool(r: ClickHousePoolReport, o: { c: ChalkInstance; colour: boolean }): string {
  const { c, colour } = o;
  const out: string[] = [];
  const k = r.connections;
  const v = (x: number | null) => (x === null ? 'n/a' : String(x));
  out.push(c.bold(`ClickHouse ${r.server.version}`) + c.dim(`  ${r.server.endpoint} as ${r.server.user}  snapshot ${r.takenAt}`));
  out.push(
    `connections  tcp ${v(k.tcp)}  http ${v(k.http)}  interserver ${v(k.interserver)}${k.mysql !== null ? `  mysql ${k.mysql}` : ''}${k.postgresql !== null ? `  postgresql ${k.postgresql}` : ''}  (dbops' own http connection included)`,
  );
  const w = r.thresholds.headroomWarnRatio;
  out.push(
    `headroom     connections: ${headroomText(r.headroom.connections, 'max_connections', c, w)}; queries: ${headroomText(r.headroom.queries, 'max_concurrent_queries', c, w)}`,
  );
  out.push('');
  out.push(c.bold(`Running queries (${r.running.length}), longest first`));
  out.push(
    r.running.length
      ? renderTable({
          head: ['elapsed', 'user', 'memory', 'peak', 'rows read', 'query_id', 'query'],
          rows: r.running.map((q) => [
            q.elapsedMs >= r.thresholds.longMs ? c.red(fmtAge(q.elapsedMs)) : fmtAge(q.elapsedMs),
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
      : c.dim('none (besides this one)'),
  );
  out.push('');
  out.push(renderFindings(r.findings, c));
  for (const f of r.findings) for (const s of f.statements ?? []) out.push(c.dim(`   to stop it (dbops never does): ${s}`));
  return out.join('\n');
}
