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
type Checkpoint = BackfillProgress & Partial<Pick<BackfillCheckpoint, 'batches' | 'startedAt'>>;

const keyText = (k: unknown): string => (k === null || k === undefined ? '-' : String(k));

import type { Output, Progress } from './output.js';
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

/** One line of progress: bar (TTY only), percent, rows done of estimated, rate, ETA, checkpoint. */
export function renderBackfillProgress(e: Event, opts: { bar: boolean }): string {
  const pct = percentOf(e.rowsDone, e.estimatedTotal);
  const parts = [
    `backfill ${e.table}`,
    ...(opts.bar ? [renderBar(pct)] : []),
    `${pct.toFixed(1)}%`,
    `${int.format(e.rowsDone)}/${int.format(e.estimatedTotal)} rows`,
    `${int.format(e.rowsPerSecond)} rows/s`,
    `ETA ${e.etaMs === null ? '?' : formatDuration(e.etaMs)}`,
    `batch ${e.batches}${e.batchSize === undefined ? '' : ` (${int.format(e.batchSize)} keys)`}`,
  ];
  if (!opts.bar) parts.push(`checkpoint ${keyText(e.lastKey)}`);
  return parts.join('  ');
}

/** The JSON view of a finished backfill (part of `migrate up --json`). */
export function backfillSummary(migration: string, table: string, r: Result): Record<string, unknown> {
  return {
    migration,
    table,
    batches: r.batches,
    rows: r.rows,
    rowsDone: r.rowsDone ?? r.rows,
    durationMs: Math.round(r.durationMs),
    rowsPerSecond: r.durationMs > 0 ? Math.round((r.rows / r.durationMs) * 1000) : 0,
    slowestBatchMs: Math.round(r.slowestBatchMs),
    throttledMs: Math.round(r.throttledMs ?? 0),
    retries: r.retries ?? 0,
    resumedFrom: r.resumedFrom === null || r.resumedFrom === undefined ? null : String(r.resumedFrom),
    estimate: r.estimate ?? null,
    alreadyFinished: r.alreadyFinished ?? false,
  };
}

/** One sentence for people. */
export function renderBackfillSummary(migration: string, table: string, r: Result): string {
  if (r.alreadyFinished) return `backfill ${migration} on ${table}: already finished earlier (${int.format(r.rowsDone ?? r.rows)} rows)`;
  const rate = r.durationMs > 0 ? (r.rows / r.durationMs) * 1000 : 0;
  const resumed = r.resumedFrom === null || r.resumedFrom === undefined ? '' : `, resumed after key ${keyText(r.resumedFrom)}`;
  const throttled = (r.throttledMs ?? 0) >= 1 ? `, ${formatDuration(r.throttledMs ?? 0)} throttled` : '';
  const retries = r.retries ? `, ${r.retries} batch retr${r.retries === 1 ? 'y' : 'ies'}` : '';
  return `backfill ${migration} on ${table}: ${int.format(r.rows)} rows in ${int.format(r.batches)} batches, ${formatDuration(r.durationMs)} (${int.format(rate)} rows/s), slowest batch ${formatDuration(r.slowestBatchMs)}${throttled}${retries}${resumed}`;
}

/** The backfill rows of `migrate status`: a table of checkpoints with percent and key. */
export function renderBackfillStatus(rows: Checkpoint[], colour: boolean): string {
  if (rows.length === 0) return 'no backfills recorded';
  return renderTable({
    head: ['migration', 'table', 'state', 'done', 'rows', 'batches', 'checkpoint', 'updated'],
    rows: rows.map((p) => [
      p.migration,
      p.table,
      p.finished ? 'finished' : 'unfinished',
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

/**
 * Progress reporting for the CLI: a bar on a TTY (via the spinner), a plain line every few seconds
 * in CI and pipes, nothing with --json (the summary goes into the JSON result instead).
 */
export async function createBackfillReporter(
  out: Output,
  migration: string,
  everyMs = 5000,
): Promise<{ onProgress: (e: BackfillProgressEvent) => void; done: (table: string, r: Result) => void; fail: () => void }> {
  let progress: Progress | undefined;
  const bar = out.terminal.animate;
  return {
    onProgress: (e) => {
      const line = renderBackfillProgress(e, { bar });
      if (!progress) {
        // Lazily: a backfill that finishes in one batch prints only its summary.
        void out.progress(line, everyMs).then((p) => {
          progress = p;
        });
        return;
      }
      progress.update(line);
    },
    done: (table, r) => {
      const text = renderBackfillSummary(migration, table, r);
      if (progress) progress.succeed(text);
      else if (!out.json) out.info(text);
      progress = undefined;
    },
    fail: () => {
      progress?.stop();
      progress = undefined;
    },
  };
}
