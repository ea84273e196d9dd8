/**
 * Views of a backfill: the progress bar (TTY) or progress line (CI, pipes), the final summary for
 * people, and the JSON summary. Knows the result types, nothing of how they were made.
 */
import type {
  BackfillBatchEvent,
  BackfillCheckpoint,
  BackfillProgress,
  BackfillProgressEvent,
  BackfillResult,
  BackfillRunResult,
} from '../migrations/backfill-types.js';

// The runner may hand over the contract types (types.ts); the engine's extra facts are optional.
type Event = BackfillProgressEvent & Partial<Pick<BackfillBatchEvent, 'batchMs' | 'batchSize'>>;
type Result = BackfillResult & Partial<Omit<BackfillRunResult, keyof BackfillResult>>;
type Checkpoint = BackfillProgress &
  Partial<Pick<BackfillCheckpoint, 'batches' | 'startedAt'>> & { resumedBy?: 'up' | 'down' };

const keyText = (k: unknown): string => (k === null || k === undefined ? '-' : String(k));

import { renderTable } from './table.js';

// Created on first use: initialising Intl costs ~10 ms, and `migrate status` loads this module.
let intFormat: Intl.NumberFormat | undefined;
const int = {
  format(n: number): string {
    intFormat ??= new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
    return intFormat.format(n);
  },
};

/** 950 ms, 12.3 s, 4m05s, 1h02m. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function percentOf(done: number, total: number): number {
  if (total <= 0) return 0;
  return Math.min(100, Math.floor((done / total) * 1000) / 10);
}

/** `[██████░░░░░░]` of `width` cells. */
export function renderBar(percent: number, width = 24): string {
  const full = Math.max(0, Math.min(width, Math.round((percent / 100) * width)));
  return `[${'█'.repeat(full)}${'░'.repeat(width - full)}]`;
}

/**
 * One line of progress. At a terminal (bar) it sits under the migration's line and fits 100
 * columns: table, bar, percent, rows done of the total, rate, ETA. Elsewhere (CI, pipes) a plain
 * line with the batch and the checkpoint.
 */
export function renderBackfillProgress(event: Event, opts: { bar: boolean }): string {
  const pct = percentOf(event.rowsDone, event.estimatedTotal);
  if (opts.bar) {
    return [
      event.table,
      renderBar(pct, 20),
      `${pct.toFixed(1)}%`,
      `${int.format(event.rowsDone)}/${int.format(event.estimatedTotal)} rows`,
      `${int.format(event.rowsPerSecond)} rows/s`,
      `ETA ${event.etaMs === null ? '?' : formatDuration(event.etaMs)}`,
    ].join('  ');
  }
  const parts = [
    `backfill ${event.table}`,
    `${pct.toFixed(1)}%`,
    `${int.format(event.rowsDone)}/${int.format(event.estimatedTotal)} rows`,
    `${int.format(event.rowsPerSecond)} rows/s`,
    `ETA ${event.etaMs === null ? '?' : formatDuration(event.etaMs)}`,
    `batch ${event.batches}${event.batchSize === undefined ? '' : ` (${int.format(event.batchSize)} keys)`}`,
  ];
  parts.push(`checkpoint ${keyText(event.lastKey)}`);
  return parts.join('  ');
}

/** The JSON view of a finished backfill (part of `migrate up --json`). */
export function backfillSummary(migration: string, table: string, result: Result): Record<string, unknown> {
  return {
    migration,
    table,
    batches: result.batches,
    rows: result.rows,
    rowsDone: result.rowsDone ?? result.rows,
    durationMs: Math.round(result.durationMs),
    rowsPerSecond: result.durationMs > 0 ? Math.round((result.rows / result.durationMs) * 1000) : 0,
    slowestBatchMs: Math.round(result.slowestBatchMs),
    throttledMs: Math.round(result.throttledMs ?? 0),
    retries: result.retries ?? 0,
    resumedFrom: result.resumedFrom === null || result.resumedFrom === undefined ? null : String(result.resumedFrom),
    estimate: result.estimate ?? null,
    alreadyFinished: result.alreadyFinished ?? false,
  };
}

/** One sentence for people. */
export function renderBackfillSummary(migration: string, table: string, result: Result): string {
  if (result.alreadyFinished)
    return `backfill ${migration} on ${table}: already finished earlier (${int.format(result.rowsDone ?? result.rows)} rows)`;
  const rate = result.durationMs > 0 ? (result.rows / result.durationMs) * 1000 : 0;
  const resumed =
    result.resumedFrom === null || result.resumedFrom === undefined
      ? ''
      : `, resumed after key ${keyText(result.resumedFrom)}`;
  const throttled = (result.throttledMs ?? 0) >= 1 ? `, ${formatDuration(result.throttledMs ?? 0)} throttled` : '';
  const retries = result.retries ? `, ${result.retries} batch retr${result.retries === 1 ? 'y' : 'ies'}` : '';
  return `backfill ${migration} on ${table}: ${int.format(result.rows)} rows in ${int.format(result.batches)} batches, ${formatDuration(result.durationMs)} (${int.format(rate)} rows/s), slowest batch ${formatDuration(result.slowestBatchMs)}${throttled}${retries}${resumed}`;
}

/** The backfill rows of `migrate status`: a table of checkpoints with percent and key. */
export function renderBackfillStatus(rows: Checkpoint[], colour: boolean): string {
  if (rows.length === 0) return 'no backfills recorded';
  return renderTable({
    head: ['migration', 'table', 'state', 'done', 'rows', 'batches', 'checkpoint', 'updated'],
    rows: rows.map((p) => [
      p.migration,
      p.table,
      p.finished ? 'finished' : p.resumedBy === 'down' ? 'reverting' : 'unfinished',
      `${p.percent.toFixed(1)}%`,
      `${int.format(p.rowsDone)}/${int.format(p.estimatedTotal)}`,
      p.batches === undefined ? '' : int.format(p.batches),
      keyText(p.lastKey),
      p.updatedAt.toISOString(),
    ]),
    colour,
    alignRight: [3, 4, 5],
  });
}
