/**
 * MigrationRunner: applies, reverts, rehearses and checks data migrations (and, with
 * `withSchema`, Prisma schema migrations) exactly once, whatever runs concurrently. The CLI and the
 * programmatic API share this class.
 *
 * This file is the orchestration only: read what is on disk and in the ledger, select, check,
 * then hand each migration to `applyMigration` (apply.ts), which runs it in its transaction under
 * the migration lock. The database is reached through the session (session.ts) and the ledger
 * (ledger.ts); both are seams a unit test replaces with in-memory ones.
 */

import { distance } from 'fastest-levenshtein';
import type { Client } from 'pg';
import { queryError } from '../db/pg.js';
import { prismaSchemaOf } from '../db/prisma-migrations.js';
import { ConfigError, DbopsError, InterruptedError, messageOf, OperationError, UsageError } from '../errors.js';
import { applyMigration, type RunParts } from './apply.js';
import { type ContextOptions, MigrationContexts } from './context.js';
import { checkDbopsSchema, DEFAULT_DBOPS_SCHEMA, MIGRATION_LOCK_NAME } from './dbops-schema.js';
import {
  type DrainResult,
  type InvalidationOptions,
  InvalidationRuntime,
  type OutboxEntry,
  readOutbox,
} from './invalidation.js';
import type { Ledger } from './ledger.js';
import { PostgresLedger } from './ledger-pg.js';
import { describeMigrations, listMigrationFiles, loadMigrations, MigrationLoadError } from './loader.js';
import { lockKey } from './lock.js';
import { finishRun, type MigrationRef, newRunResult, schemaOutcome } from './outcome.js';
import {
  computeStatus,
  declaresNoTransaction,
  driftFindings,
  groupRuns,
  olderPendingSchema,
  selectDown,
  selectUp,
  upWarnings,
} from './plan.js';
import { applySchemaGroup, RehearsalLimit, RehearsalState, rehearseSchema, type SchemaTarget } from './schema-steps.js';
import { type Db, resolveIdentity, type Session, type Transaction, withDeadline } from './session.js';
import { PgSession } from './session-pg.js';
import type {
  BackfillProgress,
  ChecksumChange,
  LoadedMigration,
  LockHolder,
  MigrationLogger,
  RepairPlan,
  RepairResult,
  RunEvent,
  RunnerIdentity,
  RunResult,
  StatusResult,
  ValidateFinding,
  ValidateResult,
} from './types.js';

export { MigrationRunError, runResultOf } from './outcome.js';
export type { StatusResult, ValidateFinding, ValidateResult } from './types.js';

export interface MigrationRunnerOptions {
  /** Connection string; prefer the DIRECT one (the lock also holds through PgBouncer transaction pooling). */
  connectionString?: string;
  /** Or a function that opens connections (named `applicationName`); the caller closes them (the runner never does). */
  connect?: (applicationName: string) => Promise<Client>;
  /**
   * The PostgreSQL schema of the application's tables and `_prisma_migrations` (`withSchema`), as
   * Prisma's datasource `?schema=` says; default: connectionString's `?schema=`, else `public`.
   */
  prismaSchema?: string;
  /** Folder of data migrations (default `data-migrations`, relative to cwd). */
  migrationsDir?: string;
  /** Folder of Prisma schema migrations (default `prisma/migrations`); false to ignore them. */
  prismaMigrationsDir?: string | false;
  /** The PostgreSQL schema where dbops keeps its own tables (ledger, backfill checkpoints); default `dbops`. */
  schema?: string;
  /** Your generated PrismaClient (a path or a package such as @prisma/client); false to disable `ctx.prisma`. Default: found from the Prisma schema's generator. */
  prismaClient?: string | false;
  cwd?: string;
  /** How long to wait for another runner's lock (default 60 s). */
  lockTimeoutMs?: number;
  /** Bound on one migration's transaction and on each of its statements (default 10 min). */
  transactionTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Who runs: recorded in the ledger and shown as the lock holder; the rest comes from the OS. */
  identity?: Partial<RunnerIdentity>;
  log?: MigrationLogger;
  onEvent?: (event: RunEvent) => void;
  signal?: AbortSignal;
  /** Throttle and batch defaults handed to backfills (`ctx.backfill`). */
  backfill?: ContextOptions['backfill'];
  /** Cache invalidation (`invalidates`, `ctx.invalidate`): the Redis it is carried out on, CACHE_KEY_PREFIX, the read replicas waited for. */
  invalidation?: InvalidationOptions;
}

