/**
 * dbops' public API. The CLI is a thin layer over the same classes:
 * `new MigrationRunner({ connectionString, migrationsDir }).up()` behaves as `dbops migrate up`.
 */

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
export { checksumSource, MigrationLoadError } from './migrations/loader.js';
export {
  type DownOptions,
  MigrationRunner,
  type MigrationRunnerOptions,
  runResultOf,
  type StatusResult,
  type UpOptions,
  type ValidateFinding,
  type ValidateResult,
} from './migrations/runner.js';
export type * from './migrations/types.js';
