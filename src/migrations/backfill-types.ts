/**
 * Types of the backfill engine. The contract with the migration runner lives in `types.ts`
 * (BackfillSpec, BackfillRunOptions, ...); these extend it with what the engine reports beyond it.
 */
import type { ClientBase } from 'pg';
import type { BackfillProgress, BackfillProgressEvent, BackfillResult, BackfillRunOptions } from './types.js';

export type {
  BackfillProgress,
  BackfillProgressEvent,
  BackfillResult,
  BackfillRunOptions,
  BackfillSpec,
} from './types.js';

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
  /** A phase before the batches (`scanning <table>: counting the rows to change`). */
  onPhase?: ((phase: string) => void) | undefined;
  /** A batch gave up on a row lock (lock_timeout) and will retry: who holds locks on the table. */
  onLockWait?: ((holders: TableLockHolder[]) => void) | undefined;
}

export interface BackfillInvalidationHooks {
  record(client: ClientBase, keys: unknown[], batch: number): Promise<number | null>;
  drain(client: ClientBase, outboxId: number, keys: number): Promise<void>;
}

/** A session holding a lock on the backfill's table (the likely blocker of a batch that timed out). */
export interface TableLockHolder {
  pid: number;
  applicationName: string;
  state: string | null;
  /** How long it has been in that state (ms). */
  stateMs: number | null;
  /** How long its transaction has been open (ms). */
  xactMs: number | null;
  mode: string;
}

/** `pid 4242 (psql, idle in transaction for 9.6 s)`: a lock holder as a person reads it. */
export function describeTableLockHolder(h: TableLockHolder): string {
  const secs = (ms: number) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`);
  const app = h.applicationName ? `${h.applicationName}, ` : '';
  const state = h.state ?? 'unknown state';
  const age = h.stateMs === null ? '' : ` for ${secs(h.stateMs)}`;
  const xact = h.xactMs !== null && h.state !== 'idle in transaction' ? `, transaction open ${secs(h.xactMs)}` : '';
  return `pid ${h.pid} (${app}${state}${age}${xact})`;
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