/** Replacements for the database seams: unit tests run the runner on an in-memory session and ledger. */
export interface RunnerSeams {
  session?: Session;
  ledger?: Ledger;
}

export interface UpOptions {
  to?: string | undefined;
  step?: number | undefined;
  dryRun?: boolean | undefined;
  withSchema?: boolean | undefined;
}

export interface DownOptions {
  to?: string | undefined;
  step?: number | undefined;
  dryRun?: boolean | undefined;
}

type Item = { kind: 'data' | 'schema'; name: string };

export class MigrationRunner {
  private readonly session: Session;
  private readonly ledger: Ledger;
  private readonly contexts: MigrationContexts;
  private readonly migrationsDir: string;
  private readonly prismaDir: string | undefined;
  private readonly prismaSchema: string;
  private readonly schema: string;
  private readonly log: MigrationLogger | undefined;
  private readonly invalidation: InvalidationRuntime;

  constructor(options: MigrationRunnerOptions, seams: RunnerSeams = {}) {
    if (!options.connectionString && !options.connect && !seams.session) {
      throw new ConfigError('MigrationRunner needs connectionString or connect');
    }
    const cwd = options.cwd ?? process.cwd();
    this.migrationsDir = resolvePath(cwd, options.migrationsDir ?? 'data-migrations');
    this.prismaDir =
      options.prismaMigrationsDir === false
        ? undefined
        : resolvePath(cwd, options.prismaMigrationsDir ?? 'prisma/migrations');
    this.prismaSchema = options.prismaSchema ?? prismaSchemaOf(options.connectionString);
    this.schema = checkDbopsSchema(options.schema ?? DEFAULT_DBOPS_SCHEMA);
    this.log = options.log;
    // The one place the ledger is made.
    this.ledger = seams.ledger ?? new PostgresLedger(this.schema);
    this.session =
      seams.session ??
      new PgSession({
        connectionString: options.connectionString,
        connect: options.connect,
        connectTimeoutMs: options.connectTimeoutMs,
        identity: resolveIdentity(options.identity),
        lockKey: lockKey(MIGRATION_LOCK_NAME),
        lockTimeoutMs: options.lockTimeoutMs ?? 60_000,
        transactionTimeoutMs: options.transactionTimeoutMs ?? 600_000,
        onEvent: options.onEvent,
        signal: options.signal,
      });
    this.invalidation = new InvalidationRuntime(this.schema, options.invalidation ?? {});
    this.contexts = new MigrationContexts(
      {
        cwd,
        prismaClient: options.prismaClient,
        log: options.log,
        backfill: { ...options.backfill, schema: this.schema },
        invalidation: this.invalidation,
      },
      this.session,
    );
  }

  /** Closes what the runner opened itself (not connections from `connect`). */
  async close(): Promise<void> {
    await this.contexts.dispose();
    await this.session.close();
  }

