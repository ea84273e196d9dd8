import type { Command } from 'commander';
import { Option } from 'commander';
import { CheckFailedError, UsageError } from '../../errors.js';
import type { CommandContext } from '../context.js';
import type { Runner } from '../handler.js';
import { durationArg, durationIn, intArg, MAX_DURATION_MS, numberArg } from '../options.js';
import type { SlowOptions } from './slow-options.js';

const SORTS = ['total', 'mean', 'calls', 'rows', 'io', 'p95', 'memory'];
/** Sort keys only the ClickHouse report has (pg_stat_statements keeps no percentiles or memory). */
const CLICKHOUSE_ONLY_SORTS = ['p95', 'memory'];

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
      new Option(
        '--sort <key>',
        'total | mean | calls | rows | io (blocks read or spilled; ClickHouse: bytes read) | p95, memory (ClickHouse)',
      )
        .choices(SORTS)
        .default('total'),
    )
    .addOption(new Option('--limit <n>', 'how many statements to show (0 = all)').argParser(intArg(0)).default(20))
    .addOption(
      new Option('--min-mean-ms <duration>', 'slow: mean time at least this (a bare number is ms; 0.5, 20ms, 1s)')
        .argParser(durationIn(0, MAX_DURATION_MS, { fractional: true }))
        .default(20),
    )
    .addOption(new Option('--min-calls <n>', 'slow: at least this many calls').argParser(intArg(1)).default(100))
    .option('--only-slow', 'show only statements marked slow')
    .option('--full', 'print each statement in full below the table (--json always has full text)')
    .option('--save <file>', 'write a snapshot of the counters to FILE (for a later --since)')
    .option(
      '--since <file|window>',
      'report only what happened since the snapshot in FILE; ClickHouse: the window, e.g. 30m, 1h (default), 2d or an ISO time',
    )
    .option('--flush-logs', 'ClickHouse: SYSTEM FLUSH LOGS first, so the last seconds are in the report')
    .addOption(
      new Option(
        '--fail-on-mean-ms <duration>',
        'gate: exit 3 if a statement has a mean over this (e.g. 50, 50ms, 1s)',
      ).argParser(durationIn(0, MAX_DURATION_MS, { fractional: true })),
    )
    .option('--baseline <file>', 'gate: a previous --json report (or a snapshot) to compare means with')
    .addOption(
      new Option(
        '--fail-on-regression <pct>',
        'gate: exit 3 if a known mean grew more than PCT %, or a new statement is slow',
      ).argParser(numberArg(0)),
    )
    .addOption(
      new Option('--gate-min-calls <n>', 'gates judge only statements with at least N calls')
        .argParser(intArg(1))
        .default(1),
    )
    .addOption(
      new Option('--regression-min-ms <duration>', 'ignore regressions whose new mean is below this')
        .argParser(durationIn(0, MAX_DURATION_MS, { fractional: true }))
        .default(1),
    )
    .addOption(
      new Option(
        '--statement-timeout <duration>',
        'statement timeout of the reads (default 10s; ClickHouse: CLICKHOUSE_QUERY_TIMEOUT_MS)',
      ).argParser(durationArg),
    )
    .addOption(
      new Option('--reset', 'call pg_stat_statements_reset() for this database (asks first)').conflicts([
        'since',
        'save',
        'baseline',
        'failOnMeanMs',
      ]),
    )
    .option('--all-databases', 'with --reset: reset the whole server, not only this database')
    .option('-y, --yes', 'with --reset: do not ask')
    .action(
      run<SlowOptions>(async (ctx, opts) => {
        ctx.diagnostic('slow-queries');
        if ((opts.baseline === undefined) !== (opts.failOnRegression === undefined)) {
          throw new UsageError('--baseline and --fail-on-regression go together', {
            hint: 'e.g. --baseline main.json --fail-on-regression 50',
          });
        }
        if (opts.source === 'clickhouse') return (await import('./clickhouse.js')).slowClickHouse(ctx, opts);
        if (CLICKHOUSE_ONLY_SORTS.includes(opts.sort) || opts.flushLogs) {
          throw new UsageError(
            `${opts.flushLogs ? '--flush-logs' : `--sort ${opts.sort}`} is for --source clickhouse`,
            {
              hint: 'pg_stat_statements keeps counters, not a log: sort by total, mean, calls, rows or io',
            },
          );
        }
        if (opts.reset) return resetCommand(ctx, opts);
        if (opts.allDatabases) throw new UsageError('--all-databases only applies to --reset');
        const { collectSlowQueries } = await import('../../diagnostics/slow-queries-collect.js');
        const gated = opts.failOnMeanMs !== undefined || opts.baseline !== undefined;
        const prismaModels = await applicationModels(ctx);
        const report = await collectSlowQueries(() => ctx.pg({ direct: true, applicationName: 'dbops slow-queries' }), {
          sort: opts.sort,
          limit: opts.limit,
          slow: { minMeanMs: opts.minMeanMs, minCalls: opts.minCalls },
          onlySlow: Boolean(opts.onlySlow),
          statementTimeoutMs: opts.statementTimeout ?? 10_000,
          since: opts.since,
          save: opts.save,
          prismaModels,
          gates: gated
            ? {
                failOnMeanMs: opts.failOnMeanMs,
                baseline: opts.baseline,
                failOnRegressionPct: opts.failOnRegression,
                gateMinCalls: opts.gateMinCalls,
                regressionMinMs: opts.regressionMinMs,
              }
            : undefined,
        });
        const { renderSlowQueries } = await import('../../output/slow.js');
        ctx.out.result(report, () =>
          renderSlowQueries(report, ctx.out.c, ctx.out.terminal.colour, {
            full: Boolean(opts.full),
            savedTo: report.savedTo,
          }),
        );
        if (report.gates?.failed) {
          const failures = report.gates.failures;
          // The statement, shortened, as a person recognises it; the queryid is in --json.
          const { shortenQuery } = await import('../../diagnostics/prisma-origin.js');
          const shown = failures
            .slice(0, 3)
            .map((failure) => `'${shortenQuery(failure.query, 50)}' (mean ${failure.meanMs.toFixed(1)} ms)`);
          const which = `${shown.join(', ')}${failures.length > 3 ? ` and ${failures.length - 3} more` : ''}`;
          throw new CheckFailedError(
            `slow-query gate failed: ${failures.length} statement${failures.length === 1 ? '' : 's'}: ${which}`,
            {
              hint: 'see the report above; --json lists them under gates.failures',
              details: { failures: failures.length },
            },
          );
        }
      }),
    );
}

