/**
 * MigrationRunner: applies, reverts, rehearses and checks data migrations (and, with
 * `withSchema`, Prisma schema migrations) exactly once, whatever runs concurrently.
 *
 * Per migration, on one connection: BEGIN → take the transaction-scoped lock (lock.ts) → re-read
 * the ledger → up → validate → insert the ledger row → COMMIT. Anything false or thrown rolls the
 * whole transaction back. A `transaction: false` migration works on a second connection while the
 * first keeps the lock transaction open; its ledger row is inserted in that lock transaction only
 * after validate passes. The CLI and the programmatic API share this class.
 */
import { hostname, userInfo } from 'node:os';
import type { Client, ClientBase } from 'pg';
import { connectPg, queryError } from '../db/pg.js';
import { ConfigError, DbopsError, InterruptedError, messageOf, OperationError, UsageError } from '../errors.js';
import {
  appliedNames,
  DEFAULT_LEDGER_TABLE,
  deleteLedgerRow,
  ensureLedger,
  ensureLedgerInTransaction,
  insertLedgerRow,
  ledgerExists,
  readLedger,
} from './ledger.js';
import { listMigrationFiles, loadMigrations, type MigrationFile, MigrationLoadError } from './loader.js';
import { acquireLockTransaction, findLockHolder, holderApplicationName, lockKey, terminateHolder } from './lock.js';
import { computeStatus, declaresNoTransaction, newestName, olderPendingSchema, selectDown, selectUp } from './plan.js';
import { bindPrismaClient, loadPrismaClient, locatePrismaClient } from './prisma.js';
import { createSqlTag, recordStatements, summarise } from './sql.js';
import type {
  BackfillProgress,
  BackfillResult,
  BackfillRunOptions,
  BackfillSpec,
  LoadedMigration,
  LockHolder,
  MigrationContext,
  MigrationLogger,
  MigrationOutcome,
  MigrationStatus,
  MigrationStep,
  RunEvent,
  RunnerIdentity,
  RunResult,
  StatementStat,
} from './types.js';

export interface MigrationRunnerOptions {
  /** Connection string; prefer the DIRECT one (the lock also holds through PgBouncer transaction pooling). */
  connectionString?: string;
  /** Or a function that opens connections; the caller closes them (the runner never does). */
  connect?: () => Promise<Client>;
  /** URL for Prisma's schema engine (`withSchema`); defaults to connectionString. */
  schemaEngineUrl?: string;
  /** Folder of data migrations (default `data-migrations`, relative to cwd). */
  migrationsDir?: string;
  /** Folder of Prisma schema migrations (default `prisma/migrations`); false to ignore them. */
  prismaMigrationsDir?: string | false;
  ledgerTable?: string;
  /** Your generated PrismaClient (a path or a package such as @prisma/client); false to disable `ctx.prisma`. Default: found from the Prisma schema's generator. */
  prismaClient?: string | false;
  cwd?: string;
  /** How long to wait for another runner's lock (default 60 s). */
  lockTimeoutMs?: number;
  /** Bound on one migration's transaction and on each of its statements (default 10 min). */
  transactionTimeoutMs?: number;
  connectTimeoutMs?: number;
  identity?: Partial<RunnerIdentity>;
  log?: MigrationLogger;
  onEvent?: (event: RunEvent) => void;
  signal?: AbortSignal;
  /** Throttle and batch defaults handed to backfills (`ctx.backfill`). */
  backfill?: Omit<BackfillRunOptions, 'signal' | 'onProgress' | 'log'>;
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

export interface ValidateFinding {
  name: string;
  kind: 'changed' | 'missing' | 'out-of-order' | 'not-applied' | 'validate-false' | 'validate-error';
  message: string;
}

export interface ValidateResult {
  ok: boolean;
  checked: { name: string; verdict: boolean | null; durationMs: number; error?: string }[];
  findings: ValidateFinding[];
  status: MigrationStatus;
}

export interface StatusResult extends MigrationStatus {
  problems: { path: string; cause: string }[];
  /** Backfills with a checkpoint that have not finished (percent done, last key). */
  backfills: BackfillProgress[];
}

const RESULT = Symbol.for('dbops.runResult');

/** The partial run result carried by an error thrown from up/down (what ran before the failure). */
export function runResultOf(error: unknown): RunResult | undefined {
  return error && typeof error === 'object' ? ((error as Record<symbol, RunResult | undefined>)[RESULT] ?? undefined) : undefined;
}

type PrismaLoad = Awaited<ReturnType<typeof loadPrismaClient>>;

/** A step of a migration failed: the migration's transaction was rolled back. */
class StepFailure extends Error {
  constructor(
    readonly step: MigrationStep,
    readonly causeError: unknown,
    message: string,
  ) {
    super(message);
  }
}

export class MigrationRunner {
  private readonly opts: MigrationRunnerOptions;
  private readonly cwd: string;
  private readonly table: string;
  private readonly key: [number, number];
  private readonly identity: RunnerIdentity;
  private readonly appName: string;
  private readonly opened: Client[] = [];
  private main: Client | undefined;
  private aux: Client | undefined;
  private serverVersion: number | undefined;
  private prismaLoad: Promise<PrismaLoad> | undefined;
  private prismaBound = new Map<ClientBase, { prisma: unknown; dispose(): Promise<void> }>();

