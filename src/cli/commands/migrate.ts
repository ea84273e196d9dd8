import { type Command, Option } from 'commander';
import { CheckFailedError, OperationError, UsageError } from '../../errors.js';
import type { RunEvent, RunResult } from '../../migrations/types.js';
import type { CommandContext } from '../context.js';
import type { Runner } from '../handler.js';
import { durationArg, durationIn, intArg } from '../options.js';

interface RunnerFlags {
  replicaWait?: number;
  deferInvalidation?: boolean;
  lockTimeout?: number;
  transactionTimeout?: number;
  prismaClient?: string;
  maxRowsPerSecond?: number;
  pauseMs?: number;
  targetBatchMs?: number;
  batchSize?: number;
}

interface UpFlags extends RunnerFlags {
  to?: string;
  step?: number;
  dryRun?: boolean;
  withSchema?: boolean;
}

const lockTimeoutOption = () =>
  new Option('--lock-timeout <duration>', 'how long to wait for another dbops migrate holding the lock (e.g. 30s, 2m)')
    .argParser(durationArg)
    .default(60_000, '60s');
const txTimeoutOption = () =>
  new Option('--transaction-timeout <duration>', "bound on one migration's transaction and each statement in it")
    .argParser(durationArg)
    .default(600_000, '10m');
const replicaWaitOption = () =>
  new Option(
    '--replica-wait <duration>',
    'cache invalidation: how long to wait for the read replicas (DATABASE_REPLICA_URLS) to replay a commit (default 30s or DBOPS_REPLICA_WAIT_MS)',
  ).argParser(durationArg);
const deferOption = () =>
  new Option(
    '--defer-invalidation',
    'cache invalidation: record it in the outbox but carry nothing out now, earlier owed ones included (Redis or a replica is down and the deploy cannot wait); dbops cache drain does it later',
  );
const prismaClientOption = () =>
  new Option(
    '--prisma-client <module>',
    'your generated PrismaClient for ctx.prisma: a path or a package such as @prisma/client (default: found from the generator in your Prisma schema; env DBOPS_PRISMA_CLIENT)',
  );

/** The CI job running us, for the ledger (GitHub Actions, GitLab, Buildkite, CircleCI, Jenkins). */
export function ciJobOf(env: Record<string, string | undefined>): string | undefined {
  if (env.GITHUB_ACTIONS === 'true' && env.GITHUB_RUN_ID) {
    const server = env.GITHUB_SERVER_URL ?? 'https://github.com';
    return `${server}/${env.GITHUB_REPOSITORY ?? ''}/actions/runs/${env.GITHUB_RUN_ID}${env.GITHUB_JOB ? ` job ${env.GITHUB_JOB}` : ''}`;
  }
  return (
    env.CI_JOB_URL ??
    env.BUILDKITE_BUILD_URL ??
    env.CIRCLE_BUILD_URL ??
    env.BUILD_URL ??
    (env.CI && env.CI !== 'false' ? 'CI' : undefined)
  );
}

async function makeRunner(ctx: CommandContext, flags: RunnerFlags, onEvent?: (e: RunEvent) => void) {
  const [{ MigrationRunner }, { VERSION }, { prismaSchemaOf }, { invalidationOptions }, db] = await Promise.all([
    import('../../migrations/runner.js'),
    import('../version.js'),
    import('../../db/prisma-migrations.js'),
    import('./invalidation.js'),
    ctx.database(),
  ]);
  const runner = new MigrationRunner({
    connect: (applicationName) => ctx.pg({ direct: true, applicationName }),
    prismaSchema: prismaSchemaOf(db.directUrl),
    schema: ctx.config.dbopsSchema,
    migrationsDir: ctx.config.migrationsDir,
    prismaMigrationsDir: ctx.config.prismaMigrationsDir,
    prismaClient: flags.prismaClient ?? ctx.env.DBOPS_PRISMA_CLIENT,
    cwd: ctx.config.cwd,
    lockTimeoutMs: flags.lockTimeout,
    transactionTimeoutMs: flags.transactionTimeout,
    connectTimeoutMs: ctx.timeoutMs,
    // What only the CLI knows; the runner fills in the host, the pid and (without $USER) the OS user.
    identity: { user: ctx.env.USER || ctx.env.LOGNAME || undefined, ciJob: ciJobOf(ctx.env), dbopsVersion: VERSION },
    log: ctx.out,
    signal: ctx.signal,
    invalidation: invalidationOptions(ctx, flags),
    ...(onEvent ? { onEvent } : {}),
    backfill: {
      ...(flags.batchSize === undefined ? {} : { batchSize: flags.batchSize }),
      ...(flags.maxRowsPerSecond === undefined ? {} : { maxRowsPerSecond: flags.maxRowsPerSecond }),
      ...(flags.pauseMs === undefined ? {} : { pauseMs: flags.pauseMs }),
      ...(flags.targetBatchMs === undefined ? {} : { targetBatchMs: flags.targetBatchMs }),
    },
  });
  ctx.onClose(() => runner.close());
  return runner;
}

