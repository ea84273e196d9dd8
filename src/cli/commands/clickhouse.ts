/**
 * ClickHouse in the existing commands: `slow-queries --source clickhouse` and the ClickHouse part
 * of `dbops pool`. Loaded only by those commands (and the client library only when they connect).
 */
import type { ClickHousePoolReport } from '../../clickhouse/activity.js';
import type { ClickHouseConnection } from '../../db/clickhouse.js';
import type { Baseline } from '../../diagnostics/slow-queries.js';
import { CheckFailedError, ConfigError, ExitCode, UsageError } from '../../errors.js';
import type { CommandContext } from '../context.js';
import { gateOptionsOf, type SlowOptions } from './slow.js';

/** A connection to CLICKHOUSE_URL, closed when the command ends. */
export async function openClickHouse(ctx: CommandContext, purpose: string, queryTimeoutMs?: number): Promise<ClickHouseConnection> {
  const ch = ctx.config.clickhouse;
  if (!ch) {
    throw new ConfigError(`${purpose} needs ClickHouse, and CLICKHOUSE_URL is not set`, {
      hint: 'set CLICKHOUSE_URL=http(s)://user:password@host:8123/database (or --clickhouse-url)',
    });
  }
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
export async function slowClickHouse(ctx: CommandContext, opts: SlowOptions): Promise<number> {
  const postgresOnly = (['save', 'reset', 'allDatabases'] as const).find((k) => opts[k] !== undefined && opts[k] !== false);
  if (postgresOnly) {
    const flag = `--${postgresOnly.replace(/[A-Z]/g, (ch) => `-${ch.toLowerCase()}`)}`;
    throw new UsageError(`${flag} is for PostgreSQL's pg_stat_statements; ClickHouse keeps a log, read over a window`, {
      hint: 'e.g. dbops slow-queries --source clickhouse --since 30m',
    });
  }
  if ((opts.baseline === undefined) !== (opts.failOnRegression === undefined)) {
    throw new UsageError('--baseline and --fail-on-regression go together', { hint: 'e.g. --baseline main.json --fail-on-regression 50' });
  }
  const { CLICKHOUSE_SORT_KEYS, buildClickHouseReport, parseClickHouseBaseline, windowSince } = await import('../../clickhouse/slow-report.js');
  // --sort's choices include p95 and memory, which only this report has.
  const sort = opts.sort as (typeof CLICKHOUSE_SORT_KEYS)[number];
  let baseline: Baseline | undefined;
  if (opts.baseline) {
    const { readFile } = await import('node:fs/promises');
    let doc: unknown;
    try {
      doc = JSON.parse(await readFile(opts.baseline, 'utf8'));
    } catch (error) {
      throw new UsageError(`cannot read the baseline ${opts.baseline}: ${(error as Error).message}`, { cause: error });
    }
    baseline = parseClickHouseBaseline(doc, opts.baseline);
  }
  const timeoutMs = opts.statementTimeout ?? ctx.config.clickhouse?.queryTimeoutMs;
  const [conn, { readQueryLog }] = await Promise.all([openClickHouse(ctx, 'slow-queries', timeoutMs), import('../../clickhouse/query-log-read.js')]);
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
  ctx.out.result(report, () => render?.(report, ctx.out.c, ctx.out.terminal.colour, { full: Boolean(opts.full) }) ?? '');
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
  return ExitCode.Ok;
}

export interface ClickHousePoolSource {
  /** One snapshot; a failure to connect or read is data (shown), not an exit. */
  collect(): Promise<ClickHousePoolReport | { error: string; hint?: string | undefined }>;
}

/** The ClickHouse part of `dbops pool`; reconnects after a lost connection (for --watch). */
export function clickhousePool(ctx: CommandContext, opts: { longMs: number; queryTimeout: number }): ClickHousePoolSource {
  let conn: ClickHouseConnection | undefined;
  return {
    async collect() {
      const { isDbopsError, messageOf } = await import('../../errors.js');
      try {
        conn ??= await openClickHouse(ctx, 'pool', opts.queryTimeout);
        const { collectClickHousePool } = await import('../../clickhouse/activity.js');
        return await collectClickHousePool(conn, { timeoutMs: opts.queryTimeout, thresholds: { longMs: opts.longMs, headroomWarnRatio: 0.1 } });
      } catch (error) {
        const lost = conn;
        conn = undefined;
        await lost?.close().catch(() => {});
        return { error: messageOf(error), hint: isDbopsError(error) ? error.hint : undefined };
      }
    },
  };
}

/** Render a ClickHouse pool snapshot, or why there is none. */
export async function renderClickHouseSection(ctx: CommandContext, r: ClickHousePoolReport | { error: string; hint?: string | undefined }): Promise<string> {
  if ('error' in r) return `${ctx.out.c.red('ClickHouse: unreachable:')} ${r.error}${r.hint ? `\n  hint: ${r.hint}` : ''}`;
  const { renderClickHousePool } = await import('../../output/clickhouse.js');
  return renderClickHousePool(r, { c: ctx.out.c, colour: ctx.out.terminal.colour });
}

/** `dbops pool --source clickhouse` (one snapshot): exit 3 on a critical finding, 5 when unreachable. */
export async function poolClickHouseOnly(ctx: CommandContext, opts: { longMs: number; queryTimeout: number }): Promise<number> {
  const conn = await openClickHouse(ctx, 'pool', opts.queryTimeout);
  const { collectClickHousePool } = await import('../../clickhouse/activity.js');
  const report = await collectClickHousePool(conn, { timeoutMs: opts.queryTimeout, thresholds: { longMs: opts.longMs, headroomWarnRatio: 0.1 } });
  const text = ctx.out.json ? '' : await renderClickHouseSection(ctx, report);
  ctx.out.result(report, () => text);
  if (!report.ok) throw criticalError(report);
  return ExitCode.Ok;
}

export function criticalError(r: ClickHousePoolReport): CheckFailedError {
  const critical = r.findings.filter((f) => f.severity === 'critical');
  return new CheckFailedError(`ClickHouse: ${critical.length} critical finding${critical.length === 1 ? '' : 's'}: ${critical.map((f) => f.code).join(', ')}`, {
    hint: 'see the findings above',
    details: { critical: critical.length },
  });
}