  constructor(options: MigrationRunnerOptions) {
    if (!options.connectionString && !options.connect) throw new ConfigError('MigrationRunner needs connectionString or connect');
    this.opts = options;
    this.cwd = options.cwd ?? process.cwd();
    this.table = options.ledgerTable ?? DEFAULT_LEDGER_TABLE;
    this.key = lockKey(this.table);
    this.identity = {
      user: options.identity?.user ?? safeUser(),
      host: options.identity?.host ?? hostname(),
      pid: options.identity?.pid ?? process.pid,
      ciJob: options.identity?.ciJob,
      dbopsVersion: options.identity?.dbopsVersion ?? 'unknown',
    };
    this.appName = holderApplicationName(this.identity);
  }

  private get migrationsDir(): string {
    return resolvePath(this.cwd, this.opts.migrationsDir ?? 'data-migrations');
  }

  private get prismaDir(): string | undefined {
    if (this.opts.prismaMigrationsDir === false) return undefined;
    return resolvePath(this.cwd, this.opts.prismaMigrationsDir ?? 'prisma/migrations');
  }

  private get lockTimeoutMs(): number {
    return this.opts.lockTimeoutMs ?? 60_000;
  }

  private get txTimeoutMs(): number {
    return this.opts.transactionTimeoutMs ?? 600_000;
  }

  private emit(event: RunEvent): void {
    this.opts.onEvent?.(event);
  }

  private async open(): Promise<Client> {
    if (this.opts.connect) return this.opts.connect();
    const client = await connectPg({
      connectionString: this.opts.connectionString as string,
      timeoutMs: this.opts.connectTimeoutMs ?? 5000,
      applicationName: this.appName,
    });
    this.opened.push(client);
    return client;
  }

  private async conn(): Promise<Client> {
    this.main ??= await this.open();
    return this.main;
  }

  private async auxConn(): Promise<Client> {
    this.aux ??= await this.open();
    return this.aux;
  }

  /** Drop a connection whose step timed out: closing it makes the server roll its transaction back. */
  private abandon(client: ClientBase): void {
    if (client === this.main) this.main = undefined;
    if (client === this.aux) this.aux = undefined;
    (client as Client).end().catch(() => {});
  }

  /** Closes the connections this runner opened itself (not those from `connect`). */
  async close(): Promise<void> {
    for (const b of this.prismaBound.values()) await b.dispose();
    this.prismaBound.clear();
    for (const c of this.opened.splice(0)) await c.end().catch(() => {});
    this.main = undefined;
    this.aux = undefined;
  }

  // -------------------------------------------------------------------------------------------
  // status
  // -------------------------------------------------------------------------------------------

  /** Applied, pending, changed, missing and out-of-order migrations of both kinds, one timeline. No code runs. */
  async status(): Promise<StatusResult> {
    const client = await this.conn();
    const [{ files, problems }, schema] = await Promise.all([listMigrationFiles(this.migrationsDir), this.schemaState(client)]);
    const exists = await ledgerExists(client, this.table).catch((e: unknown) => {
      throw queryError(e, 'reading the migration ledger');
    });
    const ledger = exists ? await readLedger(client, this.table) : [];
    const status = computeStatus({
      disk: files.map((f) => ({ name: f.name, timestamp: f.timestamp, checksum: f.checksum, transactional: !declaresNoTransaction(f.source) })),
      ledger,
      schemaFiles: schema.files,
      schemaApplied: schema.applied,
      ledgerExists: exists,
    });
    // Unfinished backfills, and finished ones never recorded (their validate failed): both need a person.
    const recorded = new Set(ledger.map((r) => r.name));
    const backfills = (await this.backfillProgress()).filter((b) => !b.finished || !recorded.has(b.migration));
    return { ...status, problems, backfills };
  }

  private async schemaState(client: ClientBase) {
    const dir = this.prismaDir;
    if (!dir) return { files: [], applied: [] };
    const { listSchemaMigrations, readAppliedSchemaMigrations } = await import('../db/schema-engine.js');
    const [files, applied] = await Promise.all([listSchemaMigrations(dir), readAppliedSchemaMigrations(client)]);
    return { files, applied };
  }

  // -------------------------------------------------------------------------------------------
  // up
  // -------------------------------------------------------------------------------------------

