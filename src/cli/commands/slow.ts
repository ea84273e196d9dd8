import type { Command } from 'commander';
import { Option } from 'commander';
import type { Baseline, GateOptions } from '../../diagnostics/slow-queries.js';
import { CheckFailedError, ExitCode, UsageError } from '../../errors.js';
import type { CommandContext } from '../context.js';
import { durationArg, intArg, numberArg } from '../options.js';
import type { Runner } from '../program.js';

export interface SlowOptions {
  source: 'postgres' | 'clickhouse';
  flushLogs?: boolean;
  /** p95 and memory reach only the ClickHouse report; the PostgreSQL one refuses them first. */
  sort: 'total' | 'mean' | 'calls' | 'rows' | 'io';
  limit: number;
  minMeanMs: number;
  minCalls: number;
  onlySlow?: boolean;
  full?: boolean;
  save?: string;
  since?: string;
  failOnMeanMs?: number;
  baseline?: string;
  failOnRegression?: number;
  gateMinCalls: number;
  regressionMinMs: number;
  statementTimeout?: number;
  reset?: boolean;
  allDatabases?: boolean;
  yes?: boolean;
  json?: boolean;
}

const SORTS = ['total', 'mean', 'calls', 'rows', 'io', 'p95', 'memory'];
/** Sort keys only the ClickHouse report has (pg_stat_statements keeps no percentiles or memory). */
const CLICKHOUSE_ONLY_SORTS = ['p95', 'memory'];

/** The gates as the options ask for them (the same for PostgreSQL and ClickHouse). */
export function gateOptionsOf(opts: SlowOptions, baseline: Baseline | undefined): GateOptions {
  return {
    failOnMeanMs: opts.failOnMeanMs,
    baseline,
    failOnRegressionPct: opts.failOnRegression,
    gateMinCalls: opts.gateMinCalls,
    regressionMinMs: opts.regressionMinMs,
  };
}

