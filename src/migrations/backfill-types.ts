/**
 * Types of the backfill engine. The contract with the migration runner lives in `types.ts`
 * (BackfillSpec, BackfillRunOptions, ...); these extend it with what the engine reports beyond it.
 */
import type { ClientBase } from 'pg';
import type { BackfillProgress, BackfillProgressEvent, BackfillResult, BackfillRunOptions } from './types.js';

export type { BackfillProgress, BackfillProgressEvent, BackfillResult, BackfillRunOptions, BackfillSpec } from './types.js';

/**
 * The migration lock a backfill runs under (its lock transaction is on another connection): once
 * it is lost, no further batch runs, and each batch checks, before it commits, that it is still held.
 */
export interface BackfillLockGuard {
  /** Aborts when the lock transaction is lost. */
  lost: AbortSignal;
  lostError(): Error | undefined;
  /** Throws when the lock is no longer held, asked on the batch's own connection. */
  check(client: import('pg').ClientBase): Promise<void>;
}

/** What runBackfill takes: the runner's options plus the lock it runs under. */
export interface BackfillEngineOptions extends BackfillRunOptions {
  lock?: BackfillLockGuard | undefined;
  /** The batch's cache keys: recorded in the batch's transaction (outbox row id), carried out after it commits. */
  invalidation?: BackfillInvalidationHooks | undefined;
}

export interface BackfillInvalidationHooks {
  record(client: ClientBase, keys: unknown[], batch: number): Promise<number | null>;
  drain(client: ClientBase, outboxId: number, keys: number): Promise<void>;
}

/** A key value as node-pg returns it: number for int2/int4, string for int8/text/uuid. */
export type BackfillKey = string | number;

/** The progress event runBackfill emits after every committed batch. */
export interface BackfillBatchEvent extends BackfillProgressEvent {
  /** Text form of the last key of the last committed batch (the checkpoint). */
  lastKey: string | null;
  /** Duration of this batch's transaction, BEGIN to COMMIT (ms). */
  batchMs: number;
  /** Keys in the next batch, after adapting toward targetBatchMs. */
  batchSize: number;
}

/** What runBackfill returns: the runner's BackfillResult plus engine facts. */
export interface BackfillRunResult extends BackfillResult {
  /** The checkpoint key this run resumed after (null: started from the beginning). */
  resumedFrom: string | null;
  /** Rows changed over all runs of this backfill. */
  rowsDone: number;
  /** Time spent sleeping for pauseMs and maxRowsPerSecond (ms), measured by the engine. */
  throttledMs: number;
  /** Batches retried after a lock timeout, statement timeout, deadlock or serialization failure. */
  retries: number;
  /** How estimatedTotal was obtained: an exact count, or the planner's estimate on big tables. */
  estimate: 'count' | 'planner';
  estimatedTotal: number;
  /** The backfill had finished in an earlier run: nothing was done. */
  alreadyFinished: boolean;
}

/** A checkpoint row as `migrate status` shows it. */
export interface BackfillCheckpoint extends BackfillProgress {
  lastKey: string | null;
  batches: number;
  startedAt: Date;
}