  async up(options: UpOptions = {}): Promise<RunResult> {
    const started = performance.now();
    const result: RunResult = { command: 'up', dryRun: Boolean(options.dryRun), ok: true, outcomes: [], appliedByOthers: [], warnings: [], durationMs: 0 };
    const client = await this.conn();
    // Naming problems are reported together with load errors by loadMigrations below.
    const { files } = await listMigrationFiles(this.migrationsDir);
    const ledger = await readLedger(client, this.table);
    const appliedSet = new Set(ledger.map((r) => r.name));
    const schema = await this.schemaState(client);
    const schemaDone = new Set(schema.applied.filter((a) => a.finishedAt && !a.rolledBackAt).map((a) => a.name));
    const pendingSchema = schema.files.filter((f) => !schemaDone.has(f.name)).map((f) => f.name);
    const pendingData = files.filter((f) => !appliedSet.has(f.name));

    const newest = newestName(ledger.map((r) => r.name));
    for (const f of pendingData)
      if (f.name < newest) result.warnings.push(`${f.name} is older than the newest applied migration ${newest} (out of order); applying it`);
    const byName = new Map(files.map((f) => [f.name, f]));
    for (const r of ledger) {
      const f = byName.get(r.name);
      if (f && f.checksum !== r.checksum) result.warnings.push(`${r.name} changed since it was applied (checksum differs)`);
    }

    type Item = { kind: 'data' | 'schema'; name: string };
    const items: Item[] = [
      ...pendingData.map((f) => ({ kind: 'data' as const, name: f.name })),
      ...(options.withSchema ? pendingSchema.map((name) => ({ kind: 'schema' as const, name })) : []),
    ];
    const known = new Set([...files.map((f) => f.name), ...schema.files.map((f) => f.name)]);
    if (options.to !== undefined && !options.withSchema && schema.files.some((f) => f.name === options.to)) {
      throw new UsageError(`--to ${options.to} is a Prisma schema migration`, { hint: 'add --with-schema to apply schema migrations too' });
    }
    const selected = selectUp(items, known, options);
    if (!options.withSchema) {
      for (const item of selected) {
        const older = olderPendingSchema(item.name, pendingSchema);
        if (older.length > 0) {
          throw new OperationError(`data migration ${item.name} needs the Prisma schema migration ${older[0]}, which is not applied`, {
            hint: 'apply schema migrations first (prisma migrate deploy), or run dbops migrate up --with-schema to interleave them',
            details: { migration: item.name, pendingSchema: older },
          });
        }
      }
    }
    // Every pending module is loaded (and every problem reported) before anything runs.
    const pendingNames = new Set(pendingData.map((f) => f.name));
    const loaded = new Map((await loadMigrations(this.migrationsDir, { only: (n) => pendingNames.has(n) })).map((m) => [m.name, m]));
    if (selected.some((i) => i.kind === 'data' && loaded.get(i.name)?.usesPrisma)) this.preloadPrisma();

    return finishRun(result, started, async () => {
      if (options.dryRun) {
        await this.rehearseUp(client, selected, loaded, schema.files, result);
      } else {
        if (selected.length > 0)
          await ensureLedger(client, this.table).catch((e: unknown) => {
            throw queryError(e, `creating the ledger table ${this.table}`);
          });
        for (let i = 0; i < selected.length; i++) {
          const item = selected[i] as Item;
          if (this.opts.signal?.aborted) {
            throw new InterruptedError(
              `interrupted before ${item.name}; ${result.outcomes.filter((o) => o.status === 'applied').length} migration(s) applied`,
              {
                hint: 'run dbops migrate up again to continue',
              },
            );
          }
          if (item.kind === 'schema') {
            const group = [item.name];
            while (selected[i + 1]?.kind === 'schema') group.push((selected[++i] as Item).name);
            await this.applySchemaGroup(client, group, result);
          } else {
            await this.applyData(client, loaded.get(item.name) as LoadedMigration, result);
          }
        }
      }
    });
  }

  /** Settings local to a migration transaction: bound statements and notice a vanished client. */
  private async txSettings(client: ClientBase, bounded: boolean): Promise<Record<string, string>> {
    if (this.serverVersion === undefined) {
      const { rows } = await client.query<{ v: string }>('SELECT current_setting($1) AS v', ['server_version_num']);
      this.serverVersion = Number(rows[0]?.v ?? 0);
    }
    const s: Record<string, string> = {};
    if (bounded) {
      s.statement_timeout = `${this.txTimeoutMs}`;
      s.idle_in_transaction_session_timeout = `${this.txTimeoutMs}`;
    }
    if (this.serverVersion >= 140000) s.client_connection_check_interval = '1000';
    // A holder whose host vanished without closing its socket (power loss, partition) is noticed
    // within about a minute even while its transaction sits idle (transaction: false backfills).
    s.tcp_keepalives_idle = '30';
    s.tcp_keepalives_interval = '10';
    s.tcp_keepalives_count = '3';
    return s;
  }

  private async lock(client: ClientBase, bounded: boolean): Promise<void> {
    try {
      await acquireLockTransaction(client, {
        key: this.key,
        applicationName: this.appName,
        timeoutMs: this.lockTimeoutMs,
        settings: await this.txSettings(client, bounded),
        signal: this.opts.signal,
        onWait: (holder, waitedMs) => this.emit({ type: 'waiting', holder, waitedMs }),
      });
    } catch (error) {
      if (error instanceof DbopsError) throw error;
      throw queryError(error, 'taking the migration lock');
    }
  }