type Migrator = Awaited<ReturnType<typeof makeRunner>>;

/** up, down, mark-applied: live progress, then the result (on failure, what ran before it). */
async function runWithReport(
  ctx: CommandContext,
  flags: RunnerFlags,
  action: (runner: Migrator) => Promise<RunResult>,
): Promise<void> {
  const [{ createRunReporter, reportRunFailure, renderRunResult }, { runResultOf }] = await Promise.all([
    import('../../output/migrate.js'),
    import('../../migrations/runner.js'),
  ]);
  const reporter = createRunReporter(ctx.out);
  // The runner stops after the current migration (a backfill after its batch) and says what is left.
  ctx.stopsGracefully();
  try {
    const result = await action(await makeRunner(ctx, flags, reporter.onEvent));
    ctx.out.result(result, () => renderRunResult(result, ctx.out.c, ctx.out.terminal.colour));
  } catch (error) {
    const partial = runResultOf(error);
    if (partial) reportRunFailure(ctx.out, partial);
    throw error;
  } finally {
    reporter.stop();
  }
}

/** `cache drain`: what earlier migrations still owe the cache, carried out now (the CLI registers it under `cache`). */
export async function drainCommand(ctx: CommandContext, flags: { replicaWait?: number }): Promise<void> {
  const runner = await makeRunner(ctx, flags);
  const { renderDrain } = await import('../../output/migrate.js');
  const before = await runner.outbox();
  try {
    const drained = await runner.drain();
    const after = await runner.outbox();
    const doc = { ok: true, owedBefore: before.owed.length, ...drained, owed: after.owed };
    ctx.out.result(doc, () => renderDrain(doc, ctx.out.c));
  } catch (error) {
    const after = await runner.outbox().catch(() => before);
    const partial = (error as { drained?: object }).drained;
    if (partial && error instanceof Error)
      Object.assign(error, { result: { ok: false, owedBefore: before.owed.length, ...partial, owed: after.owed } });
    throw error;
  }
}