  /** Applied, pending, changed, missing and out-of-order migrations of both kinds, one timeline. No code runs. */
  async status(): Promise<StatusResult> {
    const db = await this.session.reader();
    const [{ files, problems }, schema] = await Promise.all([
      listMigrationFiles(this.migrationsDir),
      this.schemaState(db),
    ]);
    const [ledger, legacy] = await Promise.all([this.ledger.read(db), this.ledger.legacy(db)]).catch(
      (error: unknown) => {
        throw queryError(error, 'reading the migration ledger');
      },
    );
    const status = computeStatus({
      disk: files.map((f) => ({
        name: f.name,
        timestamp: f.timestamp,
        checksum: f.checksum,
        transactional: !declaresNoTransaction(f.source),
      })),
      ledger: ledger ?? [],
      schemaFiles: schema.files,
      schemaApplied: schema.applied,
      ledgerExists: ledger !== null,
    });
    // Pending migrations have no ledger row: their description comes from their module.
    const unrecorded = new Set(
      status.entries
        .filter((e) => e.kind === 'data' && e.description === null && e.state !== 'missing')
        .map((e) => e.name),
    );
    if (unrecorded.size > 0) {
      const descriptions = await describeMigrations(files, unrecorded);
      for (const e of status.entries)
        if (e.kind === 'data' && descriptions.has(e.name)) e.description = descriptions.get(e.name) ?? null;
    }
    // Unfinished backfills, and finished ones never recorded (their validate failed): both need a person.
    const recorded = new Set((ledger ?? []).map((r) => r.name));
    const backfills = (await this.backfillProgress())
      .filter((b) => !b.finished || !recorded.has(b.migration))
      .map((b) => ({ ...b, resumedBy: recorded.has(b.migration) ? ('down' as const) : ('up' as const) }));
    const invalidations = await this.outbox();
    return { ...status, problems, backfills, ledger: { location: this.ledger.location, legacy }, invalidations };
  }

  /** The cache-invalidation outbox: what is owed, and the latest done. */
  async outbox(): Promise<{ owed: OutboxEntry[]; done: OutboxEntry[] }> {
    return readOutbox((await this.session.reader()).client, this.schema).catch((error: unknown) => {
      throw queryError(error, 'reading the cache-invalidation outbox');
    });
  }

  /**
   * Carries out every cache invalidation still owed (a run killed between a commit and its
   * invalidation, Redis down, a replica behind): `dbops cache drain`, and the start of up and down.
   */
  async drain(): Promise<DrainResult> {
    return this.invalidation.drain((await this.session.reader()).client, undefined, this.session.signal);
  }

  /** Before a run applies anything: what earlier runs still owe the cache, carried out first. */
  private async drainFirst(): Promise<void> {
    const drained = await this.drain();
    if (drained.rows > 0) {
      this.log?.info(
        `carried out ${drained.rows} cache invalidation(s) still owed by earlier runs (${drained.entries.map((e) => e.migration).join(', ')}): ${drained.keysRemoved} key(s) removed`,
      );
    }
  }

  async up(options: UpOptions = {}): Promise<RunResult> {
    const started = performance.now();
    const result = newRunResult('up', Boolean(options.dryRun));
    const { selected, loaded, schema } = await this.planUp(options, result);
    // An interrupted down leaves its migration recorded as applied with an unfinished backfill: up has nothing to run for it.
    const recorded = new Set(((await this.ledger.read(await this.session.reader())) ?? []).map((r) => r.name));
    for (const b of await this.backfillProgress()) {
      if (!b.finished && recorded.has(b.migration)) {
        result.warnings.push(
          `${b.migration} is still recorded as applied but its down() was interrupted part-way (backfill on ${b.table} unfinished): up does not touch it; dbops migrate down finishes the revert, then up applies it again`,
        );
      }
    }
    const run = this.parts(result);
    return finishRun(result, started, async () => {
      if (options.dryRun) {
        return this.rehearse(async (tx) => {
          const state = new RehearsalState();
          for (const [i, item] of selected.entries()) {
            try {
              if (item.kind === 'schema') await rehearseSchema(this.session, tx, schema, item.name, result, state);
              else
                await applyMigration(run, {
                  direction: 'up',
                  migration: loaded.get(item.name) as LoadedMigration,
                  rehearsal: tx,
                });
            } catch (error) {
              if (!(error instanceof RehearsalLimit)) throw error;
              // Not a failure: what follows is not rehearsed, and the result says why.
              result.warnings.push(error.message);
              for (const rest of selected.slice(i + 1)) {
                result.outcomes.push({
                  ...schemaOutcome(rest.name, 'rehearsed', 0),
                  kind: rest.kind,
                  status: 'skipped',
                  note: `not rehearsed (after ${item.name})`,
                });
              }
              return;
            }
          }
        });
      }
      await this.moveLegacyLedger();
      await this.drainFirst();
      for (const group of groupRuns(selected)) {
        const first = group[0] as Item;
        const applied = result.outcomes.filter((o) => o.status === 'applied').length;
        this.stopIfInterrupted(
          `interrupted before ${first.name}; ${applied} migration(s) applied`,
          'run dbops migrate up again to continue',
        );
        if (first.kind === 'schema') {
          await applySchemaGroup(
            this.session,
            schema,
            group.map((i) => i.name),
            result,
          );
        } else {
          await applyMigration(run, { direction: 'up', migration: loaded.get(first.name) as LoadedMigration });
        }
      }
    });
  }