  private async applyData(client: Client, m: LoadedMigration, result: RunResult): Promise<void> {
    await this.lock(client, m.transactional);
    // Re-read under the lock: another runner may have applied it since we looked.
    let done: Set<string>;
    try {
      done = await appliedNames(client, this.table);
    } catch (error) {
      await rollback(client);
      throw queryError(error, 'reading the migration ledger');
    }
    if (done.has(m.name)) {
      await rollback(client);
      result.appliedByOthers.push(m.name);
      this.emit({ type: 'skip', name: m.name, reason: 'applied meanwhile by another runner' });
      return;
    }
    this.emit({ type: 'start', kind: 'data', name: m.name, direction: 'up', dryRun: false });
    const startedAt = new Date();
    const t0 = performance.now();
    const outcome = baseOutcome(m, 'up');
    let stats: StatementStat[] = [];
    try {
      const work = m.transactional ? client : await this.auxConn();
      const ctx = await this.context(work, m, false);
      const r = await this.runSteps(work, m, ctx, 'up', m.transactional);
      stats = r.stats;
      outcome.validate = r.verdict;
      outcome.backfill = r.backfill;
      await insertLedgerRow(client, this.table, {
        name: m.name,
        checksum: m.checksum,
        description: m.description,
        transactional: m.transactional,
        markedOnly: false,
        startedAt,
        durationMs: performance.now() - t0,
        identity: this.identity,
      }).catch((e: unknown) => {
        throw new StepFailure('ledger', e, `recording it in ${this.table} failed: ${messageOf(e)}`);
      });
      await client.query('COMMIT').catch((e: unknown) => {
        throw new StepFailure('ledger', e, `COMMIT failed: ${messageOf(e)}`);
      });
    } catch (error) {
      await rollback(client);
      throw this.failed(error, m.name, 'up', outcome, t0, stats, result);
    }
    Object.assign(outcome, summarise(stats), { status: 'applied', durationMs: performance.now() - t0 });
    result.outcomes.push(outcome);
    this.emit({ type: 'finish', outcome });
  }

  /** up|down then validate (after up), recording statements; StepFailure on false or throw. */
  private async runSteps(
    work: ClientBase,
    m: LoadedMigration,
    ctx: MigrationContext,
    direction: 'up' | 'down',
    bounded: boolean,
  ): Promise<{ verdict: boolean | null; stats: StatementStat[]; backfill?: BackfillResult }> {
    const rec = recordStatements(work);
    const deadline = bounded ? this.txTimeoutMs : undefined;
    try {
      const fn = direction === 'up' ? m.migration.up : m.migration.down;
      if (!fn) throw new StepFailure(direction, undefined, 'the migration has no down()');
      try {
        await withDeadline(Promise.resolve(fn(ctx)), deadline, direction, () => this.abandon(work));
      } catch (error) {
        if (error instanceof StepFailure) throw error;
        throw new StepFailure(direction, error, messageOf(error));
      }
      let verdict: boolean | null = null;
      if (direction === 'up' && m.migration.validate) {
        let v: unknown;
        try {
          v = await withDeadline(Promise.resolve(m.migration.validate(ctx)), deadline, 'validate', () => this.abandon(work));
        } catch (error) {
          if (error instanceof StepFailure) throw error;
          throw new StepFailure('validate', error, messageOf(error));
        }
        verdict = v !== false;
        if (!verdict) throw new StepFailure('validate', undefined, 'validate() returned false');
      }
      const backfill = backfillsOf.get(ctx)?.at(-1);
      return backfill ? { verdict, stats: rec.stats, backfill } : { verdict, stats: rec.stats };
    } finally {
      rec.stop();
    }
  }

  private failed(
    error: unknown,
    name: string,
    direction: 'up' | 'down',
    outcome: MigrationOutcome,
    t0: number,
    stats: StatementStat[],
    result: RunResult,
  ): DbopsError {
    const step: MigrationStep = error instanceof StepFailure ? error.step : direction;
    const cause = error instanceof StepFailure ? error.causeError : error;
    const message = error instanceof StepFailure ? error.message : messageOf(error);
    Object.assign(outcome, summarise(stats), { status: 'failed', durationMs: performance.now() - t0, error: { step, message } });
    if (step === 'validate') outcome.validate = false;
    result.outcomes.push(outcome);
    this.emit({ type: 'finish', outcome });
    if (cause instanceof InterruptedError) {
      return new InterruptedError(`migration ${name} was interrupted during ${step}: ${message}; it is not recorded as applied`, {
        hint: 'run the same dbops migrate command again: the backfill resumes from its last checkpoint',
        cause,
        details: { migration: name, step },
      });
    }
    const rolledBack = outcome.transactional ? 'rolled back' : 'not recorded (transaction: false: committed batches stay)';
    return new OperationError(`migration ${name} failed at ${step}: ${message} (${rolledBack})`, {
      // a configuration problem (ctx.prisma's client not found) keeps its own hint: it says how to fix it
      hint:
        cause instanceof ConfigError && cause.hint
          ? cause.hint
          : step === 'validate'
            ? 'the post-condition did not hold; fix the migration and run again'
            : 'fix the migration and run again; later migrations did not run',
      cause,
      details: { migration: name, step, cause: message, sqlstate: (cause as { code?: string } | undefined)?.code },
    });
  }

