/**
 * One migration in its transaction: the sequence that applying, reverting, rehearsing and marking
 * share (node-pg-migrate's migration.ts is the model):
 *
 *   lock → re-read the ledger → run the steps → write the ledger → commit (or roll back) → outcome
 *
 * A `transaction: false` migration runs its steps on the session's second connection while the
 * lock transaction stays open; its ledger row is written in the lock transaction once validate
 * passed. A rehearsal hands in its own transaction, shared by every migration it rehearses and
 * rolled back by the caller.
 */
import { queryError } from '../db/pg.js';
import { DbopsError, messageOf } from '../errors.js';
import type { ContextOwed, MigrationContexts } from './context.js';
import { type InvalidationRuntime, recordOwed } from './invalidation.js';
import type { Ledger } from './ledger.js';
import {
  completeOutcome,
  type Direction,
  dataOutcome,
  failedMigration,
  type MigrationRef,
  StepFailure,
  skippedOutcome,
} from './outcome.js';
import { releaseSnapshot, type Session, type Transaction, withDeadline } from './session.js';
import { recordStatements } from './sql.js';
import { whoEnded } from './tx-guard.js';
import type {
  BackfillResult,
  InvalidationOutcome,
  LoadedMigration,
  MigrationOutcome,
  MigrationStep,
  RunResult,
  StatementStat,
} from './types.js';

/** What a run hands to each migration it applies: the session, the ledger, contexts, its result. */
export interface RunParts {
  session: Session;
  ledger: Ledger;
  contexts: MigrationContexts;
  result: RunResult;
  /** The outbox and what carries it out (cache, replicas). */
  invalidation: InvalidationRuntime;
}

export type Job =
  | {
      direction: 'up' | 'down';
      migration: LoadedMigration;
      /** A rehearsal's transaction: nothing is committed, the caller rolls it back. */
      rehearsal?: Transaction | undefined;
      /** down: a transaction: false migration whose batches ran but which was never recorded. */
      unrecorded?: boolean | undefined;
    }
  | { direction: 'mark'; migration: MigrationRef; rehearsal?: undefined; unrecorded?: undefined };

/** Applies (reverts, rehearses, marks) one migration; throws a MigrationRunError when it fails. */
export async function applyMigration(run: RunParts, job: Job): Promise<void> {
  const { session, ledger, result } = run;
  const m = job.migration;
  const rehearsal = job.rehearsal !== undefined;
  // Nothing long runs in a mark's transaction; a transaction: false migration's lock transaction
  // stays open while its batches run, so only its own statements are bounded.
  const tx =
    job.rehearsal ?? (await session.begin({ lock: true, bounded: job.direction === 'mark' || m.transactional }));
  const end = () => (rehearsal ? Promise.resolve() : session.rollback(tx));

  // Re-read under the lock: another runner may have got here first.
  const applied = await ledger.applied(tx).catch(async (error: unknown) => {
    await end();
    throw queryError(error, 'reading the migration ledger');
  });
  const recorded = applied.has(m.name);
  if (job.direction === 'down' ? !recorded && !job.unrecorded : recorded) {
    await end();
    if (job.direction === 'mark') {
      result.warnings.push(`${m.name} is already applied; nothing changed`);
      result.outcomes.push(skippedOutcome(m, 'mark', 'already applied'));
    } else {
      result.appliedByOthers.push(m.name);
      session.emit({
        type: 'skip',
        name: m.name,
        reason: job.direction === 'up' ? 'applied meanwhile by another runner' : 'already reverted by another runner',
      });
    }
    return;
  }
  if (rehearsal && !m.transactional) {
    const note =
      job.direction === 'up'
        ? 'not rehearsed: transaction: false (its batches commit as they go)'
        : 'not rehearsed: transaction: false';
    result.outcomes.push(skippedOutcome(m, job.direction, note));
    session.emit({ type: 'skip', name: m.name, reason: note });
    return;
  }

  if (!rehearsal && !m.transactional) await releaseSnapshot(tx);
  const outcome = dataOutcome(m, job.direction);
  const startedAt = new Date();
  const t0 = performance.now();
  let stats: StatementStat[] = [];
  try {
    if (job.direction !== 'mark') {
      session.emit({ type: 'start', kind: 'data', name: m.name, direction: job.direction, dryRun: rehearsal });
      const steps = await runSteps(run, tx, job.migration, job.direction, rehearsal);
      stats = steps.stats;
      outcome.validate = steps.verdict;
      if (steps.backfill) outcome.backfill = steps.backfill;
      await recordInvalidation(run, tx, m.name, job.direction, rehearsal, steps.owes, outcome);
    }
    // The server's word before the ledger row: still inside this transaction, still holding the lock.
    await tx.verify().catch((error: unknown) => {
      throw new StepFailure('ledger', messageOf(error), { cause: error });
    });
    await writeLedger(run, tx, job, startedAt, t0);
    if (!rehearsal) {
      await session.commit(tx).catch((error: unknown) => {
        throw new StepFailure('ledger', `COMMIT failed: ${messageOf(error)}`, { cause: error });
      });
    }
  } catch (thrown) {
    await end();
    // A transaction lost behind dbops' back explains whatever failed after it (a closed connection, a stopped batch).
    const lost = tx.lostError();
    const error =
      lost && !(thrown instanceof StepFailure && thrown.cause === lost)
        ? new StepFailure(stepOf(thrown, job.direction), lost.message, { cause: lost })
        : thrown;
    const failure = failedMigration(error, outcome, stats, t0, result, rehearsal);
    if (job.direction !== 'mark') session.emit({ type: 'finish', outcome });
    throw failure;
  }
  result.outcomes.push(completeOutcome(outcome, statusOf(job.direction, rehearsal), stats, t0));
  if (job.direction !== 'mark') session.emit({ type: 'finish', outcome });
  // The hook point after a migration's commit (a rehearsal never commits).
  if (!rehearsal) await tx.runAfterCommit();
}

