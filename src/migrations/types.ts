/**
 * Shared types for data migrations and batched backfills.
 *
 * The backfill types are the contract between the migration runner (issue 3)
 * and `src/migrations/backfill.ts` (issue 4): keep them stable.
 */
import type { ClientBase } from 'pg';

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
  run?: (keys: unknown[], tx: ClientBase) => Promise<number | void>;
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