  private async applySchemaGroup(client: Client, names: string[], result: RunResult): Promise<void> {
    await this.lock(client, false);
    const t0 = performance.now();
    try {
      const { readAppliedSchemaMigrations, applySchemaMigrations } = await import('../db/schema-engine.js');
      const done = new Set((await readAppliedSchemaMigrations(client)).filter((a) => a.finishedAt && !a.rolledBackAt).map((a) => a.name));
      const todo = names.filter((n) => !done.has(n));
      for (const n of names) if (done.has(n)) result.appliedByOthers.push(n);
      for (const n of todo) this.emit({ type: 'start', kind: 'schema', name: n, direction: 'up', dryRun: false });
      if (todo.length > 0) {
        try {
          await applySchemaMigrations({
            connectionString: this.opts.schemaEngineUrl ?? this.opts.connectionString ?? (await this.requireUrl()),
            migrationsDir: this.prismaDir as string,
            names: todo,
          });
        } catch (error) {
          throw new OperationError(`schema migration failed: ${messageOf(error)}`, {
            hint: 'see prisma migrate status; fix the migration, then prisma migrate resolve',
            details: { migration: /migration (\S+)/.exec(messageOf(error))?.[1] ?? todo[0], step: 'schema' },
          });
        }
      }
      await client.query('COMMIT');
      const per = todo.length > 0 ? (performance.now() - t0) / todo.length : 0;
      for (const n of todo) {
        const outcome: MigrationOutcome = {
          kind: 'schema',
          name: n,
          direction: 'up',
          status: 'applied',
          transactional: true,
          durationMs: per,
          validate: null,
          statements: 0,
          rowsAffected: 0,
        };
        result.outcomes.push(outcome);
        this.emit({ type: 'finish', outcome });
      }
    } catch (error) {
      await rollback(client);
      throw error instanceof DbopsError ? error : queryError(error, 'applying schema migrations');
    }
  }

  private async requireUrl(): Promise<string> {
    throw new ConfigError('applying Prisma schema migrations needs a connection string (schemaEngineUrl)');
  }

  /** One transaction: every selected migration's up + validate (+ ledger row), then ROLLBACK. */
  private async rehearseUp(
    client: Client,
    selected: { kind: 'data' | 'schema'; name: string }[],
    loaded: Map<string, LoadedMigration>,
    schemaFiles: { name: string; sql: string }[],
    result: RunResult,
  ): Promise<void> {
    await this.lock(client, true);
    try {
      await ensureLedgerInTransaction(client, this.table);
      const done = await appliedNames(client, this.table);
      for (const item of selected) {
        if (item.kind === 'schema') {
          const sql = schemaFiles.find((f) => f.name === item.name)?.sql ?? '';
          this.emit({ type: 'start', kind: 'schema', name: item.name, direction: 'up', dryRun: true });
          const t0 = performance.now();
          const outcome: MigrationOutcome = {
            kind: 'schema',
            name: item.name,
            direction: 'up',
            status: 'rehearsed',
            transactional: true,
            durationMs: 0,
            validate: null,
            statements: 0,
            rowsAffected: 0,
          };
          try {
            // Prisma's migration.sql in our transaction: a multi-statement simple query.
            await client.query(`SAVEPOINT dbops_schema`);
            await client.query(sql);
            await client.query(`RELEASE SAVEPOINT dbops_schema`);
          } catch (error) {
            Object.assign(outcome, { status: 'failed', durationMs: performance.now() - t0, error: { step: 'schema', message: messageOf(error) } });
            result.outcomes.push(outcome);
            this.emit({ type: 'finish', outcome });
            throw new OperationError(`rehearsal: schema migration ${item.name} failed: ${messageOf(error)} (rolled back)`, {
              details: { migration: item.name, step: 'schema', cause: messageOf(error) },
            });
          }
          outcome.durationMs = performance.now() - t0;
          result.outcomes.push(outcome);
          this.emit({ type: 'finish', outcome });
          continue;
        }
        const m = loaded.get(item.name) as LoadedMigration;
        if (done.has(m.name)) {
          result.appliedByOthers.push(m.name);
          continue;
        }
        if (!m.transactional) {
          const outcome = { ...baseOutcome(m, 'up'), status: 'skipped' as const, note: 'not rehearsed: transaction: false (its batches commit as they go)' };
          result.outcomes.push(outcome);
          this.emit({ type: 'skip', name: m.name, reason: outcome.note });
          continue;
        }
        this.emit({ type: 'start', kind: 'data', name: m.name, direction: 'up', dryRun: true });
        const t0 = performance.now();
        const outcome = baseOutcome(m, 'up');
        let stats: StatementStat[] = [];
        try {
          const r = await this.runSteps(client, m, await this.context(client, m, true), 'up', true);
          stats = r.stats;
          outcome.validate = r.verdict;
          await insertLedgerRow(client, this.table, {
            name: m.name,
            checksum: m.checksum,
            description: m.description,
            transactional: true,
            markedOnly: false,
            startedAt: new Date(),
            durationMs: performance.now() - t0,
            identity: this.identity,
          });
        } catch (error) {
          const err = this.failed(error, m.name, 'up', outcome, t0, stats, result);
          throw Object.assign(err, { message: `rehearsal: ${err.message}` });
        }
        Object.assign(outcome, summarise(stats), { status: 'rehearsed', durationMs: performance.now() - t0, statementLog: stats });
        result.outcomes.push(outcome);
        this.emit({ type: 'finish', outcome });
      }
    } finally {
      await rollback(client);
    }
  }