  /** What `up` will run, in timeline order, every pending module loaded (and every problem reported) first. */
  private async planUp(options: UpOptions, result: RunResult) {
    const db = await this.session.reader();
    // Naming problems are reported together with load errors by loadMigrations below.
    const { files } = await listMigrationFiles(this.migrationsDir);
    const ledger = (await this.ledger.read(db)) ?? [];
    const schema = await this.schemaState(db);
    const recorded = new Set(ledger.map((r) => r.name));
    const pendingData = files.filter((f) => !recorded.has(f.name)).map((f) => f.name);
    const schemaDone = new Set(schema.applied.filter((a) => a.finishedAt && !a.rolledBackAt).map((a) => a.name));
    const pendingSchema = schema.files.filter((f) => !schemaDone.has(f.name)).map((f) => f.name);
    result.warnings.push(...upWarnings(files, ledger, pendingData));

    if (options.to !== undefined && !options.withSchema && schema.files.some((f) => f.name === options.to)) {
      throw new UsageError(`--to ${options.to} is a Prisma schema migration`, {
        hint: 'add --with-schema to apply schema migrations too',
      });
    }
    const items: Item[] = [
      ...pendingData.map((name) => ({ kind: 'data' as const, name })),
      ...(options.withSchema ? pendingSchema.map((name) => ({ kind: 'schema' as const, name })) : []),
    ];
    const selected = selectUp(
      items,
      new Set([...files.map((f) => f.name), ...schema.files.map((f) => f.name)]),
      options,
    );
    for (const item of options.withSchema ? [] : selected) {
      const older = olderPendingSchema(item.name, pendingSchema);
      if (older.length > 0) {
        throw new OperationError(
          `data migration ${item.name} needs the Prisma schema migration ${older[0]}, which is not applied`,
          {
            hint: 'apply schema migrations first (prisma migrate deploy), or run dbops migrate up --with-schema to interleave them',
            details: { migration: item.name, pendingSchema: older },
          },
        );
      }
    }
    const pending = new Set(pendingData);
    const loaded = new Map(
      (await loadMigrations(this.migrationsDir, { only: (n) => pending.has(n) })).map((m) => [m.name, m]),
    );
    this.contexts.preload(selected.flatMap((i) => (i.kind === 'data' ? [loaded.get(i.name) as LoadedMigration] : [])));
    const target: SchemaTarget = { schema: this.prismaSchema, files: new Map(schema.files.map((f) => [f.name, f])) };
    return { selected, loaded, schema: target };
  }

  /** The migrations `down` with these options would revert, newest first (what `migrate down` asks about). */
  async planDown(options: DownOptions = {}): Promise<{ names: string[]; unrecorded: Set<string> }> {
    const recorded = new Set(((await this.ledger.read(await this.session.reader())) ?? []).map((r) => r.name));
    // A transaction: false migration whose batches committed but which was never recorded (its
    // validate failed, or it was interrupted) can be reverted too: that is how one gets unstuck.
    const unrecorded = new Set((await this.backfillProgress()).map((b) => b.migration).filter((n) => !recorded.has(n)));
    return { names: selectDown([...recorded, ...unrecorded], options), unrecorded };
  }

