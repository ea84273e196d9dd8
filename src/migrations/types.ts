/**
 * Shared types for data migrations and batched backfills.
 *
 * The backfill types are the contract between the migration runner (issue 3)
 * and `src/migrations/backfill.ts` (issue 4): keep them stable.
 */
import type { ClientBase } from 'pg';
import type { BackfillInvalidation, Invalidate, OutboxEntry } from './invalidation.js';
import type { ReplicaWaitEntry } from './replica-wait.js';

/** What a `transaction: false` migration passes to `ctx.backfill(spec)`. */
export interface BackfillSpec {
  /** Table to walk, optionally schema-qualified (`public.User`). */
  table: string;
  /** Key column used for keyset pagination (default: `id`). */
  key?: string;
  /** SQL predicate selecting rows still to be backfilled (without `WHERE`). */
  where?: string;
  /** Rows per batch (overrides the runner-level default). */
  batchSize?: number;
  /** SQL assignment list applied to each batch (without `SET`). */
  set?: string;
  /** Custom per-batch work; receives the batch's keys and the batch transaction. */
  // biome-ignore lint/suspicious/noConfusingVoidType: the agreed contract lets run() return nothing
  run?: (keys: unknown[], tx: ClientBase) => Promise<number | void>;
  /**
   * Cache keys each batch makes stale, removed after that batch commits (and the replicas replayed
   * it): a template filled with each of the batch's key values (`'user:{id}'`), or a function of
   * the batch's keys. Written to the outbox in the batch's transaction.
   */
  invalidate?: BackfillInvalidation;
}

/** Runner-level options handed to `runBackfill`. */
export interface BackfillRunOptions {
  signal?: AbortSignal;
  onProgress?: (p: BackfillProgressEvent) => void;
  batchSize?: number;
  maxRowsPerSecond?: number;
  pauseMs?: number;
  targetBatchMs?: number;
  lockTimeoutMs?: number;
  statementTimeoutMs?: number;
  log?: (m: string) => void;
  /** dbops' schema, where the checkpoints live (default `dbops`). */
  schema?: string;
}

export interface BackfillProgressEvent {
  migration: string;
  table: string;
  rowsDone: number;
  estimatedTotal: number;
  batches: number;
  rowsPerSecond: number;
  etaMs: number | null;
  lastKey: unknown;
}

export interface BackfillResult {
  batches: number;
  rows: number;
  durationMs: number;
  slowestBatchMs: number;
  resumedFrom: unknown | null;
}

export interface BackfillProgress {
  migration: string;
  table: string;
  rowsDone: number;
  estimatedTotal: number;
  percent: number;
  lastKey: unknown;
  updatedAt: Date;
  finished: boolean;
}

// ---------------------------------------------------------------------------------------------
// Data migrations
// ---------------------------------------------------------------------------------------------

/** Result of one statement run through `ctx.sql`. */
export interface SqlResult<R = Record<string, unknown>> {
  rows: R[];
  rowCount: number;
}

/** A piece of SQL built by `ctx.sql` helpers (identifiers, raw fragments) and not yet run. */
export interface SqlFragment {
  readonly text: string;
  readonly values: readonly unknown[];
}

/**
 * Parameterised SQL on the migration's connection (inside its transaction when it has one):
 * ``await sql`UPDATE "User" SET role = ${'USER'} WHERE role IS NULL` `` → `{ rows, rowCount }`.
 * Interpolated values always become parameters; `sql.ident()` and `sql.raw()` splice SQL text.
 */
export interface SqlTag {
  <R = Record<string, unknown>>(strings: TemplateStringsArray, ...values: unknown[]): Promise<SqlResult<R>>;
  /** Runs SQL text with positional parameters ($1, $2...). */
  query<R = Record<string, unknown>>(text: string, values?: unknown[]): Promise<SqlResult<R>>;
  /** A quoted identifier (`public.User` → `"public"."User"`) to splice into a template. */
  ident(name: string): SqlFragment;
  /** Raw SQL text to splice into a template: never pass user input. */
  raw(text: string): SqlFragment;
}

/** Logger handed to migrations (lines appear in dbops' output, prefixed with the migration). */
export interface MigrationLogger {
  info(message: string): void;
  warn(message: string): void;
  debug(message: string): void;
}

