/**
 * The one error hierarchy of dbops. Core code and command handlers throw these; only
 * `cli/program.ts` (runCli) turns them into a message, a hint and an exit code (docs/exit-codes.md).
 */

/** Exit codes; keep in step with docs/exit-codes.md. */
export const ExitCode = {
  Ok: 0,
  /** The operation itself failed (a migration threw, a flush lost its connection, ...). */
  Failed: 1,
  /** Bad command line, bad configuration, refused without confirmation. */
  Usage: 2,
  /** A check or gate failed: `migrate validate` findings, a slow-query gate, a critical pool finding, `--max-keys` reached. */
  CheckFailed: 3,
  /** A lock could not be taken in time (another dbops holds it). */
  Locked: 4,
  /** A server could not be reached (refused, timed out, DNS, TLS, authentication). */
  Unreachable: 5,
  /** A data migration committed, but its cache invalidation is still owed (a replica behind, Redis down): `dbops cache drain`. */
  Owed: 6,
  /** Interrupted by SIGINT/SIGTERM after saving progress: run the same command again to resume. */
  Interrupted: 130,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export interface DbopsErrorOptions {
  hint?: string | undefined;
  cause?: unknown;
  /** Structured facts for --json output (never secrets). */
  details?: Record<string, unknown> | undefined;
  /** What the command did before it failed; --json prints it with the error. */
  result?: object | undefined;
}

/**
 * The hint of an error thrown without one, by class: every error a user can cause carries a hint.
 * A specific hint (what to change, where) is always better; these are the floor, and the bad-input
 * suite counts how often an error falls back to one of them.
 */
export const DEFAULT_HINTS = {
  DbopsError: 'run the command again with --verbose for the full cause',
  UsageError: 'see dbops <command> --help',
  ConfigError: 'dbops config shows every setting and where it came from (docs/configuration.md)',
  OperationError: 'run the command again with --verbose for the full cause',
  CheckFailedError: 'the output above names each finding',
  LockError: 'another dbops holds the lock: wait for it to finish, or see dbops migrate unlock',
  UnreachableError:
    'check that the server is running and reachable at that address; dbops doctor checks every configured server',
  InterruptedError: 'run the same command again to resume',
} as const;

/** Base class: a one-line message, a hint, an exit code. */
export class DbopsError extends Error {
  readonly exitCode: ExitCodeValue = ExitCode.Failed;
  readonly code: string = 'DBOPS_FAILED';
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;
  readonly result: object | undefined;

  constructor(message: string, options: DbopsErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.hint = options.hint ?? defaultHintOf(new.target);
    this.details = options.details;
    this.result = options.result;
  }
}

/** The hint an error was given where it was thrown (what to change, where), not its class's floor. */
export function specificHint(error: unknown): string | undefined {
  if (!(error instanceof DbopsError) || !error.hint) return undefined;
  return error.hint === defaultHintOf(error.constructor) ? undefined : error.hint;
}

/** The default hint of the nearest class in the chain that has one. */
function defaultHintOf(ctor: unknown): string | undefined {
  for (let c = ctor as { name?: string } | null; c?.name; c = Object.getPrototypeOf(c)) {
    const hint = (DEFAULT_HINTS as Record<string, string>)[c.name];
    if (hint) return hint;
  }
  return undefined;
}

/** Command-line misuse, conflicting options, a refused dangerous action. */
export class UsageError extends DbopsError {
  override readonly exitCode = ExitCode.Usage;
  override readonly code = 'USAGE';
}

/** An invalid or missing configuration value; the message names the setting and its source. */
export class ConfigError extends DbopsError {
  override readonly exitCode = ExitCode.Usage;
  override readonly code = 'CONFIG';
}

/** The operation failed. */
export class OperationError extends DbopsError {
  override readonly code = 'FAILED';
}

/** A check, a validation or a CI gate found something. */
export class CheckFailedError extends DbopsError {
  override readonly exitCode = ExitCode.CheckFailed;
  override readonly code = 'CHECK_FAILED';
}

/** A lock is held by someone else. */
export class LockError extends DbopsError {
  override readonly exitCode = ExitCode.Locked;
  override readonly code = 'LOCKED';
}

/** A server is unreachable, refused us, or did not answer in time. */
export class UnreachableError extends DbopsError {
  override readonly exitCode = ExitCode.Unreachable;
  override readonly code = 'UNREACHABLE';
}

/** Stopped by a signal after saving progress; running the command again resumes. */
export class InterruptedError extends DbopsError {
  override readonly exitCode = ExitCode.Interrupted;
  override readonly code = 'INTERRUPTED';
}

export function isDbopsError(error: unknown): error is DbopsError {
  return error instanceof DbopsError;
}

/** The message of anything thrown, for wrapping into a DbopsError cause line. */
export function messageOf(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const msg = error.message || String(code ?? error.name);
    // AggregateError (e.g. ECONNREFUSED on ::1 and 127.0.0.1) has an empty message.
    if (!error.message && error instanceof AggregateError && error.errors.length > 0) {
      return messageOf(error.errors[0]);
    }
    return msg;
  }
  return String(error);
}