  async down(options: DownOptions = {}): Promise<RunResult> {
    const started = performance.now();
    const result = newRunResult('down', Boolean(options.dryRun));
    const { names, unrecorded } = await this.planDown(options);
    const targets = await this.loadForDown(names);
    this.contexts.preload(targets);
    const run = this.parts(result);
    const jobs = targets.map((migration) => ({
      direction: 'down' as const,
      migration,
      unrecorded: unrecorded.has(migration.name),
    }));
    return finishRun(result, started, async () => {
      if (options.dryRun) {
        return this.rehearse(async (tx) => {
          for (const job of jobs) await applyMigration(run, { ...job, rehearsal: tx });
        });
      }
      await this.moveLegacyLedger();
      await this.drainFirst();
      for (const job of jobs) {
        this.stopIfInterrupted(
          `interrupted before reverting ${job.migration.name}`,
          'run dbops migrate down again to continue',
        );
        await applyMigration(run, job);
      }
    });
  }

  /** The modules `down` reverts, newest first; each must still be on disk and have a down(). */
  private async loadForDown(names: string[]): Promise<LoadedMigration[]> {
    const { files } = await listMigrationFiles(this.migrationsDir);
    const onDisk = new Set(files.map((f) => f.name));
    for (const name of names) {
      if (!onDisk.has(name)) {
        throw new UsageError(`cannot revert ${name}: its file is missing from ${this.migrationsDir}`, {
          hint: 'restore the file, or delete its ledger row by hand',
        });
      }
    }
    const wanted = new Set(names);
    const loaded = new Map(
      (await loadMigrations(this.migrationsDir, { only: (n) => wanted.has(n) })).map((m) => [m.name, m]),
    );
    return names.map((name) => {
      const m = loaded.get(name);
      if (!m?.hasDown) {
        throw new UsageError(`cannot revert ${name}: it has no down()`, {
          hint: 'add a down() to the migration, or write a new migration that undoes it',
        });
      }
      return m;
    });
  }

  /** Records a migration as applied without running it (baseline an existing database). */
  async markApplied(name: string): Promise<RunResult> {
    const started = performance.now();
    const result = newRunResult('mark-applied', false);
    const file = (await listMigrationFiles(this.migrationsDir)).files.find((f) => f.name === name);
    if (!file)
      throw new UsageError(`mark-applied ${name}: no such data migration in ${this.migrationsDir}`, {
        hint: 'see dbops migrate status for the names',
      });
    const migration: MigrationRef = {
      name,
      checksum: file.checksum,
      description: undefined,
      transactional: !declaresNoTransaction(file.source),
    };
    return finishRun(result, started, async () => {
      await this.moveLegacyLedger();
      await applyMigration(this.parts(result), { direction: 'mark', migration });
    });
  }

  /**
   * The applied data migrations whose file changed since (all of them, or those of `names`): the
   * checksum in the ledger and the file's. Nothing is written; `repair(plan)` accepts them.
   */
  async planRepair(names: string[] = []): Promise<RepairPlan> {
    const { files, problems } = await listMigrationFiles(this.migrationsDir);
    if (problems.length > 0) throw new MigrationLoadError(problems);
    const rows = new Map(((await this.ledger.read(await this.session.reader())) ?? []).map((r) => [r.name, r]));
    for (const name of names) {
      if (!rows.has(name)) {
        throw new UsageError(`repair ${name}: not an applied data migration`, {
          hint: 'see dbops migrate status for the names; only applied data migrations have a recorded checksum',
        });
      }
      if (!files.some((f) => f.name === name)) {
        throw new UsageError(`repair ${name}: its file is missing from ${this.migrationsDir}`, {
          hint: 'restore the file; repair records the checksum of the file as it is now',
        });
      }
    }
    const changes: ChecksumChange[] = [];
    for (const f of files) {
      const row = rows.get(f.name);
      if (!row || row.checksum === f.checksum || (names.length > 0 && !names.includes(f.name))) continue;
      changes.push({ name: f.name, previousChecksum: row.checksum, checksum: f.checksum });
    }
    return { changes, unchanged: names.filter((n) => !changes.some((c) => c.name === n)) };
  }