/** What `up`, `down` and `validate` receive. `P` is your generated PrismaClient type. */
export interface MigrationContext<P = unknown, O extends Record<string, unknown> = Record<string, unknown>> {
  /** Name of the migration (its file name without extension). */
  readonly name: string;
  /**
   * A Prisma client whose queries run on the migration's connection, inside its transaction
   * (its own `$transaction` calls become savepoints). Loaded from the configured client module.
   */
  readonly prisma: P;
  /** Parameterised SQL on the migration's connection. */
  readonly sql: SqlTag;
  readonly log: MigrationLogger;
  /** The migration's `options` object. */
  readonly options: O;
  /** True during a rehearsal (`--dry-run`): everything will be rolled back. */
  readonly dryRun: boolean;
  /** Aborted on SIGINT/SIGTERM: long work should stop at a safe point. */
  readonly signal: AbortSignal;
  /**
   * Batched, resumable, throttled backfill (only in `transaction: false` migrations): each batch
   * commits on its own and progress is checkpointed, so an interrupted run resumes.
   */
  backfill(spec: BackfillSpec): Promise<BackfillResult>;
  /**
   * Cache keys this migration (up or down) makes stale, without CACHE_KEY_PREFIX: removed after
   * the commit, once the read replicas replayed it. `ctx.invalidate('user:{id}', rows)` with the
   * rows of an `UPDATE ... RETURNING id` or a Prisma result; `ctx.invalidate(['a', 'b'])` for keys.
   * Recorded in dbops' outbox in the migration's transaction: rolled back with it, never lost once committed.
   */
  invalidate: Invalidate;
}

/** The object a migration module default-exports (made by `defineDataMigration`). */
export interface DataMigration<P = unknown, O extends Record<string, unknown> = Record<string, unknown>> {
  description?: string;
  /**
   * Wrap up + validate + the ledger row in one transaction (default true). `false` for batched
   * backfills and statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY).
   */
  transaction?: boolean;
  options?: O;
  /**
   * Cache key patterns (Redis glob, without CACHE_KEY_PREFIX) this migration makes stale, up or
   * down: SCAN + UNLINK after the commit, once the replicas replayed it (`['user:*']`). Prefer
   * precise keys (`ctx.invalidate`) for a few rows out of many.
   */
  invalidates?: readonly string[];
  up(ctx: MigrationContext<P, O>): Promise<unknown> | unknown;
  down?(ctx: MigrationContext<P, O>): Promise<unknown> | unknown;
  /** Post-condition: false (or a throw) rolls the migration back. Re-run read-only by `migrate validate`. */
  validate?(ctx: MigrationContext<P, O>): Promise<boolean | undefined> | boolean | undefined;
}

export type MigrationKind = 'data' | 'schema';
export type MigrationStep = 'load' | 'up' | 'validate' | 'down' | 'ledger' | 'lock' | 'schema';

/** A data migration loaded from disk. */
export interface LoadedMigration {
  name: string;
  /** 14-digit UTC timestamp prefix. */
  timestamp: string;
  path: string;
  checksum: string;
  description: string | undefined;
  transactional: boolean;
  hasDown: boolean;
  hasValidate: boolean;
  /** Does the source mention `prisma` (the client module is loaded only then)? */
  usesPrisma: boolean;
  migration: DataMigration<unknown, Record<string, unknown>>;
}

/** A row of the ledger table. */
export interface LedgerRow {
  name: string;
  checksum: string;
  description: string | null;
  transactional: boolean;
  markedOnly: boolean;
  startedAt: Date;
  finishedAt: Date;
  durationMs: number;
  appliedBy: string | null;
  appliedHost: string | null;
  ciJob: string | null;
  dbUser: string | null;
  dbopsVersion: string | null;
  /** Every accepted change of the file (`migrate repair`), oldest first: the audit trail. */
  repairs: ChecksumRepair[];
}

/** An applied migration whose file changed, accepted by `migrate repair`: who, when, and the checksum before. */
export interface ChecksumRepair {
  at: Date;
  /** The OS user (or CI's) that accepted it, as `appliedBy`. */
  by: string;
  host: string;
  dbUser: string | null;
  ciJob: string | null;
  dbopsVersion: string;
  previousChecksum: string;
  checksum: string;
}

/** Who is running dbops: recorded in the ledger and shown as the lock holder. */
export interface RunnerIdentity {
  user: string;
  host: string;
  pid: number;
  /** CI job URL or id when the environment says so. */
  ciJob?: string | undefined;
  dbopsVersion: string;
}

/** The process holding the migration lock, as PostgreSQL sees it. */
export interface LockHolder {
  /** Server backend pid (a PgBouncer server connection when pooled). */
  backendPid: number;
  applicationName: string | null;
  /** dbops host and pid parsed from the application name, when it is a dbops. */
  host: string | null;
  pid: number | null;
  clientAddr: string | null;
  since: Date | null;
  state: string | null;
}

export type DriftState = 'applied' | 'pending' | 'changed' | 'missing' | 'out-of-order';

/** One line of `migrate status`: a data or schema migration on the common timeline. */
export interface StatusEntry {
  kind: MigrationKind;
  name: string;
  timestamp: string;
  state: DriftState;
  transactional: boolean;
  description: string | null;
  appliedAt: Date | null;
  appliedBy: string | null;
  durationMs: number | null;
  markedOnly: boolean;
  /** Schema migrations: applied and started but never finished, or rolled back. */
  failed?: boolean;
}