export function registerSlow(program: Command, run: Runner): void {
  program
    .command('slow-queries')
    .alias('slow')
    .description(
      "top statements of the current database from pg_stat_statements (or ClickHouse's query_log with --source clickhouse); snapshots, deltas and CI gates",
    )
    .addOption(
      new Option('--source <system>', 'postgres (pg_stat_statements) | clickhouse (system.query_log of CLICKHOUSE_URL)')
        .choices(['postgres', 'clickhouse'])
        .default('postgres'),
    )
    .addOption(
      new Option('--sort <key>', 'total | mean | calls | rows | io (blocks read or spilled; ClickHouse: bytes read) | p95, memory (ClickHouse)')
        .choices(SORTS)
        .default('total'),
    )
    .addOption(new Option('--limit <n>', 'how many statements to show (0 = all)').argParser(intArg(0)).default(20))
    .addOption(new Option('--min-mean-ms <ms>', 'slow: mean time at least this').argParser(numberArg(0)).default(20))
    .addOption(new Option('--min-calls <n>', 'slow: at least this many calls').argParser(intArg(1)).default(100))
    .option('--only-slow', 'show only statements marked slow')
    .option('--full', 'print each statement in full below the table (--json always has full text)')
    .option('--save <file>', 'write a snapshot of the counters to FILE (for a later --since)')
    .option('--since <file|window>', 'report only what happened since the snapshot in FILE; ClickHouse: the window, e.g. 30m, 1h (default), 2d or an ISO time')
    .option('--flush-logs', 'ClickHouse: SYSTEM FLUSH LOGS first, so the last seconds are in the report')
    .addOption(new Option('--fail-on-mean-ms <ms>', 'gate: exit 3 if a statement has a mean over this').argParser(numberArg(0)))
    .option('--baseline <file>', 'gate: a previous --json report (or a snapshot) to compare means with')
    .addOption(
      new Option('--fail-on-regression <pct>', 'gate: exit 3 if a known mean grew more than PCT %, or a new statement is slow').argParser(numberArg(0)),
    )
    .addOption(new Option('--gate-min-calls <n>', 'gates judge only statements with at least N calls').argParser(intArg(1)).default(1))
    .addOption(new Option('--regression-min-ms <ms>', 'ignore regressions whose new mean is below this').argParser(numberArg(0)).default(1))
    .addOption(
      new Option('--statement-timeout <duration>', 'statement timeout of the reads (default 10s; ClickHouse: CLICKHOUSE_QUERY_TIMEOUT_MS)').argParser(
        durationArg,
      ),
    )
    .addOption(new Option('--reset', 'call pg_stat_statements_reset() for this database (asks first)').conflicts(['since', 'save', 'baseline', 'failOnMeanMs']))
    .option('--all-databases', 'with --reset: reset the whole server, not only this database')
    .option('-y, --yes', 'with --reset: do not ask')
    .action(
      run<SlowOptions>(async (ctx, opts) => {
        if (opts.source === 'clickhouse') return (await import('./clickhouse.js')).slowClickHouse(ctx, opts);
        if (CLICKHOUSE_ONLY_SORTS.includes(opts.sort) || opts.flushLogs) {
          throw new UsageError(`${opts.flushLogs ? '--flush-logs' : `--sort ${opts.sort}`} is for --source clickhouse`, {
            hint: 'pg_stat_statements keeps counters, not a log: sort by total, mean, calls, rows or io',
          });
        }
        if (opts.reset) return resetCommand(ctx, opts);
        if ((opts.baseline === undefined) !== (opts.failOnRegression === undefined)) {
          throw new UsageError('--baseline and --fail-on-regression go together', {
            hint: 'e.g. --baseline main.json --fail-on-regression 50',
          });
        }
        if (opts.allDatabases) throw new UsageError('--all-databases only applies to --reset');
        const { readFile, rename, writeFile } = await import('node:fs/promises');
        const core = await import('../../diagnostics/slow-queries.js');
        const readJson = async (file: string, what: string): Promise<unknown> => {
          let text: string;
          try {
            text = await readFile(file, 'utf8');
          } catch (error) {
            throw new UsageError(`cannot read the ${what} ${file}: ${(error as Error).message}`, { cause: error });
          }
          try {
            return JSON.parse(text);
          } catch (error) {
            throw new UsageError(`the ${what} ${file} is not JSON: ${(error as Error).message}`, { cause: error });
          }
        };
        const since = opts.since ? core.parseSnapshot(await readJson(opts.since, 'snapshot'), opts.since) : undefined;
        const baseline = opts.baseline ? core.parseBaseline(await readJson(opts.baseline, 'baseline'), opts.baseline) : undefined;
        const gated = opts.failOnMeanMs !== undefined || baseline !== undefined;
        const slow = { minMeanMs: opts.minMeanMs, minCalls: opts.minCalls };
        const client = await ctx.pg({ direct: true, applicationName: 'dbops slow-queries' });
        // Every statement is needed for a snapshot, a delta or a gate; otherwise the server ranks and cuts.
        const read = await core.readPgss(
          client,
          opts.save || since || gated ? { mode: 'all' } : { mode: 'top', sort: opts.sort, limit: opts.limit, onlySlow: Boolean(opts.onlySlow), slow },
          opts.statementTimeout ?? 10_000,
        );
        if (since && opts.since) core.checkSameSource(since, read.server, opts.since);
        const report = core.buildReport(read, {
          sort: opts.sort,
          limit: opts.limit,
          slow,
          onlySlow: Boolean(opts.onlySlow),
          since,
          gates: gated ? gateOptionsOf(opts, baseline) : undefined,
        });
        if (opts.save) {
          // Write beside, then rename: a crash never leaves half a snapshot.
          // Query texts can be sensitive even masked: the file is private to its owner (0600).
          const tmp = `${opts.save}.${process.pid}.tmp`;
          try {
            await writeFile(tmp, `${JSON.stringify(core.snapshotOf(read))}\n`, { mode: 0o600 });
            await rename(tmp, opts.save);
          } catch (error) {
            const { UsageError } = await import('../../errors.js');
            throw new UsageError(`--save ${opts.save}: cannot write the snapshot: ${(error as Error).message}`, {
              hint: 'check that the folder exists and is writable',
            });
          }
        }
        const { renderSlowQueries } = await import('../../output/slow.js');
        const doc = opts.save ? { ...report, savedTo: opts.save } : report;
        ctx.out.result(doc, () => renderSlowQueries(report, ctx.out.c, ctx.out.terminal.colour, { full: Boolean(opts.full), savedTo: opts.save }));
        if (report.gates?.failed) {
          const f = report.gates.failures;
          throw new CheckFailedError(
            `slow-query gate failed: ${f.length} statement${f.length === 1 ? '' : 's'} (${f.map((x) => `queryid ${x.queryid}`).join(', ')})`,
            {
              hint: 'see the report above; --json lists them under gates.failures',
              details: { failures: f.length },
            },
          );
        }
        return ExitCode.Ok;
      }),
    );
}

async function resetCommand(ctx: CommandContext, opts: SlowOptions): Promise<number> {
  const db = await ctx.database();
  const { describeEndpoint } = await import('../../db/pg.js');
  const where = opts.allDatabases ? `every database on ${describeEndpoint(db.directUrl).replace(/\/.*$/, '')}` : describeEndpoint(db.directUrl);
  if (!opts.yes) {
    const ok = await ctx.out.confirm(`reset pg_stat_statements for ${where}? Everyone's statistics are lost`);
    if (!ok) throw new UsageError('not confirmed: pg_stat_statements was not reset', { hint: 'pass --yes to reset without a prompt' });
  }
  const { resetPgss } = await import('../../diagnostics/slow-queries.js');
  const client = await ctx.pg({ direct: true, applicationName: 'dbops slow-queries' });
  const result = await resetPgss(client, Boolean(opts.allDatabases));
  ctx.out.result({ reset: true, scope: result.scope }, () =>
    result.scope === 'database' ? `pg_stat_statements reset for ${where}` : 'pg_stat_statements reset for the whole server',
  );
  return ExitCode.Ok;
}