  /**
   * Accepts the changes of `plan` (Flyway's `repair`): under the migration lock, each row gets the
   * file's checksum, and its audit trail who, when and the checksum before. A row whose checksum is
   * no longer the one in the plan (someone repaired or reapplied it meanwhile) is left alone.
   */
  async repair(plan: RepairPlan): Promise<RepairResult> {
    const started = performance.now();
    const result: RepairResult = {
      command: 'repair',
      accepted: [],
      skipped: [],
      unchanged: plan.unchanged,
      durationMs: 0,
    };
    if (plan.changes.length > 0) {
      await this.moveLegacyLedger();
      const tx = await this.session.begin({ lock: true, bounded: true });
      try {
        for (const change of plan.changes) {
          if (await this.ledger.repair(tx, change.name, { ...change, identity: this.session.identity }))
            result.accepted.push(change);
          else
            result.skipped.push({
              name: change.name,
              reason: 'its ledger row changed meanwhile (another repair, or a down and up)',
            });
        }
        await this.session.commit(tx);
      } catch (error) {
        await this.session.rollback(tx);
        throw error instanceof DbopsError
          ? error
          : queryError(error, `recording the new checksums in ${this.ledger.location}`);
      }
    }
    result.durationMs = performance.now() - started;
    return result;
  }

  /**
   * Drift check plus each applied migration's validate() re-run in a READ ONLY transaction
   * (rolled back). `names` restricts the validate() re-runs.
   */
  async validate(names: string[] = []): Promise<ValidateResult> {
    const status = await this.status();
    if (status.problems.length > 0) throw new MigrationLoadError(status.problems);
    const findings = driftFindings(status.drift);
    const appliedData = status.entries
      .filter((e) => e.kind === 'data' && (e.state === 'applied' || e.state === 'changed'))
      .map((e) => e.name);
    // A name that is no migration at all is a typo (usage, exit 2), not a finding about the database.
    const known = status.entries.filter((e) => e.kind === 'data').map((e) => e.name);
    const unknown = names.filter((n) => !known.includes(n));
    if (unknown.length > 0) {
      const near = nearNames(unknown[0] ?? '', known);
      throw new UsageError(`validate: no data migration named ${unknown.join(', ')}`, {
        hint:
          near.length > 0
            ? `did you mean ${near.join(', ')}? (dbops migrate status lists them)`
            : 'dbops migrate status lists the data migrations',
      });
    }
    for (const n of names) {
      if (!appliedData.includes(n))
        findings.push({ name: n, kind: 'not-applied', message: `${n} is not an applied data migration` });
    }
    const wanted = new Set(names.length > 0 ? names.filter((n) => appliedData.includes(n)) : appliedData);
    const loaded = await loadMigrations(this.migrationsDir, { only: (n) => wanted.has(n) });
    this.contexts.preload(loaded.filter((m) => m.hasValidate));
    const checked: ValidateResult['checked'] = [];
    for (const m of loaded) checked.push(await this.recheck(m, findings));
    return { ok: findings.length === 0, checked, findings, status };
  }

  /** One validate() again, read-only and rolled back; its verdict, and a finding when it fails. */
  private async recheck(m: LoadedMigration, findings: ValidateFinding[]): Promise<ValidateResult['checked'][number]> {
    const validate = m.migration.validate;
    if (!validate) return { name: m.name, verdict: null, durationMs: 0 };
    const t0 = performance.now();
    const tx = await this.session.begin({ readOnly: true });
    try {
      const ctx = await this.contexts.create(tx.client, m, true, tx);
      const run = Promise.resolve(validate(ctx));
      const verdict =
        (await withDeadline(run, this.session.transactionTimeoutMs, 'validate', () =>
          this.session.abandon(tx.client),
        )) !== false;
      if (!verdict)
        findings.push({ name: m.name, kind: 'validate-false', message: `${m.name}: validate() returned false` });
      return { name: m.name, verdict, durationMs: performance.now() - t0 };
    } catch (error) {
      findings.push({
        name: m.name,
        kind: 'validate-error',
        message: `${m.name}: validate() threw: ${messageOf(error)}`,
      });
      return { name: m.name, verdict: false, durationMs: performance.now() - t0, error: messageOf(error) };
    } finally {
      await this.session.rollback(tx);
    }
  }