export interface MigrationStatus {
  entries: StatusEntry[];
  counts: Record<DriftState, number>;
  /** Drift a CI gate should fail on (changed, missing, out-of-order). */
  drift: StatusEntry[];
  ledgerExists: boolean;
}

/** Statement statistics of one migration (for rehearsals). */
export interface StatementStat {
  sql: string;
  command: string | null;
  rowCount: number | null;
  durationMs: number;
}

/** The outcome of one migration in a run. */
export interface MigrationOutcome {
  kind: MigrationKind;
  name: string;
  direction: 'up' | 'down' | 'mark';
  status: 'applied' | 'reverted' | 'rehearsed' | 'marked' | 'skipped' | 'failed';
  transactional: boolean;
  durationMs: number;
  /** Validate's verdict (`null`: the migration has no validate). */
  validate: boolean | null;
  statements: number;
  rowsAffected: number;
  statementLog?: StatementStat[];
  backfill?: BackfillResult;
  /** The cache invalidation this migration declared, and what became of it. */
  invalidation?: InvalidationOutcome;
  note?: string;
  error?: { step: MigrationStep; message: string };
}

/** A migration's cache invalidation: what was declared, and after the commit what was done. */
export interface InvalidationOutcome {
  /** Patterns, CACHE_KEY_PREFIX applied. */
  patterns: string[];
  /** Precise keys declared (a backfill: over all its batches). */
  keys: number;
  /** The first few precise keys, prefix applied. */
  sample: string[];
  /** A dry run: how many keys match each pattern now (null: no Redis configured). */
  matching?: { pattern: string; keys: number | null }[];
  /** Outbox rows written (a backfill: one per batch that declared keys). */
  outboxRows: number;
  /** All of them carried out (false: still owed, see dbops cache drain). */
  done: boolean;
  keysRemoved: number;
  /** The longest wait for the replicas (ms); null without replicas. */
  replicaWaitMs: number | null;
  replicas: ReplicaWaitEntry[];
}

/** `status()`: the timeline, plus files that could not be read and backfills that need a person. */
export interface StatusResult extends MigrationStatus {
  problems: { path: string; cause: string }[];
  /**
   * Backfills with a checkpoint that have not finished (percent done, last key), and which command
   * resumes each: `up` for a migration not recorded yet, `down` for one still recorded as applied
   * (its down() was interrupted part-way: its up is done, its revert is not).
   */
  backfills: Array<BackfillProgress & { resumedBy: 'up' | 'down' }>;
  /** Where the ledger is (`dbops.data_migrations`), and where an older dbops' ledger still is until a command that writes moves it. */
  ledger: { location: string; legacy: string | null };
  /** The cache-invalidation outbox: rows still owed, and the latest done (newest first). */
  invalidations: { owed: OutboxEntry[]; done: OutboxEntry[] };
}

export interface ValidateFinding {
  name: string;
  kind: 'changed' | 'missing' | 'out-of-order' | 'not-applied' | 'validate-false' | 'validate-error';
  message: string;
}

/** `validate()`: drift, and each applied migration's validate() re-run read-only. */
export interface ValidateResult {
  ok: boolean;
  checked: { name: string; verdict: boolean | null; durationMs: number; error?: string }[];
  findings: ValidateFinding[];
  status: MigrationStatus;
}

export interface RunResult {
  command: 'up' | 'down' | 'mark-applied';
  dryRun: boolean;
  ok: boolean;
  outcomes: MigrationOutcome[];
  /** Migrations that were pending but already applied by someone else when we got the lock. */
  appliedByOthers: string[];
  warnings: string[];
  durationMs: number;
}

/** An applied data migration whose file changed: the checksum the ledger has and the file's. */
export interface ChecksumChange {
  name: string;
  previousChecksum: string;
  checksum: string;
}

/** What `repair` would accept: the changed migrations, and the named ones that did not change. */
export interface RepairPlan {
  changes: ChecksumChange[];
  unchanged: string[];
}

/** `repair()`: the changes accepted, and those the ledger no longer matched (someone acted meanwhile). */
export interface RepairResult {
  command: 'repair';
  accepted: ChecksumChange[];
  skipped: { name: string; reason: string }[];
  unchanged: string[];
  durationMs: number;
}

/** Progress events of a run, for spinners and plain CI lines. */
export type RunEvent =
  | { type: 'start'; kind: MigrationKind; name: string; direction: 'up' | 'down'; dryRun: boolean }
  | { type: 'finish'; outcome: MigrationOutcome }
  | { type: 'waiting'; holder: LockHolder | null; waitedMs: number }
  | { type: 'skip'; name: string; reason: string }
  | { type: 'backfill'; progress: BackfillProgressEvent }
  | {
      type: 'invalidated';
      name: string;
      keysRemoved: number;
      keys: number;
      patterns: number;
      replicaWaitMs: number | null;
      replicas: string[];
    }
  /** A named phase of the running migration: `validating`, or a batch `waiting for a lock` (detail: on whom). */
  | { type: 'phase'; name: string; phase: string; detail?: string };