export function registerMigrate(program: Command, run: Runner): void {
  const migrate = program
    .command('migrate')
    .description(
      'data migrations with a ledger, exactly-once locking, validate as a post-condition, rehearsals and Prisma schema interleaving',
    );

  migrate
    .command('up')
    .description('apply pending data migrations, each in its own transaction with its validate() and ledger row')
    .addOption(new Option('--to <name>', 'stop after this migration (inclusive)').conflicts('step'))
    .addOption(new Option('--step <n>', 'apply at most N migrations').argParser(intArg(1)).conflicts('to'))
    .option('--dry-run', 'rehearse: run up and validate for real, report what they did, then roll back')
    .option('--with-schema', 'also apply pending Prisma schema migrations, interleaved by timestamp')
    .addOption(lockTimeoutOption())
    .addOption(txTimeoutOption())
    .addOption(prismaClientOption())
    .addOption(replicaWaitOption())
    .addOption(deferOption())
    .addOption(new Option('--batch-size <n>', 'backfills: rows per batch').argParser(intArg(1, 1_000_000)))
    .addOption(
      new Option('--max-rows-per-second <n>', 'backfills: throttle to this many rows per second').argParser(intArg(1)),
    )
    .addOption(
      new Option('--pause-ms <duration>', 'backfills: pause between batches (e.g. 100, 100ms, 1s)').argParser(
        durationIn(0, 3_600_000),
      ),
    )
    .addOption(
      new Option(
        '--target-batch-ms <duration>',
        'backfills: adapt the batch size so each batch transaction takes about this long (default 200ms)',
      ).argParser(durationIn(10, 60_000)),
    )
    .action(
      run<UpFlags>(async (ctx, opts) =>
        runWithReport(ctx, opts, (runner) =>
          runner.up({ to: opts.to, step: opts.step, dryRun: opts.dryRun, withSchema: opts.withSchema }),
        ),
      ),
    );

  migrate
    .command('down')
    .description(
      'revert data migrations, newest name first: down and the ledger deletion in one transaction (transaction: false ones run down, then delete their row); also reverts a backfill that ran but was never recorded',
    )
    .addOption(
      new Option('--step <n>', 'revert the last N applied migrations (default 1)').argParser(intArg(1)).conflicts('to'),
    )
    .addOption(
      new Option('--to <name>', 'revert every migration applied after NAME (NAME stays applied)').conflicts('step'),
    )
    .option('--dry-run', 'rehearse: run down for real, report, then roll back')
    .option('-y, --yes', 'do not ask (required without a terminal, except with --dry-run)')
    .addOption(lockTimeoutOption())
    .addOption(txTimeoutOption())
    .addOption(prismaClientOption())
    .addOption(replicaWaitOption())
    .addOption(deferOption())
    .action(
      run<UpFlags & { yes?: boolean }>(async (ctx, opts) => {
        const options = { to: opts.to, step: opts.step, dryRun: opts.dryRun };
        // Reverting undoes data: asked like flush, unlock and reset; a rehearsal (rolled back) is not.
        if (!opts.dryRun && !opts.yes) {
          if (!ctx.out.terminal.interactive) {
            throw new UsageError('refusing to revert migrations without confirmation: no terminal to ask on', {
              hint: 'pass --yes (or rehearse first with --dry-run)',
            });
          }
          const planner = await makeRunner(ctx, opts);
          const { names } = await planner.planDown(options);
          if (names.length > 0) {
            const ok = await ctx.out.confirm(
              `revert ${names.length} migration(s), newest first: ${names.join(', ')}? Their down() runs and their ledger rows go`,
            );
            if (!ok)
              throw new UsageError('not confirmed: nothing reverted', {
                hint: 'pass --yes to revert without a prompt',
              });
          }
        }
        await runWithReport(ctx, opts, (runner) => runner.down(options));
      }),
    );

  migrate
    .command('status')
    .description(
      'data and Prisma schema migrations on one timeline: applied (when, by whom), pending, changed, missing, out of order',
    )
    .action(
      run(async (ctx) => {
        const runner = await makeRunner(ctx, {});
        const { renderStatus } = await import('../../output/migrate.js');
        const status = await runner.status();
        ctx.out.result(status, () => renderStatus(status, ctx.out.c, ctx.out.terminal.colour));
      }),
    );

  migrate
    .command('validate')
    .description(
      "CI gate: drift check plus each applied migration's validate() re-run read-only; exit 3 on any finding",
    )
    .argument('[names...]', 'only re-run these migrations’ validate()')
    .addOption(txTimeoutOption())
    .addOption(prismaClientOption())
    .action(
      run<RunnerFlags>(async (ctx, opts, names) => {
        const runner = await makeRunner(ctx, opts);
        const { renderValidate } = await import('../../output/migrate.js');
        const result = await runner.validate(names);
        ctx.out.result(result, () => renderValidate(result, ctx.out.c));
        if (result.ok) return;
        for (const finding of result.findings)
          ctx.out.annotate(`dbops migrate validate: ${finding.name}`, finding.message);
        throw new CheckFailedError(`migrate validate: ${result.findings.length} finding(s)`, {
          hint: 'see the report above; --json lists them under findings',
          details: { findings: result.findings.length },
        });
      }),
    );

  migrate
    .command('create')
    .description('scaffold a timestamped data migration file')
    .argument('<name>', 'snake_case name, e.g. backfill_order_totals')
    .option('--no-transaction', 'scaffold a transaction: false migration (batched backfill)')
    .action(
      run<{ transaction?: boolean }>(async (ctx, opts, args) => {
        const { scaffoldMigration } = await import('../../migrations/scaffold.js');
        const created = await scaffoldMigration(ctx.config.migrationsDir, args[0] ?? '', {
          transaction: opts.transaction !== false,
        });
        ctx.out.result(created, () => `created ${created.path}`);
      }),
    );

  migrate
    .command('mark-applied')
    .description('record a migration as applied without running it (baseline an existing database)')
    .argument('<name>', 'the migration name (file name without extension)')
    .addOption(lockTimeoutOption())
    .action(
      run<RunnerFlags>(async (ctx, opts, args) =>
        runWithReport(ctx, opts, (runner) => runner.markApplied(args[0] ?? '')),
      ),
    );

  migrate
    .command('repair')
    .alias('resolve')
    .description(
      "accept an edited applied data migration (Flyway's repair; Prisma's migrate resolve): record the file's new checksum after showing the old and new and asking, with who and when in the ledger",
    )
    .argument('[names...]', 'the changed migrations to accept (default: every changed one)')
    .option('-y, --yes', 'do not ask (required without a terminal)')
    .addOption(lockTimeoutOption())
    .action(
      run<RunnerFlags & { yes?: boolean }>(async (ctx, opts, names) => {
        const runner = await makeRunner(ctx, opts);
        const { renderRepairPlan, renderRepairResult } = await import('../../output/migrate.js');
        const plan = await runner.planRepair(names);
        if (plan.changes.length > 0 && !opts.yes) {
          ctx.out.stderr(renderRepairPlan(plan, ctx.out.c));
          const ok = await ctx.out.confirm(
            `Accept the new checksum of ${plan.changes.length} migration(s)? Nothing is run; the ledger records who accepted it`,
          );
          if (!ok) {
            throw new UsageError(`not confirmed: ${plan.changes.length} changed migration(s) left as they are`, {
              hint: 'pass --yes to accept without a prompt (after reviewing the change: git diff)',
            });
          }
        }
        const result = await runner.repair(plan);
        ctx.out.result(result, () => renderRepairResult(result, ctx.out.c));
      }),
    );

  migrate
    .command('unlock')
    .description('end the session holding the migration lock (a hung runner), after naming it and asking')
    .option('-y, --yes', 'do not ask (required without a terminal)')
    .action(
      run<{ yes?: boolean }>(async (ctx, opts) => {
        const runner = await makeRunner(ctx, {});
        const { describeHolder } = await import('../../migrations/lock.js');
        const holder = await runner.lockHolder();
        if (!holder) {
          ctx.out.result(
            { held: false, holder: null, released: false },
            () => 'the migration lock is not held: nothing to do',
          );
          return;
        }
        const who = describeHolder(holder);
        if (!opts.yes) {
          const ok = await ctx.out.confirm(
            `the migration lock is held by ${who}. End that session (its open transaction rolls back; a transaction: false migration keeps the batches it committed)?`,
          );
          if (!ok) {
            throw new UsageError(`not confirmed: the lock is held by ${who}; nothing changed`, {
              hint: 'pass --yes to end it without a prompt',
            });
          }
        }
        const released = await runner.unlock(holder.backendPid);
        ctx.out.result({ held: true, holder, released }, () =>
          released
            ? `ended ${who}: the lock is released and its open transaction rolled back (a transaction: false migration keeps the batches it committed, unrecorded: the next migrate up resumes it)`
            : `could not end ${who} (it may have just finished)`,
        );
        if (!released)
          throw new OperationError(`could not end ${who}`, {
            hint: 'it may have just finished: see dbops migrate status',
          });
      }),
    );
}
