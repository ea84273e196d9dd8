/**
 * ClickHouse in the existing commands: `slow-queries --source clickhouse` and the ClickHouse part
 * of `dbops pool`. Loaded only by those commands (and the client library only when they connect).
 */

import type { ClickHouseConnection } from '../../db/clickhouse.js';
import type { ClickHousePoolReport } from '../../diagnostics/clickhouse/activity.js';
import type { Baseline } from '../../diagnostics/slow-queries.js';
import { CheckFailedError, ConfigError, isDbopsError, messageOf, UsageError } from '../../errors.js';
import type { CommandContext } from '../context.js';
import { gateOptionsOf, type SlowOptions } from './slow-options.js';

/** A connection to CLICKHOUSE_URL, closed when the command ends. */
export async function openClickHouse(
  ctx: CommandContext,
  purpose: string,
  queryTimeoutMs?: number,
): Promise<ClickHouseConnection> {
  const ch = ctx.config.clickhouse;
  if (!ch) {
    throw new ConfigError(`${purpose} needs ClickHouse, and CLICKHOUSE_URL is not set`, {
      hint: 'set CLICKHOUSE_URL=http(s)://user:password@host:8123/database (or --clickhouse-url)',
    });
  }
  ctx.announce(ch.url, ch.brief, 'ClickHouse ');
  const { connectClickHouse } = await import('../../db/clickhouse.js');
  const conn = await connectClickHouse({
    url: ch.url,
    caCert: ch.caCert,
    connectTimeoutMs: ctx.timeoutMs,
    queryTimeoutMs: queryTimeoutMs ?? ch.queryTimeoutMs,
    application: `dbops ${purpose}`,
  });
  ctx.onClose(() => conn.close());
  return conn;
}

/** `dbops slow-queries --source clickhouse`: render the report, then throw CheckFailedError when a gate failed. */
export async function slowClickHouse(ctx: CommandContext, opts: SlowOptions): Promise<void> {
  const postgresOnly = (['save', 'reset', 'allDatabases'] as const).find(
    (k) => opts[k] !== undefined && opts[k] !== false,
  );
  if (postgresOnly) {
    const flag = `--${postgresOnly.replace(/[A-Z]/g, (ch) => `-${ch.toLowerCase()}`)}`;
    throw new UsageError(`${flag} is for PostgreSQL's pg_stat_statements; ClickHouse keeps a log, read over a window`, {
      hint: 'e.g. dbops slow-queries --source clickhouse --since 30m',
    });
  }
  const { CLICKHOUSE_SORT_KEYS, buildClickHouseReport, parseClickHouseBaseline, windowSince } = await import(
    '../../diagnostics/clickhouse/slow-report.js'
  );
  // --sort's choices include p95 and memory, which only this report has.
  const sort = opts.sort as (typeof CLICKHOUSE_SORT_KEYS)[number];
  let baseline: Baseline | undefined;
  if (opts.baseline) {
    const { readJsonFile } = await import('../../diagnostics/slow-queries-collect.js');
    baseline = parseClickHouseBaseline(await readJsonFile(opts.baseline, 'baseline'), opts.baseline);
  }
  const timeoutMs = opts.statementTimeout ?? ctx.config.clickhouse?.queryTimeoutMs;
  const [conn, { readQueryLog }] = await Promise.all([
    openClickHouse(ctx, 'slow-queries', timeoutMs),
    import('../../diagnostics/clickhouse/query-log-read.js'),
  ]);
  const window = windowSince(opts.since ?? '1h', conn.serverNow);
  const read = await readQueryLog(conn, { window, flush: Boolean(opts.flushLogs), timeoutMs: timeoutMs ?? 10_000 });
  const gated = opts.failOnMeanMs !== undefined || baseline !== undefined;
  const report = buildClickHouseReport(read, {
    sort,
    limit: opts.limit,
    slow: { minMeanMs: opts.minMeanMs, minCalls: opts.minCalls },
    onlySlow: Boolean(opts.onlySlow),
    gates: gated ? gateOptionsOf(opts, baseline) : undefined,
  });
  // The table renderer (cli-table3) is loaded only for a person.
  const render = ctx.out.json ? undefined : (await import('../../output/clickhouse.js')).renderClickHouseSlow;
  ctx.out.result(
    report,
    () => render?.(report, ctx.out.c, ctx.out.terminal.colour, { full: Boolean(opts.full) }) ?? '',
  );
  if (report.gates?.failed) {
    const f = report.gates.failures;
    throw new CheckFailedError(
      `slow-query gate failed: ${f.length} ClickHouse quer${f.length === 1 ? 'y' : 'ies'} (${f.map((x) => `queryid ${x.queryid}`).join(', ')})`,
      {
        hint: 'see the report above; --json lists them under gates.failures',
        details: { failures: f.length },
      },
    );
  }
}

type PoolThresholdOptions = { longMs: number; queryTimeout: number };
type SectionInput = ClickHousePoolReport | { error: string; hint?: string | undefined };

/**
 * Reads ClickHouse's pool snapshot; a failure throws (exit 5 for one snapshot, shown by --watch)
 * and the next read connects again.
 */
export function clickhouseReader(ctx: CommandContext, opts: PoolThresholdOptions): () => Promise<ClickHousePoolReport> {
  let conn: ClickHouseConnection | undefined;
  return async () => {
    try {
      conn ??= await openClickHouse(ctx, 'pool', opts.queryTimeout);
      const { collectClickHousePool } = await import('../../diagnostics/clickhouse/activity.js');
      return await collectClickHousePool(conn, {
        timeoutMs: opts.queryTimeout,
        thresholds: { longMs: opts.longMs, headroomWarnRatio: 0.1 },
      });
    } catch (error) {
      const lost = conn;
      conn = undefined;
      await lost?.close().catch(() => {});
      throw error;
    }
  };
}

export interface ClickHousePoolSource {
  /** One snapshot; a failure to connect or read is data (shown beside PostgreSQL's report), not an exit. */
  collect(): Promise<SectionInput>;
}

/** The ClickHouse part of `dbops pool` next to PostgreSQL's. */
export function clickhousePool(ctx: CommandContext, opts: PoolThresholdOptions): ClickHousePoolSource {
  const read = clickhouseReader(ctx, opts);
  return {
    async collect() {
      try {
        return await read();
      } catch (error) {
        return { error: messageOf(error), hint: isDbopsError(error) ? error.hint : undefined };
      }
    },
  };
}

/** Renders a ClickHouse pool snapshot, or why there is none; undefined with --json (no renderer loaded). */
export async function sectionRenderer(ctx: CommandContext): Promise<((r: SectionInput) => string) | undefined> {
  if (ctx.out.json) return undefined;
  const { renderClickHousePool } = await import('../../output/clickhouse.js');
  return (r) =>
    'error' in r
      ? `${ctx.out.c.red('ClickHouse: unreachable:')} ${r.error}${r.hint ? `\n  hint: ${r.hint}` : ''}`
      : renderClickHousePool(r, { paint: ctx.out.c, colour: ctx.out.terminal.colour });
}
