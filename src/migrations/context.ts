/**
 * The migration context (`ctx`) handed to up, down and validate: `ctx.sql` and `ctx.prisma` on the
 * migration's connection (inside its transaction when it has one), its logger, and `ctx.backfill`
 * on the session's second connection.
 */
import type { ClientBase } from 'pg';
import { ConfigError, UsageError } from '../errors.js';
import { describeTableLockHolder } from './backfill-types.js';
import { expandTemplate, type InvalidationRuntime, Owed } from './invalidation.js';
import { bindPrismaClient, loadPrismaClient, locatePrismaClient } from './prisma.js';
import type { Session, Transaction } from './session.js';
import { createSqlTag, guardStatement, type StatementGuard } from './sql.js';
import type {
  BackfillResult,
  BackfillRunOptions,
  BackfillSpec,
  InvalidationOutcome,
  LoadedMigration,
  MigrationContext,
  MigrationLogger,
} from './types.js';

export interface ContextOptions {
  cwd: string;
  /** Module exporting the generated PrismaClient; false disables `ctx.prisma`; undefined: the default places. */
  prismaClient: string | false | undefined;
  log?: MigrationLogger | undefined;
  /** Throttle and batch defaults handed to backfills. */
  backfill?: Omit<BackfillRunOptions, 'signal' | 'onProgress' | 'log'> | undefined;
  /** Cache invalidation: the prefix, the outbox's schema, the cache and the replicas. */
  invalidation?: InvalidationRuntime | undefined;
}

/** What a context's migration owes the cache: its own transaction's, and its backfill batches' (already recorded and drained). */
export interface ContextOwed {
  owed: Owed;
  batches: InvalidationOutcome | undefined;
}

type PrismaLoad = Awaited<ReturnType<typeof loadPrismaClient>>;

/** Builds contexts for one runner; owns the Prisma clients bound to its connections. */
export class MigrationContexts {
  private prismaLoad: Promise<PrismaLoad> | undefined;
  private readonly bound = new Map<ClientBase, { prisma: unknown; dispose(): Promise<void> }>();
  /** The guard of the migration currently using a connection (a bound Prisma client outlives one migration). */
  private readonly guards = new Map<ClientBase, StatementGuard>();
  private readonly backfills = new WeakMap<MigrationContext, BackfillResult[]>();
  private readonly owed = new WeakMap<MigrationContext, ContextOwed>();

  constructor(
    private readonly opts: ContextOptions,
    private readonly session: Pick<Session, 'aux' | 'emit' | 'signal'>,
  ) {}

  /** Starts loading the Prisma client when one of these migrations mentions it. */
  preload(migrations: LoadedMigration[]): void {
    if (!migrations.some((m) => m.usesPrisma) || this.opts.prismaClient === false || this.prismaLoad) return;
    // Found from DBOPS_PRISMA_CLIENT or the application's schema.prisma; the error names where it looked.
    this.prismaLoad = locatePrismaClient(this.opts.cwd, this.opts.prismaClient || undefined).then(loadPrismaClient);
    // Awaited lazily by the first migration that touches ctx.prisma; avoid an unhandled rejection.
    this.prismaLoad.catch(() => {});
  }

  /**
   * The context of `m` on `client`; `prisma` is bound to `client` (its transaction). `tx` is the
   * migration's transaction (for `transaction: false`, the lock transaction): once it is lost,
   * `signal` aborts and no statement or batch is sent any more.
   */
  async create(
    client: ClientBase,
    m: LoadedMigration,
    dryRun: boolean,
    tx: Transaction,
    direction: 'up' | 'down' = 'up',
  ): Promise<MigrationContext> {
    const prefixed = (level: keyof MigrationLogger) => (message: string) =>
      this.opts.log?.[level](`${m.name}: ${message}`);
    const log: MigrationLogger = { info: prefixed('info'), warn: prefixed('warn'), debug: prefixed('debug') };
    const signal = this.session.signal ? AbortSignal.any([this.session.signal, tx.lost]) : tx.lost;
    // Inside dbops' transaction (a migration's own, or validate's read-only re-run) nothing may end it.
    const guard: StatementGuard = { inTransaction: client === tx.client, tx };
    this.guards.set(client, guard);
    const prisma = await this.prismaFor(client, m);
    const results: BackfillResult[] = [];
    const runtime = this.opts.invalidation;
    const owed = new Owed(runtime?.prefix, dryRun ? undefined : () => runtime?.warm());
    owed.addPatterns(m.migration.invalidates ?? []);
    const owes: ContextOwed = { owed, batches: undefined };
    const ctx: MigrationContext = {
      name: m.name,
      sql: createSqlTag(client, guard),
      log,
      options: m.migration.options ?? {},
      dryRun,
      signal,
      get prisma(): unknown {
        if ('error' in prisma) throw prisma.error;
        return prisma.value;
      },
      backfill: async (spec: BackfillSpec) => {
        if (m.transactional) {
          throw new UsageError(`${m.name}: ctx.backfill() needs defineDataMigration({ transaction: false, ... })`, {
            hint: 'a backfill commits batch by batch, which cannot happen inside the migration transaction',
          });
        }
        const { runBackfill } = await import('./backfill.js');
        const result = await runBackfill(await this.session.aux(), m.name, spec, {
          ...this.opts.backfill,
          ...(spec.invalidate ? { invalidation: this.batchInvalidation(m.name, direction, spec, owes) } : {}),
          signal: this.session.signal,
          lock: { lost: tx.lost, lostError: () => tx.lostError(), check: (batch) => tx.holds(batch) },
          onProgress: (progress) => this.session.emit({ type: 'backfill', progress }),
          onPhase: (phase) => this.session.emit({ type: 'phase', name: m.name, phase }),
          onLockWait: (holders) =>
            this.session.emit({
              type: 'phase',
              name: m.name,
              phase: 'waiting for a row lock',
              detail: `held by ${holders.map(describeTableLockHolder).join(', ')}; retrying`,
            }),
          log: (message) => log.debug(message),
        });
        results.push(result);
        return result;
      },
      invalidate: owed.invalidate(),
    };
    this.backfills.set(ctx, results);
    this.owed.set(ctx, owes);
    return ctx;
  }

