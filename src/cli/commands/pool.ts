import { type Command, Option } from 'commander';
import type { Finding } from '../../diagnostics/findings.js';
import type { LocksReport, PoolReport, ServerFullReport } from '../../diagnostics/pool.js';
import type { ReplicasReport } from '../../diagnostics/replicas.js';
import { CheckFailedError, UsageError } from '../../errors.js';
import type { CommandContext } from '../context.js';
import type { Runner } from '../handler.js';
import { durationArg, durationIn, intArg, numberArg } from '../options.js';
import type { ReplicaFlags } from './replicas.js';

interface CommonOpts {
  longMs: number;
  queryTimeout: number;
  watch?: number | true;
  json?: boolean;
}

interface PoolOpts extends CommonOpts, ReplicaFlags {
  slowMs: number;
  appInstances?: number;
  appPoolSize?: number;
  surge?: number;
  appName?: string;
  pgbouncerInstances?: number;
  poolUser?: string;
  poolDb?: string;
  locks?: boolean;
  source?: 'postgres' | 'clickhouse';
}

const DEFAULT_WATCH_S = 2;

function commonOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        '--long-ms <duration>',
        'a query running, a session idle in transaction, or a lock wait this long is reported (e.g. 5s; a bare number is ms)',
      )
        .argParser(durationIn(1))
        .default(60_000),
    )
    .addOption(
      new Option('--query-timeout <duration>', 'statement timeout of the diagnostic queries')
        .argParser(durationArg)
        .default(5000, '5s'),
    )
    .addOption(
      new Option(
        '--watch [seconds]',
        `refresh on the terminal every N seconds (default ${DEFAULT_WATCH_S}) until Ctrl-C; not with --json`,
      ).argParser(numberArg(0.5, 3600)),
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
    .addOption(
      new Option(
        '--slow-ms <duration>',
        'pg_stat_statements: a statement whose mean time exceeds this counts as slow (e.g. 1s)',
      )
        .argParser(durationIn(1))
        .default(1000),
    )
    .addOption(
      new Option('--app-instances <n>', 'application instances (replicas): computes the capacity budget').argParser(
        intArg(1, 100_000),
      ),
    )
    .addOption(
      new Option('--app-pool-size <n>', 'connections per instance (default: DATABASE_POOL_SIZE, else 10)').argParser(
        intArg(1, 100_000),
      ),
    )
    .addOption(
      new Option('--surge <factor>', 'deploy surge: old and new instances overlap (default 2)').argParser(
        numberArg(1, 10),
      ),
    )
    .addOption(
      new Option('--pgbouncer-instances <n>', 'PgBouncer processes in front of PostgreSQL (default 1)').argParser(
        intArg(1, 1000),
      ),
    )
    .option(
      '--app-name <name>',
      "the application's application_name: its current connections are its own in the budget",
    )
    .option(
      '--pool-user <user>',
      "the application's PgBouncer user: the budget counts only its pool (default: DATABASE_URL's user)",
    )
    .option(
      '--pool-db <database>',
      "the application's PgBouncer database: the budget counts only its pool (default: DATABASE_URL's database)",
    )
    .option('--locks', 'draw the whole blocking tree')
    .addOption(
      new Option(
        '--replica-lag-warn <duration>',
        'read replicas: replay lag that is a warning (default 10s)',
      ).argParser(durationArg),
    )
    .addOption(
      new Option(
        '--replica-lag-critical <duration>',
        'read replicas: replay lag that is critical, exit 3 (default 60s)',
      ).argParser(durationArg),
    )
    .addOption(
      new Option(
        '--source <system>',
        'only postgres or only clickhouse (default: PostgreSQL, and ClickHouse too when CLICKHOUSE_URL is set)',
      ).choices(['postgres', 'clickhouse']),
    )
    .action(
      run<PoolOpts>(async (ctx, opts) => {
        ctx.diagnostic('pool');
        const watch = watchSeconds(ctx, opts);
        // ClickHouse alone: asked for, or the only system configured (no embedded PostgreSQL started for it).
        const withClickHouse = opts.source !== 'postgres' && ctx.config.clickhouse !== undefined;
        const clickhouse = withClickHouse || opts.source === 'clickhouse' ? await import('./clickhouse.js') : undefined;
        if (clickhouse && (opts.source === 'clickhouse' || (opts.source === undefined && !ctx.config.database))) {
          const render = await clickhouse.sectionRenderer(ctx);
          await view(ctx, 'pool', watch, clickhouse.clickhouseReader(ctx, opts), (report) => render?.(report) ?? '');
          return;
        }
        const chSource = clickhouse?.clickhousePool(ctx, opts);
        const needsInstances = (
          ['appPoolSize', 'surge', 'pgbouncerInstances', 'appName', 'poolUser', 'poolDb'] as const
        ).filter((k) => opts[k] !== undefined);
        if (opts.appInstances === undefined && needsInstances.length) {
          const flag = needsInstances[0]?.replace(/[A-Z]/g, (ch) => `-${ch.toLowerCase()}`);
          throw new UsageError(`--${flag} is part of the capacity budget, which needs --app-instances`, {
            hint: 'e.g. dbops pool --app-instances 4 --app-pool-size 10 --surge 2',
          });
        }
        const options = {
          queryTimeoutMs: opts.queryTimeout,
          thresholds: { longMs: opts.longMs, slowMs: opts.slowMs },
          appName: opts.appName,
          appPool: opts.appInstances === undefined ? undefined : await applicationPool(ctx, opts),
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
        const [connections, output, chRender] = await Promise.all([
          connect(ctx, 'dbops pool', Boolean(ctx.config.pgbouncerAdminUrl)),
          renderers(ctx),
          clickhouse?.sectionRenderer(ctx),
        ]);
        // Read replicas (DATABASE_REPLICA_URLS): their section and findings join the report (not when PostgreSQL itself is full).
        const joinReplicas = (await import('./replicas.js')).replicaJoiner(ctx, opts);
        const replicaView = joinReplicas && !ctx.out.json ? await import('../../output/replicas.js') : undefined;
        type WithReplicas = (PoolReport | ServerFullReport) & { replicas?: ReplicasReport };
        const pgReport = async (): Promise<WithReplicas> => {
          const report = await connections.poolReport(options);
          return joinReplicas && !('serverFull' in report) ? joinReplicas(report) : report;
        };
        const renderPg = (report: WithReplicas) =>
          (output?.renderPool(report, {
            paint: ctx.out.c,
            colour: ctx.out.terminal.colour,
            showLocks: Boolean(opts.locks),
          }) ?? '') +
          (report.replicas && replicaView
            ? `\n\n${replicaView.renderReplicas(report.replicas, ctx.out.c, ctx.out.terminal.colour)}`
            : '');
        if (!chSource) {
          await view(ctx, 'pool', watch, pgReport, renderPg);
          return;
        }
        // An unreachable ClickHouse is shown, like an unreachable PgBouncer console; its critical findings count.
        const read = async () => {
          const [report, ch] = await Promise.all([pgReport(), chSource.collect()]);
          return { ...report, ok: report.ok && ('error' in ch || ch.ok), clickhouse: ch };
        };
        const findingsOf = (doc: Awaited<ReturnType<typeof read>>) => [
          ...doc.findings,
          ...('error' in doc.clickhouse ? [] : doc.clickhouse.findings),
        ];
        await view(
          ctx,
          'pool',
          watch,
          read,
          (doc) => `${renderPg(doc)}

${chRender?.(doc.clickhouse) ?? ''}`,
          findingsOf,
        );
      }),
    );

  commonOptions(
    program
      .command('locks')
      .description(
        'the blocking tree (pg_blocking_pids): roots first, each waiter once with all its blockers; exit 3 when a wait exceeds --long-ms',
      ),
  ).action(
    run<CommonOpts>(async (ctx, opts) => {
      ctx.diagnostic('locks');
      const watch = watchSeconds(ctx, opts);
      const [connections, output] = await Promise.all([connect(ctx, 'dbops locks', false), renderers(ctx)]);
      const options = { queryTimeoutMs: opts.queryTimeout, thresholds: { longMs: opts.longMs } };
      const render = (report: LocksReport) => output?.renderLocks(report, ctx.out.c) ?? '';
      await view(ctx, 'locks', watch, () => connections.locksReport(options), render);
    }),
  );
}

/** PostgreSQL (and the PgBouncer console), connected while the report code loads. */
async function connect(ctx: CommandContext, applicationName: string, withConsole: boolean) {
  const { PoolConnections } = await import('../../diagnostics/pool-connections.js');
  const connections = new PoolConnections({
    pg: () => ctx.pg({ direct: true, applicationName }),
    console: withConsole ? () => ctx.pgbouncer() : undefined,
  });
  await connections.connect();
  return connections;
}

/** The application's own PgBouncer pool: --pool-user/--pool-db, else the user and database of DATABASE_URL. */
async function applicationPool(
  ctx: CommandContext,
  opts: PoolOpts,
): Promise<{ database: string; user: string; source: string } | undefined> {
  let fromUrl: { user?: string | undefined; database?: string | null | undefined } = {};
  const url = ctx.config.database?.url;
  if (url) {
    const { parse } = await import('pg-connection-string');
    fromUrl = parse(url);
  }
  const user = opts.poolUser ?? fromUrl.user;
  const database = opts.poolDb ?? fromUrl.database ?? user;
  if (!user || !database) return undefined;
  const named = [opts.poolUser ? '--pool-user' : '', opts.poolDb ? '--pool-db' : ''].filter(Boolean);
  const source =
    named.length === 2 ? named.join(' ') : named.length === 1 ? `${named[0]} and DATABASE_URL` : 'from DATABASE_URL';
  return { database, user, source };
}

/** The table renderers; --json prints the report as it is and does not load them. */
async function renderers(ctx: CommandContext) {
  return ctx.out.json ? undefined : import('../../output/pool.js');
}

/**
 * One report, rendered (exit 3 on a critical finding); or with --watch, a report every N seconds
 * until the first Ctrl-C (exit 0), a failed refresh shown in its place.
 */
async function view<R extends { ok: boolean; findings: Finding[] }>(
  ctx: CommandContext,
  command: string,
  watchSeconds: number | undefined,
  read: () => Promise<R>,
  render: (report: R) => string,
  findingsOf: (report: R) => Finding[] = (report) => report.findings,
): Promise<void> {
  if (watchSeconds === undefined) {
    const report = await read();
    ctx.out.result(report, () => render(report));
    if (!report.ok) {
      const critical = findingsOf(report).filter((finding) => finding.severity === 'critical');
      throw new CheckFailedError(
        `${command}: ${critical.length} critical finding(s): ${critical.map((finding) => finding.code).join(', ')}`,
        {
          hint: 'see the findings above (--json: findings)',
          details: { critical: critical.length },
        },
      );
    }
    return;
  }
  const { watch } = await import('../../diagnostics/watch.js');
  // The first Ctrl-C ends the loop after the frame (exit 0).
  ctx.stopsGracefully();
  let last = '';
  try {
    await watch({
      everyMs: watchSeconds * 1000,
      signal: ctx.signal,
      read,
      show: (frame) => {
        const header = ctx.out.c.dim(
          `dbops ${command} ${new Date().toISOString()}  every ${watchSeconds} s  ▌ changed since the last refresh  Ctrl-C to stop`,
        );
        // The report's first block (its headline: server, pool, headroom) always stays on screen.
        const text =
          'report' in frame ? render(frame.report) : `${ctx.out.c.red(`refresh failed: ${frame.error}`)}\n\n${last}`;
        if ('report' in frame) last = text;
        const split = text.indexOf('\n\n');
        const head = split === -1 ? text : text.slice(0, split);
        ctx.out.frame(split === -1 ? '' : text.slice(split + 2), `${header}\n${head}`);
      },
    });
  } finally {
    ctx.out.restoreTerminal();
  }
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