function stepOf(error: unknown, direction: Direction): MigrationStep {
  return error instanceof StepFailure ? error.step : direction === 'down' ? 'down' : 'up';
}

function statusOf(direction: Direction, rehearsal: boolean) {
  if (rehearsal) return 'rehearsed';
  return direction === 'up' ? 'applied' : direction === 'down' ? 'reverted' : 'marked';
}

/** up or down, then (after up) validate, each within the deadline; a StepFailure on false or throw. */
async function runSteps(
  run: RunParts,
  tx: Transaction,
  m: LoadedMigration,
  direction: 'up' | 'down',
  rehearsal: boolean,
): Promise<{
  verdict: boolean | null;
  stats: StatementStat[];
  backfill: BackfillResult | undefined;
  owes: ContextOwed | undefined;
}> {
  const { session, contexts } = run;
  const work = m.transactional ? tx.client : await session.aux();
  const ctx = await contexts.create(work, m, rehearsal, tx, direction);
  const deadline = m.transactional ? session.transactionTimeoutMs : undefined;
  const step = async <T>(name: MigrationStep, fn: () => T | Promise<T>): Promise<T> => {
    try {
      return await withDeadline(Promise.resolve(fn()), deadline, name, () => session.abandon(work));
    } catch (error) {
      if (error instanceof StepFailure) throw error;
      // A server or pooler guard that stopped a statement is named (statement_timeout, lock_timeout, ...).
      throw new StepFailure(name, error instanceof DbopsError ? error.message : whoEnded(error), { cause: error });
    }
  };
  const recorder = recordStatements(work);
  try {
    const body = direction === 'up' ? m.migration.up : m.migration.down;
    if (!body) throw new StepFailure(direction, 'the migration has no down()');
    await step(direction, () => body(ctx));
    let verdict: boolean | null = null;
    const validate = m.migration.validate;
    if (direction === 'up' && validate) {
      session.emit({ type: 'phase', name: m.name, phase: 'validating' });
      verdict = (await step('validate', () => validate(ctx))) !== false;
      if (!verdict) throw new StepFailure('validate', 'validate() returned false');
    }
    return { verdict, stats: recorder.stats, backfill: contexts.lastBackfill(ctx), owes: contexts.owedOf(ctx) };
  } finally {
    recorder.stop();
  }
}

