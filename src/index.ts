/**
 * dbops' public API. The CLI is a thin layer over the same classes:
 * `new MigrationRunner({ connectionString, migrationsDir }).up()` behaves as `dbops migrate up`.
 */

export { openCacheInvalidator } from './cache/invalidate.js';
export {
  CheckFailedError,
  ConfigError,
  DbopsError,
  ExitCode,
  InterruptedError,
  LockError,
  OperationError,
  UnreachableError,
  UsageError,
} from './errors.js';
export { DATA_MIGRATION, defineDataMigration } from './migrations/define.js';
export {
  type BackfillInvalidation,
  type CacheInvalidator,
  type DrainResult,
  type Invalidate,
  type InvalidationOptions,
  InvalidationOwedError,
  type OutboxEntry,
} from './migrations/invalidation.js';
export { type Ledger, type LedgerInsert, memoryLedger } from './migrations/ledger.js';
export { PostgresLedger } from './migrations/ledger-pg.js';
export { checksumSource, MigrationLoadError } from './migrations/loader.js';
export type { ReplicaTarget, ReplicaWait } from './migrations/replica-wait.js';
export {
  type DownOptions,
  MigrationRunError,
  MigrationRunner,
  type MigrationRunnerOptions,
  type RunnerSeams,
  runResultOf,
  type UpOptions,
} from './migrations/runner.js';
export type { Db, Session, Transaction, Tx, TxKind } from './migrations/session.js';
export type * from './migrations/types.js';
