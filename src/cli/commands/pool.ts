import { type Command, Option } from 'commander';
import { ExitCode, messageOf, UsageError } from '../../errors.js';
import { sleep } from '../../util/sleep.js';
import type { CommandContext } from '../context.js';
import { durationArg, intArg, numberArg } from '../options.js';
import type { Runner } from '../program.js';

interface CommonOpts {
  longMs: number;
  queryTimeout: number;
  watch?: number | true;
  json?: boolean;
}

interface PoolOpts extends CommonOpts {
  slowMs: number;
  appInstances?: number;
  appPoolSize?: number;
  surge?: number;
  appName?: string;
  pgbouncerInstances?: number;
  locks?: boolean;
  source?: 'postgres' | 'clickhouse';
}

const DEFAULT_WATCH_S = 2;

function commonOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--long-ms <ms>', 'a query running, a session idle in transaction, or a lock wait this long is reported').argParser(intArg(1)).default(60_000),
    )
    .addOption(new Option('--query-timeout <duration>', 'statement timeout of the diagnostic queries').argParser(durationArg).default(5000, '5s'))
    .addOption(
      new Option('--watch [seconds]', `refresh on the terminal every N seconds (default ${DEFAULT_WATCH_S}) until Ctrl-C; not with --json`).argParser(
        numberArg(0.5, 3600),
      ),
    );
}

export function registerPool(program: Command, run: Runner): void {
  commonOptions(
    program
      .command('pool')
      .description(
        'connections across the application, PgBouncer and PostgreSQL: who holds them, headroom, idle transactions, long queries, capacity budget, findings (exit 3 when critical)',
      ),
  )
    .addOption(new Option('--slow-ms <ms>', 'pg_stat_statements: a statement whose mean time exceeds this counts as slow').argParser(intArg(1)).default(1000))
    .addOption(new Option('--app-instances <n>', 'application instances (replicas): computes the capacity budget').argParser(intArg(1, 100_000)))
    .addOption(new Option('--app-pool-size <n>', 'connections per instance (default: DATABASE_POOL_SIZE, else 10)').argParser(intArg(1, 100_000)))
    .addOption(new Option('--surge <factor>', 'deploy surge: old and new instances overlap (default 2)').argParser(numberArg(1, 10)))
    .addOption(new Option('--pgbouncer-instances <n>', 'PgBouncer processes in front of PostgreSQL (default 1)').argParser(intArg(1, 1000)))
    .option('--app-name <name>', "the application's application_name: its current connections are its own in the budget")
    .option('--locks', 'draw the whole blocking tree')
    .addOption(
      new Option('--source <system>', 'only postgres or only clickhouse (default: PostgreSQL, and ClickHouse too when CLICKHOUSE_URL is set)').choices([
        'postgres',
        'clickhouse',
      ]),
    )
    .action(
      run<PoolOpts>(async (ctx, opts) => {
        const watch = watchSeconds(ctx, opts);
        // ClickHouse alone: asked for, or the only system configured (no embedded PostgreSQL started for it).
        const withClickHouse = opts.source !== 'postgres' && ctx.config.clickhouse !== undefined;
        const clickhouse = withClickHouse || opts.source === 'clickhouse' ? await import('./clickhouse.js') : undefined;
        if (clickhouse && (opts.source === 'clickhouse' || (opts.source === undefined && !ctx.config.database))) {
          if (watch === undefined) return clickhouse.poolClickHouseOnly(ctx, opts);
          const source = clickhouse.clickhousePool(ctx, opts);
          await watchLoop(ctx, watch, async () => clickhouse.renderClickHouseSection(ctx, await source.collect()));
          return ExitCode.Ok;
        }
        const chSource = clickhouse?.clickhousePool(ctx, opts);
        const needsInstances = (['appPoolSize', 'surge', 'pgbouncerInstances', 'appName'] as const).filter((k) => opts[k] !== undefined);
        if (opts.appInstances === undefined && needsInstances.length) {
          const flag = needsInstances[0]?.replace(/[A-Z]/g, (ch) => `-${ch.toLowerCase()}`);
          throw new UsageError(`--${flag} is part of the capacity budget, which needs --app-instances`, {
            hint: 'e.g. dbops pool --app-instances 4 --app-pool-size 10 --surge 2',
          });
        }
        // Connect to PostgreSQL and PgBouncer while the report code loads.
        const [{ collectPoolReport }, pg, firstBouncer] = await Promise.all([
          import('../../diagnostics/pool.js'),
          ctx.pg({ direct: true, applicationName: 'dbops pool' }),
          connectBouncer(ctx),
        ]);
        let bouncer = firstBouncer;
        const options = {
          queryTimeoutMs: opts.queryTimeout,
          thresholds: { longMs: opts.longMs, slowMs: opts.slowMs },
          appName: opts.appName,
          budget:
            opts.appInstances === undefined
              ? undefined
              : {
                  appInstances: opts.appInstances,
                  appPoolSize: opts.appPoolSize ?? ctx.config.poolSize,
                  surge: opts.surge ?? 2,
                  pgbouncerInstances: opts.pgbouncerInstances ?? 1,
                },
        };
        if (watch === undefined) {
          const [report, ch] = await Promise.all([collectPoolReport(pg, bouncer, options), chSource?.collect()]);
          // An unreachable ClickHouse is shown, like an unreachable PgBouncer console; its critical findings count.
          const chOk = !ch || 'error' in ch || ch.ok;
          const doc = ch ? { ...report, ok: report.ok && chOk, clickhouse: ch } : report;
          if (ctx.out.json) {
            ctx.out.result(doc, () => '');
          } else {
            const { renderPool } = await import('../../output/pool.js');
            const chText = ch && clickhouse ? `\n\n${await clickhouse.renderClickHouseSection(ctx, ch)}` : '';
            ctx.out.result(doc, () => renderPool(report, { c: ctx.out.c, colour: ctx.out.terminal.colour, showLocks: Boolean(opts.locks) }) + chText);
          }
          return report.ok && chOk ? ExitCode.Ok : ExitCode.CheckFailed;
        }
        const { renderPool } = await import('../../output/pool.js');
        let client = pg;
        await watchLoop(ctx, watch, async () => {
          // A lost connection is shown on the screen and re-opened on the next refresh.
          try {
            if (bouncer && 'error' in bouncer) bouncer = await connectBouncer(ctx);
            const report = await collectPoolReport(client, bouncer, options);
            if (bouncer && 'client' in bouncer && report.pgbouncer && 'error' in report.pgbouncer && report.pgbouncer.error) {
              await bouncer.client.end().catch(() => {});
              bouncer = await connectBouncer(ctx);
            }
            const ch = chSource && clickhouse ? `\n\n${await clickhouse.renderClickHouseSection(ctx, await chSource.collect())}` : '';
            return renderPool(report, { c: ctx.out.c, colour: ctx.out.terminal.colour, showLocks: Boolean(opts.locks) }) + ch;
          } catch (error) {
            await client.end().catch(() => {});
            client = await ctx.pg({ direct: true, applicationName: 'dbops pool' }).catch(() => client);
            return ctx.out.c.red(`refresh failed: ${messageOf(error)}`);
          }
        });
        return ExitCode.Ok;
      }),
    );

  commonOptions(
    program
      .command('locks')
      .description('the blocking tree (pg_blocking_pids): roots first, each waiter once with all its blockers; exit 3 when a wait exceeds --long-ms'),
  ).action(
    run<CommonOpts>(async (ctx, opts) => {
      const watch = watchSeconds(ctx, opts);
      const [{ collectLocksReport }, first] = await Promise.all([
        import('../../diagnostics/pool.js'),
        ctx.pg({ direct: true, applicationName: 'dbops locks' }),
      ]);
      let client = first;
      const options = { queryTimeoutMs: opts.queryTimeout, thresholds: { longMs: opts.longMs } };
      if (watch === undefined) {
        const report = await collectLocksReport(client, options);
        if (ctx.out.json) ctx.out.result(report, () => '');
        else {
          const { renderLocks } = await import('../../output/pool.js');
          ctx.out.result(report, () => renderLocks(report, ctx.out.c));
        }
        return report.ok ? ExitCode.Ok : ExitCode.CheckFailed;
      }
      const { renderLocks } = await import('../../output/pool.js');
      await watchLoop(ctx, watch, async () => {
        try {
          return renderLocks(await collectLocksReport(client, options), ctx.out.c);
        } catch (error) {
          await client.end().catch(() => {});
          client = await ctx.pg({ direct: true, applicationName: 'dbops locks' }).catch(() => client);
          return ctx.out.c.red(`refresh failed: ${messageOf(error)}`);
        }
      });
      return ExitCode.Ok;
    }),
  );
}

