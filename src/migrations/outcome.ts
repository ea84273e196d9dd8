/**
 * What a run reports: the builders of each migration's outcome, and the one error a run (up, down,
 * mark-applied) throws, naming the migration, the step and the cause, and carrying what ran before.
 */
import {
  DbopsError,
  ExitCode,
  type ExitCodeValue,
  InterruptedError,
  isDbopsError,
  messageOf,
  specificHint,
} from '../errors.js';
import { InvalidationOwedError } from './invalidation.js';
import { summarise } from './sql.js';
import { guardHint, TransactionLostError } from './tx-guard.js';
import type { MigrationOutcome, MigrationStep, RunResult, StatementStat } from './types.js';

export type Direction = MigrationOutcome['direction'];

/** What an outcome knows of a migration: a loaded module, or a file that mark-applied records. */
export interface MigrationRef {
  name: string;
  checksum: string;
  description: string | undefined;
  transactional: boolean;
}

/** A step of a migration failed; the message says how, `cause` is what it threw (if it threw). */
export class StepFailure extends Error {
  constructor(
    readonly step: MigrationStep,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function newRunResult(command: RunResult['command'], dryRun: boolean): RunResult {
  return { command, dryRun, ok: true, outcomes: [], appliedByOthers: [], warnings: [], durationMs: 0 };
}

/** A data migration's outcome before it ran: failed until completeOutcome says otherwise. */
export function dataOutcome(m: MigrationRef, direction: Direction): MigrationOutcome {
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

export function skippedOutcome(m: MigrationRef, direction: Direction, note: string): MigrationOutcome {
  return { ...dataOutcome(m, direction), status: 'skipped', note };
}

export function schemaOutcome(name: string, status: 'applied' | 'rehearsed', durationMs: number): MigrationOutcome {
  return {
    kind: 'schema',
    name,
    direction: 'up',
    status,
    transactional: true,
    durationMs,
    validate: null,
    statements: 0,
    rowsAffected: 0,
  };
}

/** The steps ran: counts from the statements, the status, the time; a rehearsal keeps its statements. */
export function completeOutcome(
  outcome: MigrationOutcome,
  status: MigrationOutcome['status'],
  stats: StatementStat[],
  startedMs: number,
): MigrationOutcome {
  Object.assign(outcome, summarise(stats), { status, durationMs: performance.now() - startedMs });
  if (status === 'rehearsed') outcome.statementLog = stats;
  return outcome;
}

/**
 * A migration failed: its outcome says where (pushed onto the result), and the error names the
 * migration, the step and the cause. An interruption stays an interruption (exit 130: resumable).
 */
export function failedMigration(
  error: unknown,
  outcome: MigrationOutcome,
  stats: StatementStat[],
  startedMs: number,
  result: RunResult,
  rehearsal: boolean,
): MigrationRunError {
  const step: MigrationStep = error instanceof StepFailure ? error.step : outcome.direction === 'down' ? 'down' : 'up';
  const cause = error instanceof StepFailure ? error.cause : error;
  const message = error instanceof StepFailure ? error.message : messageOf(error);
  Object.assign(outcome, summarise(stats), {
    status: 'failed',
    durationMs: performance.now() - startedMs,
    error: { step, message },
  });
  if (step === 'validate') outcome.validate = false;
  result.outcomes.push(outcome);
  const migration = outcome.name;
  const prefix = rehearsal ? 'rehearsal: ' : '';
  if (cause instanceof InterruptedError) {
    // Interrupted in down: the migration is still recorded as applied, partly reverted; down (not up) resumes it.
    const state =
      outcome.direction === 'down'
        ? rehearsal
          ? 'nothing changed (rolled back)'
          : 'it is still recorded as applied, partly reverted: dbops migrate down resumes the revert'
        : 'it is not recorded as applied';
    return new MigrationRunError(
      `${prefix}migration ${migration} was interrupted during ${step}: ${message}; ${state}`,
      {
        result,
        migration,
        step,
        cause,
        exitCode: ExitCode.Interrupted,
        code: 'INTERRUPTED',
        hint:
          outcome.direction === 'down'
            ? 'run dbops migrate down again (the same --step/--to): the backfill in down() resumes from its last checkpoint'
            : 'run the same dbops migrate command again: the backfill resumes from its last checkpoint',
        details: { migration, step },
      },
    );
  }
  // A backfill batch committed, its cache invalidation is still owed: the outbox keeps it, the rerun drains it first and resumes.
  if (cause instanceof InvalidationOwedError) {
    return new MigrationRunError(
      `${prefix}migration ${migration} stopped during ${step}: ${message}; its committed batches stay, it is not recorded yet`,
      {
        result,
        migration,
        step,
        cause,
        exitCode: ExitCode.Owed,
        code: 'INVALIDATION_OWED',
        hint: `${cause.hint ?? ''}; then run dbops migrate up again: the backfill resumes from its checkpoint`,
        details: { migration, step },
      },
    );
  }
  // A transaction that left dbops' control says itself what was committed.
  const rolledBack =
    cause instanceof TransactionLostError && cause.escaped
      ? 'not recorded'
      : outcome.transactional
        ? 'rolled back'
        : 'not recorded (transaction: false: committed batches stay)';
  return new MigrationRunError(`${prefix}migration ${migration} failed at ${step}: ${message} (${rolledBack})`, {
    result,
    migration,
    step,
    cause,
    // a cause that says how to fix it (ctx.prisma's client not found, transaction control refused,
    // a lost lock) keeps its own hint
    hint:
      specificHint(cause) ??
      guardHint(cause) ??
      (step === 'validate'
        ? 'the post-condition did not hold; fix the migration and run again'
        : 'fix the migration and run again; later migrations did not run'),
    details: { migration, step, cause: message, sqlstate: (cause as { code?: string } | undefined)?.code },
  });
}

export interface RunErrorInit {
  result: RunResult;
  migration?: string | undefined;
  step?: MigrationStep | undefined;
  cause?: unknown;
  hint?: string | undefined;
  details?: Record<string, unknown> | undefined;
  exitCode?: ExitCodeValue;
  code?: string;
}

/**
 * Why a run (up, down, mark-applied) stopped: the migration and step when one failed, the cause,
 * and the partial result (what ran before). Exit code and code are the cause's (a lock timeout
 * stays exit 4, an interruption 130); a failed migration is exit 1.
 */
export class MigrationRunError extends DbopsError {
  override readonly exitCode: ExitCodeValue;
  override readonly code: string;
  declare readonly result: RunResult;
  readonly migration: string | undefined;
  readonly step: MigrationStep | undefined;

  constructor(message: string, init: RunErrorInit) {
    super(message, { cause: init.cause, hint: init.hint, details: init.details, result: init.result });
    this.exitCode = init.exitCode ?? ExitCode.Failed;
    this.code = init.code ?? 'FAILED';
    this.migration = init.migration;
    this.step = init.step;
  }

  /** The error that stopped a run, with the run's result; a bug (not a DbopsError) passes unchanged. */
  static of(error: unknown, result: RunResult): unknown {
    if (error instanceof MigrationRunError || !isDbopsError(error)) return error;
    const details = error.details as { migration?: string; step?: MigrationStep } | undefined;
    return new MigrationRunError(error.message, {
      result,
      migration: details?.migration,
      step: details?.step,
      cause: error,
      hint: error.hint,
      details: error.details,
      exitCode: error.exitCode,
      code: error.code,
    });
  }
}

/** The partial result of a run that failed (what ran before the failure). */
export function runResultOf(error: unknown): RunResult | undefined {
  return error instanceof MigrationRunError ? error.result : undefined;
}

/** Runs the body of a run: stamps its duration, and on failure throws the MigrationRunError. */
export async function finishRun(result: RunResult, startedMs: number, body: () => Promise<void>): Promise<RunResult> {
  try {
    await body();
  } catch (error) {
    result.ok = false;
    result.durationMs = performance.now() - startedMs;
    throw MigrationRunError.of(error, result);
  }
  result.durationMs = performance.now() - startedMs;
  return result;
}