  // -------------------------------------------------------------------------------------------
  // down
  // -------------------------------------------------------------------------------------------

  async down(options: DownOptions = {}): Promise<RunResult> {
    const started = performance.now();
    const result: RunResult = { command: 'down', dryRun: Boolean(options.dryRun), ok: true, outcomes: [], appliedByOthers: [], warnings: [], durationMs: 0 };
    const client = await this.conn();
    const ledger = await readLedger(client, this.table);
    const recorded = new Set(ledger.map((r) => r.name));
    // A transaction: false migration whose batches committed but which was never recorded (its
    // validate failed, or it was interrupted) can be reverted too: that is how one gets unstuck.
    const partial = new Set((await this.backfillProgress()).map((b) => b.migration).filter((n) => !recorded.has(n)));
    const targets = selectDown([...recorded, ...partial], options);
    const { files } = await listMigrationFiles(this.migrationsDir);
    const onDisk = new Map<string, MigrationFile>(files.map((f) => [f.name, f]));
    for (const name of targets) {
      if (!onDisk.has(name)) {
        throw new UsageError(`cannot revert ${name}: its file is missing from ${this.migrationsDir}`, {
          hint: 'restore the file, or delete its ledger row by hand',
        });
      }
    }
    const want = new Set(targets);
    const loaded = new Map((await loadMigrations(this.migrationsDir, { only: (n) => want.has(n) })).map((m) => [m.name, m]));
    for (const name of targets) {
      if (!loaded.get(name)?.hasDown) {
        throw new UsageError(`cannot revert ${name}: it has no down()`, { hint: 'add a down() to the migration, or write a new migration that undoes it' });
      }
    }
    if (targets.some((n) => loaded.get(n)?.usesPrisma)) this.preloadPrisma();
    return finishRun(result, started, async () => {
      if (options.dryRun) {
        await this.lock(client, true);
        try {
          for (const name of targets) await this.revertOne(client, loaded.get(name) as LoadedMigration, result, true, partial.has(name));
        } finally {
          await rollback(client);
        }
      } else {
        for (const name of targets) {
          if (this.opts.signal?.aborted)
            throw new InterruptedError(`interrupted before reverting ${name}`, { hint: 'run dbops migrate down again to continue' });
          const m = loaded.get(name) as LoadedMigration;
          await this.lock(client, m.transactional);
          await this.revertOne(client, m, result, false, partial.has(name));
        }
      }
    });
  }

  /** Runs down + deletes the ledger row inside the lock transaction already open on `client`. */
  private async revertOne(client: Client, m: LoadedMigration, result: RunResult, dryRun: boolean, partial = false): Promise<void> {
    const done = await appliedNames(client, this.table);
    if (!done.has(m.name) && !partial) {
      if (!dryRun) await rollback(client);
      result.appliedByOthers.push(m.name);
      this.emit({ type: 'skip', name: m.name, reason: 'already reverted by another runner' });
      return;
    }
    if (dryRun && !m.transactional) {
      const outcome = { ...baseOutcome(m, 'down'), status: 'skipped' as const, note: 'not rehearsed: transaction: false' };
      result.outcomes.push(outcome);
      this.emit({ type: 'skip', name: m.name, reason: outcome.note });
      return;
    }
    this.emit({ type: 'start', kind: 'data', name: m.name, direction: 'down', dryRun });
    const t0 = performance.now();
    const outcome = baseOutcome(m, 'down');
    let stats: StatementStat[] = [];
    try {
      const work = m.transactional ? client : await this.auxConn();
      const r = await this.runSteps(work, m, await this.context(work, m, dryRun), 'down', m.transactional);
      stats = r.stats;
      await deleteLedgerRow(client, this.table, m.name);
      // A later up must start the backfill afresh, not find it "finished".
      if (!m.transactional) await (await loadBackfillModule()).resetBackfill(client, m.name);
      if (!dryRun) await client.query('COMMIT');
    } catch (error) {
      if (!dryRun) await rollback(client);
      throw this.failed(error, m.name, 'down', outcome, t0, stats, result);
    }
    Object.assign(outcome, summarise(stats), {
      status: dryRun ? 'rehearsed' : 'reverted',
      durationMs: performance.now() - t0,
      ...(dryRun ? { statementLog: stats } : {}),
    });
    result.outcomes.push(outcome);
    this.emit({ type: 'finish', outcome });
  }