  /** What the migration run in `ctx` owes the cache. */
  owedOf(ctx: MigrationContext): ContextOwed | undefined {
    return this.owed.get(ctx);
  }

  /** A backfill's per-batch invalidation: the batch's keys into the outbox in its transaction, drained after its commit. */
  private batchInvalidation(name: string, direction: 'up' | 'down', spec: BackfillSpec, owes: ContextOwed) {
    const runtime = this.opts.invalidation;
    const declared = spec.invalidate;
    if (!runtime || !declared)
      throw new ConfigError(`${name}: the backfill declares invalidate, but dbops has no cache configuration`);
    owes.batches ??= {
      patterns: [],
      keys: 0,
      sample: [],
      outboxRows: 0,
      done: true,
      keysRemoved: 0,
      replicaWaitMs: null,
      replicas: [],
    };
    const summary: InvalidationOutcome = owes.batches;
    // The keys of the batch just recorded, handed to its drain (not read back from the outbox).
    const written = new Map<number, string[]>();
    return {
      record: async (client: ClientBase, keys: unknown[], batch: number): Promise<number | null> => {
        const owed = new Owed(runtime.prefix);
        owed.addKeys(typeof declared === 'string' ? expandTemplate(declared, keys) : declared(keys));
        const { recordOwed } = await import('./invalidation.js');
        const id = await recordOwed(client, runtime.schema, owed, { migration: name, direction, batch });
        written.clear();
        if (id !== null) written.set(id, [...owed.keys]);
        return id;
      },
      drain: async (client: ClientBase, id: number, keys: number): Promise<void> => {
        summary.outboxRows++;
        summary.keys += keys;
        const before = summary.done;
        summary.done = false;
        const drained = await runtime.drain(client, [id], this.session.signal, written);
        summary.keysRemoved += drained.keysRemoved;
        // false while another dbops (a concurrent cache drain) holds the row and carries it out.
        summary.done = before && drained.entries.some((e) => e.id === id);
        const wait = drained.replicaWait;
        if (wait && (summary.replicaWaitMs === null || wait.waitedMs > summary.replicaWaitMs)) {
          summary.replicaWaitMs = Math.round(wait.waitedMs);
          summary.replicas = wait.replicas;
        }
      },
    };
  }

  /** The last backfill a context ran, for the run report. */
  lastBackfill(ctx: MigrationContext): BackfillResult | undefined {
    return this.backfills.get(ctx)?.at(-1);
  }

  async dispose(): Promise<void> {
    for (const b of this.bound.values()) await b.dispose();
    this.bound.clear();
  }

  private async prismaFor(client: ClientBase, m: LoadedMigration): Promise<{ value: unknown } | { error: unknown }> {
    if (!this.prismaLoad || !m.usesPrisma) {
      return {
        error: new ConfigError('ctx.prisma is not available: the Prisma client is disabled (prismaClient: false)', {
          hint: 'set --prisma-client / DBOPS_PRISMA_CLIENT, or use ctx.sql',
        }),
      };
    }
    try {
      const loaded = await this.prismaLoad;
      let bound = this.bound.get(client);
      if (!bound) {
        bound = bindPrismaClient(loaded, client, (text) =>
          guardStatement(text, this.guards.get(client) ?? { inTransaction: true }, 'ctx.prisma'),
        );
        this.bound.set(client, bound);
      }
      return { value: bound.prisma };
    } catch (error) {
      return { error };
    }
  }
}