/** up and mark record the migration (creating the ledger in this transaction the first time), down removes it and its backfill checkpoints. */
async function writeLedger(run: RunParts, tx: Transaction, job: Job, startedAt: Date, t0: number): Promise<void> {
  const { ledger, session } = run;
  const m = job.migration;
  try {
    if (job.direction === 'down') {
      await ledger.remove(tx, m.name);
      return;
    }
    await ledger.record(tx, {
      name: m.name,
      checksum: m.checksum,
      description: m.description,
      transactional: m.transactional,
      markedOnly: job.direction === 'mark',
      startedAt,
      durationMs: job.direction === 'mark' ? 0 : performance.now() - t0,
      identity: session.identity,
    });
  } catch (error) {
    const what =
      job.direction === 'down' ? `removing it from ${ledger.location}` : `recording it in ${ledger.location}`;
    throw new StepFailure('ledger', `${what} failed: ${messageOf(error)}`, { cause: error });
  }
}

/**
 * What the migration declared it makes stale: into the outbox in its transaction (next to the
 * ledger row), carried out once it has committed (tx.afterCommit). A rehearsal records nothing and
 * reports how many keys each pattern matches now. A backfill's batches were recorded and carried
 * out batch by batch already; their summary joins the outcome.
 */
async function recordInvalidation(
  run: RunParts,
  tx: Transaction,
  name: string,
  direction: 'up' | 'down',
  rehearsal: boolean,
  owes: ContextOwed | undefined,
  outcome: MigrationOutcome,
): Promise<void> {
  if (!owes) return;
  const { owed, batches } = owes;
  if (owed.empty) {
    if (batches) outcome.invalidation = batches;
    return;
  }
  const inv: InvalidationOutcome = {
    patterns: [...owed.patterns],
    keys: owed.keys.size + (batches?.keys ?? 0),
    sample: [...owed.keys].slice(0, 5),
    outboxRows: batches?.outboxRows ?? 0,
    done: false,
    keysRemoved: batches?.keysRemoved ?? 0,
    replicaWaitMs: batches?.replicaWaitMs ?? null,
    replicas: batches?.replicas ?? [],
  };
  outcome.invalidation = inv;
  const runtime = run.invalidation;
  if (rehearsal) {
    inv.matching = [];
    for (const pattern of owed.patterns) inv.matching.push({ pattern, keys: await runtime.countMatching(pattern) });
    return;
  }
  let id: number | null;
  try {
    id = await recordOwed(tx.client, runtime.schema, owed, { migration: name, direction });
  } catch (error) {
    // The server may quote the whole keys document back: the first 300 characters say enough.
    const why = messageOf(error);
    throw new StepFailure(
      'ledger',
      `recording its cache invalidation in the outbox failed: ${why.length > 300 ? `${why.slice(0, 300)}…` : why}`,
      {
        cause: error,
      },
    );
  }
  if (id === null) return;
  inv.outboxRows++;
  const outboxId = id;
  const keys = [...owed.keys];
  tx.afterCommit(async () => {
    await runtime.opts.beforeDrain?.();
    const drained = await runtime.drain(tx.client, [outboxId], run.session.signal, new Map([[outboxId, keys]]));
    // Not among what this drain did: another dbops holds the row (a concurrent cache drain) and carries it out.
    inv.done = drained.entries.some((e) => e.id === outboxId);
    if (!inv.done) return;
    inv.keysRemoved += drained.keysRemoved;
    const wait = drained.replicaWait;
    if (wait && (inv.replicaWaitMs === null || wait.waitedMs > inv.replicaWaitMs)) {
      inv.replicaWaitMs = Math.round(wait.waitedMs);
      inv.replicas = wait.replicas;
    }
    run.session.emit({
      type: 'invalidated',
      name,
      keysRemoved: drained.keysRemoved,
      keys: drained.keys,
      patterns: drained.patterns,
      replicaWaitMs: wait ? Math.round(wait.waitedMs) : null,
      replicas: wait ? wait.replicas.map((r) => r.name) : [],
    });
  });
}