  // -------------------------------------------------------------------------------------------
  // mark-applied, validate, lock inspection
  // -------------------------------------------------------------------------------------------

  /** Records a migration as applied without running it (baseline an existing database). */
  async markApplied(name: string): Promise<RunResult> {
    const started = performance.now();
    const result: RunResult = { command: 'mark-applied', dryRun: false, ok: true, outcomes: [], appliedByOthers: [], warnings: [], durationMs: 0 };
    const { files } = await listMigrationFiles(this.migrationsDir);
    const file = files.find((f) => f.name === name);
    if (!file)
      throw new UsageError(`mark-applied ${name}: no such data migration in ${this.migrationsDir}`, { hint: 'see dbops migrate status for the names' });
    const client = await this.conn();
    await this.lock(client, true);
    try {
      await ensureLedgerInTransaction(client, this.table);
      if ((await appliedNames(client, this.table)).has(name)) {
        await rollback(client);
        result.warnings.push(`${name} is already applied; nothing changed`);
        result.outcomes.push({
          kind: 'data',
          name,
          direction: 'mark',
          status: 'skipped',
          transactional: true,
          durationMs: 0,
          validate: null,
          statements: 0,
          rowsAffected: 0,
          note: 'already applied',
        });
      } else {
        await insertLedgerRow(client, this.table, {
          name,
          checksum: file.checksum,
          description: undefined,
          transactional: !declaresNoTransaction(file.source),
          markedOnly: true,
          startedAt: new Date(),
          durationMs: 0,
          identity: this.identity,
        });
        await client.query('COMMIT');
        result.outcomes.push({
          kind: 'data',
          name,
          direction: 'mark',
          status: 'marked',
          transactional: !declaresNoTransaction(file.source),
          durationMs: 0,
          validate: null,
          statements: 0,
          rowsAffected: 0,
        });
      }
    } catch (error) {
      await rollback(client);
      throw error instanceof DbopsError ? error : queryError(error, `marking ${name} applied`);
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
    const findings: ValidateFinding[] = [];
    for (const e of status.drift) {
      const message =
        e.state === 'changed'
          ? `${e.name} changed since it was applied (checksum differs)`
          : e.state === 'missing'
            ? `${e.name} is applied but its file is missing`
            : `${e.name} is pending but older than the newest applied migration`;
      findings.push({ name: e.name, kind: e.state as ValidateFinding['kind'], message });
    }
    const appliedData = status.entries.filter((e) => e.kind === 'data' && (e.state === 'applied' || e.state === 'changed')).map((e) => e.name);
    let targets = appliedData;
    if (names.length > 0) {
      targets = [];
      for (const n of names) {
        if (appliedData.includes(n)) targets.push(n);
        else findings.push({ name: n, kind: 'not-applied', message: `${n} is not an applied data migration` });
      }
    }
    const want = new Set(targets);
    const loaded = await loadMigrations(this.migrationsDir, { only: (n) => want.has(n) });
    if (loaded.some((m) => m.usesPrisma && m.hasValidate)) this.preloadPrisma();
    let client = await this.conn();
    const checked: ValidateResult['checked'] = [];
    for (const m of loaded) {
      if (!m.migration.validate) {
        checked.push({ name: m.name, verdict: null, durationMs: 0 });
        continue;
      }
      const t0 = performance.now();
      await client.query('BEGIN READ ONLY');
      try {
        await client.query('SELECT set_config($1, $2, true)', ['statement_timeout', `${this.txTimeoutMs}`]);
        const current = client;
        const v = await withDeadline(Promise.resolve(m.migration.validate(await this.context(current, m, true))), this.txTimeoutMs, 'validate', () =>
          this.abandon(current),
        );
        const verdict = v !== false;
        checked.push({ name: m.name, verdict, durationMs: performance.now() - t0 });
        if (!verdict) findings.push({ name: m.name, kind: 'validate-false', message: `${m.name}: validate() returned false` });
      } catch (error) {
        const msg = error instanceof StepFailure ? error.message : messageOf(error);
        checked.push({ name: m.name, verdict: false, durationMs: performance.now() - t0, error: msg });
        findings.push({ name: m.name, kind: 'validate-error', message: `${m.name}: validate() threw: ${msg}` });
      } finally {
        await rollback(client);
        // A validate that timed out took its connection with it: the next one gets a fresh one.
        if (this.main === undefined) client = await this.conn();
      }
    }
    return { ok: findings.length === 0, checked, findings, status };
  }

  /** The session holding the migration lock right now, or null. */
  async lockHolder(): Promise<LockHolder | null> {
    return findLockHolder(await this.conn(), this.key);
  }

  /** Terminates the holder's server session (its transaction rolls back and the lock is released). */
  async unlock(backendPid: number): Promise<boolean> {
    return terminateHolder(await this.conn(), backendPid, this.key);
  }

  /** Backfill checkpoints (finished or not); [] before any backfill ran. */
  async backfillProgress(): Promise<BackfillProgress[]> {
    return (await loadBackfillModule()).readBackfillProgress(await this.conn());
  }

  // -------------------------------------------------------------------------------------------
  // migration context
  // -------------------------------------------------------------------------------------------

  private preloadPrisma(): void {
    if (this.opts.prismaClient === false || this.prismaLoad) return;
    // Found from DBOPS_PRISMA_CLIENT or the application's schema.prisma; the error names where it looked.
    this.prismaLoad = locatePrismaClient(this.cwd, this.opts.prismaClient || undefined).then(loadPrismaClient);
    // Awaited lazily by the first migration that touches ctx.prisma; avoid an unhandled rejection.
    this.prismaLoad.catch(() => {});
  }

  /** The context handed to up/down/validate; `prisma` is bound to `client` (its transaction). */
  private async context(client: ClientBase, m: LoadedMigration, dryRun: boolean): Promise<MigrationContext> {
    const log: MigrationLogger = {
      info: (msg) => this.opts.log?.info(`${m.name}: ${msg}`),
      warn: (msg) => this.opts.log?.warn(`${m.name}: ${msg}`),
      debug: (msg) => this.opts.log?.debug(`${m.name}: ${msg}`),
    };
    const signal = this.opts.signal ?? new AbortController().signal;
    let prismaValue: unknown;
    let prismaError: unknown = new ConfigError('ctx.prisma is not available: the Prisma client is disabled (prismaClient: false)', {
      hint: 'set --prisma-client / DBOPS_PRISMA_CLIENT, or use ctx.sql',
    });
    if (this.prismaLoad && m.usesPrisma) {
      try {
        const loaded = await this.prismaLoad;
        let bound = this.prismaBound.get(client);
        if (!bound) {
          bound = bindPrismaClient(loaded, client);
          this.prismaBound.set(client, bound);
        }
        prismaValue = bound.prisma;
      } catch (error) {
        prismaError = error;
      }
    }
    const auxConn = () => this.auxConn();
    const emit = (event: RunEvent) => this.emit(event);
    const backfillDefaults = this.opts.backfill;
    const backfills: BackfillResult[] = [];
    const ctx: MigrationContext = {
      name: m.name,
      sql: createSqlTag(client, m.transactional),
      log,
      options: m.migration.options ?? {},
      dryRun,
      signal,
      get prisma(): unknown {
        if (prismaValue === undefined) throw prismaError;
        return prismaValue;
      },
      backfill: async (spec: BackfillSpec) => {
        if (m.transactional) {
          throw new UsageError(`${m.name}: ctx.backfill() needs defineDataMigration({ transaction: false, ... })`, {
            hint: 'a backfill commits batch by batch, which cannot happen inside the migration transaction',
          });
        }
        const mod = await loadBackfillModule();
        const r = await mod.runBackfill(await auxConn(), m.name, spec, {
          ...backfillDefaults,
          signal,
          onProgress: (progress) => emit({ type: 'backfill', progress }),
          log: (msg) => log.debug(msg),
        });
        backfills.push(r);
        return r;
      },
    };
    backfillsOf.set(ctx, backfills);
    return ctx;
  }
}

/** Backfill results per context, for the run report. */
const backfillsOf = new WeakMap<MigrationContext, BackfillResult[]>();

/** The backfill engine, loaded only by migrations that use it (and by status). */
function loadBackfillModule(): Promise<typeof import('./backfill.js')> {
  return import('./backfill.js');
}

function baseOutcome(m: LoadedMigration, direction: 'up' | 'down'): MigrationOutcome {
  return {
    kind: 'data',
    name: m.name,
    direction,
    status: 'failed',
    transactional: m.transactional,
    durationMs: 0,
    validate: null,
    statements: 0,
    rowsAffected: 0,
  };
}

async function rollback(client: ClientBase): Promise<void> {
  await client.query('ROLLBACK').catch(() => {});
}

/** Runs the body of up/down: stamps the run's duration, and on failure attaches the partial result. */
async function finishRun(result: RunResult, started: number, body: () => Promise<void>): Promise<RunResult> {
  try {
    await body();
  } catch (error) {
    result.ok = false;
    result.durationMs = performance.now() - started;
    throw attachResult(error, result);
  }
  result.durationMs = performance.now() - started;
  return result;
}

function attachResult(error: unknown, result: RunResult): unknown {
  if (error && typeof error === 'object') Object.defineProperty(error, RESULT, { value: result, enumerable: false });
  return error;
}

/**
 * Race a step against the transaction timeout. On timeout `abandon` runs first: the step's code may
 * still be running and queueing queries, so the connection is closed (the server rolls the
 * transaction back) rather than sent a ROLLBACK after which those queries would run and commit.
 */
async function withDeadline<T>(promise: Promise<T>, ms: number | undefined, step: MigrationStep, abandon: () => void): Promise<T> {
  if (ms === undefined) return promise;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      abandon();
      reject(new StepFailure(step, undefined, `took longer than the transaction timeout (${Math.round(ms / 1000)} s); its transaction was rolled back`));
    }, ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}

function resolvePath(cwd: string, p: string): string {
  return p.startsWith('/') ? p : `${cwd.replace(/\/$/, '')}/${p}`;
}