async function resetCommand(ctx: CommandContext, opts: SlowOptions): Promise<void> {
  const db = await ctx.database();
  const { describeEndpoint } = await import('../../db/pg.js');
  const where = opts.allDatabases
    ? `every database on ${describeEndpoint(db.directUrl).replace(/\/.*$/, '')}`
    : describeEndpoint(db.directUrl);
  if (!opts.yes) {
    const ok = await ctx.out.confirm(`reset pg_stat_statements for ${where}? Everyone's statistics are lost`);
    if (!ok)
      throw new UsageError('not confirmed: pg_stat_statements was not reset', {
        hint: 'pass --yes to reset without a prompt',
      });
  }
  const { resetPgss } = await import('../../diagnostics/slow-queries.js');
  const client = await ctx.pg({ direct: true, applicationName: 'dbops slow-queries' });
  const result = await resetPgss(client, Boolean(opts.allDatabases));
  ctx.out.result({ reset: true, scope: result.scope }, () =>
    result.scope === 'database'
      ? `pg_stat_statements reset for ${where}`
      : 'pg_stat_statements reset for the whole server',
  );
}

/** The models of the application's schema.prisma (working directory), when there is one: sharper labels. */
async function applicationModels(
  ctx: CommandContext,
): Promise<import('../../diagnostics/prisma-schema.js').PrismaModels | undefined> {
  try {
    const { prismaSchemaFiles } = await import('../../migrations/prisma.js');
    const files = await prismaSchemaFiles(process.cwd());
    if (files.length === 0) return undefined;
    const { readFile } = await import('node:fs/promises');
    const { readPrismaModels } = await import('../../diagnostics/prisma-schema.js');
    const models = await readPrismaModels(await Promise.all(files.map((f) => readFile(f, 'utf8'))));
    ctx.out.debug(`prisma labels: ${models.byTable.size} models from ${files.join(', ')}`);
    return models;
  } catch (error) {
    ctx.out.debug(`prisma labels: schema.prisma not read (${(error as Error).message})`);
    return undefined;
  }
}