/** --watch with --json is refused: --json means one snapshot for a machine. */
function watchSeconds(ctx: CommandContext, opts: CommonOpts): number | undefined {
  if (opts.watch === undefined) return undefined;
  if (ctx.out.json) {
    throw new UsageError('--watch and --json cannot be combined: --json prints exactly one snapshot', {
      hint: 'drop --watch to get one JSON snapshot, or drop --json for the refreshing view',
    });
  }
  return opts.watch === true ? DEFAULT_WATCH_S : opts.watch;
}

/** The PgBouncer console when PGBOUNCER_ADMIN_URL is set; a failure to connect is data, not an exit. */
async function connectBouncer(ctx: CommandContext): Promise<{ client: import('pg').Client } | { error: string } | undefined> {
  const url = ctx.config.pgbouncerAdminUrl?.value;
  if (!url) return undefined;
  const { connectPg } = await import('../../db/pg.js');
  try {
    // adminConsole: no startup parameters, simple protocol only.
    const client = await connectPg({ connectionString: url, timeoutMs: ctx.timeoutMs, label: 'PgBouncer', adminConsole: true });
    ctx.onClose(() => client.end());
    return { client };
  } catch (error) {
    return { error: messageOf(error) };
  }
}

/**
 * Redraw every `seconds` until the first Ctrl-C (ctx.signal), then return (exit 0). On a TTY the
 * screen is cleared before each frame; elsewhere frames are appended under a time stamp line.
 */
async function watchLoop(ctx: CommandContext, seconds: number, frame: () => Promise<string>): Promise<void> {
  const tty = Boolean(process.stdout.isTTY);
  while (!ctx.signal.aborted) {
    const text = await frame();
    if (ctx.signal.aborted) break;
    const header = ctx.out.c.dim(`dbops ${new Date().toISOString()}  every ${seconds} s  Ctrl-C to stop`);
    ctx.out.stdout(`${tty ? '\x1b[2J\x1b[H' : '\n'}${header}\n${text}\n`);
    await sleep(seconds * 1000, ctx.signal);
  }
}