  /** The session holding the migration lock right now, or null. */
  async lockHolder(): Promise<LockHolder | null> {
    return this.session.lockHolder();
  }

  /** Terminates the holder's server session (its transaction rolls back and the lock is released). */
  async unlock(backendPid: number): Promise<boolean> {
    return this.session.unlock(backendPid);
  }

  /** Backfill checkpoints (finished or not); [] before any backfill ran. */
  async backfillProgress(): Promise<BackfillProgress[]> {
    const { readBackfillProgress } = await import('./backfill.js');
    return readBackfillProgress((await this.session.reader()).client, this.schema);
  }

  private parts(result: RunResult): RunParts {
    return {
      session: this.session,
      ledger: this.ledger,
      contexts: this.contexts,
      result,
      invalidation: this.invalidation,
    };
  }

  /** A rehearsal: one transaction under the lock for everything it runs, rolled back whatever happens. */
  private async rehearse(body: (tx: Transaction) => Promise<void>): Promise<void> {
    const tx = await this.session.begin({ lock: true, bounded: true });
    try {
      await this.ledger.ensure(tx);
      await body(tx);
    } finally {
      await this.session.rollback(tx);
    }
  }

  /**
   * A command that writes moves an older dbops' ledger (and checkpoints) into dbops' schema first,
   * under the migration lock, in a short transaction of its own. Nothing is created otherwise: the
   * first migration that records itself creates the ledger, in its own transaction.
   */
  private async moveLegacyLedger(): Promise<void> {
    if (!(await this.ledger.legacy(await this.session.reader()))) return;
    const tx = await this.session.begin({ lock: true, bounded: true });
    try {
      const moved = await this.ledger.ensure(tx);
      await this.session.commit(tx);
      for (const line of moved) this.log?.info(line);
    } catch (error) {
      await this.session.rollback(tx);
      throw error instanceof DbopsError ? error : queryError(error, `moving the ledger to ${this.ledger.location}`);
    }
  }

  private stopIfInterrupted(message: string, hint: string): void {
    if (this.session.signal?.aborted) throw new InterruptedError(message, { hint });
  }

  private async schemaState(db: Db) {
    if (!this.prismaDir) return { files: [], applied: [] };
    const { listSchemaMigrations, readAppliedSchemaMigrations } = await import('../db/prisma-migrations.js');
    const [files, applied] = await Promise.all([
      listSchemaMigrations(this.prismaDir),
      readAppliedSchemaMigrations(db.client, this.prismaSchema),
    ]);
    return { files, applied };
  }
}

function resolvePath(cwd: string, p: string): string {
  return p.startsWith('/') ? p : `${cwd.replace(/\/$/, '')}/${p}`;
}

/** Up to three names close to `wanted`: the same suffix without its timestamp, or a few edits away. */
export function nearNames(wanted: string, names: string[]): string[] {
  const bare = (n: string) => n.replace(/^\d{14}_/, '');
  const w = bare(wanted).toLowerCase();
  return names
    .map((name) => {
      const b = bare(name).toLowerCase();
      const d = b.includes(w) || w.includes(b) ? 0 : distance(w, b);
      return { name, d };
    })
    .filter((x) => x.d <= Math.max(2, Math.floor(w.length / 3)))
    .sort((a, b) => a.d - b.d || a.name.localeCompare(b.name))
    .slice(0, 3)
    .map((x) => x.name);
}
