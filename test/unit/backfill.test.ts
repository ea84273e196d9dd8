import { describe, expect, it } from 'vitest';
import { nextBatchSize, throttleDelay } from '../../src/migrations/backfill.js';
import type { BackfillBatchEvent, BackfillRunResult } from '../../src/migrations/backfill-types.js';
import {
  backfillSummary,
  formatDuration,
  renderBackfillProgress,
  renderBackfillStatus,
  renderBackfillSummary,
  renderBar,
} from '../../src/output/backfill.js';

describe('nextBatchSize', () => {
  it('grows at most x1.5 and shrinks at most x0.5 per batch, within bounds', () => {
    expect(nextBatchSize(1000, 10, 200, 100, 100_000)).toBe(1500);
    expect(nextBatchSize(1000, 2000, 200, 100, 100_000)).toBe(500);
    expect(nextBatchSize(1000, 250, 200, 100, 100_000)).toBe(800);
    expect(nextBatchSize(90_000, 1, 200, 100, 100_000)).toBe(100_000);
    expect(nextBatchSize(150, 5000, 200, 100, 100_000)).toBe(100);
  });
  it('keeps the size when adaptation is off', () => {
    expect(nextBatchSize(5000, 10, 0, 100, 100_000)).toBe(5000);
  });
});

describe('throttleDelay', () => {
  it('waits until the rows done so far fit under the rate', () => {
    expect(throttleDelay({ rowsThisRun: 1000, elapsedMs: 200, maxRowsPerSecond: 1000 })).toBe(800);
    expect(throttleDelay({ rowsThisRun: 1000, elapsedMs: 1500, maxRowsPerSecond: 1000 })).toBe(0);
  });
  it('pauses at least pauseMs', () => {
    expect(throttleDelay({ rowsThisRun: 10, elapsedMs: 1000, pauseMs: 50 })).toBe(50);
    expect(throttleDelay({ rowsThisRun: 1000, elapsedMs: 900, maxRowsPerSecond: 1000, pauseMs: 50 })).toBe(100);
  });
});

describe('backfill renderers', () => {
  const event: BackfillBatchEvent = {
    migration: '20240301000000_backfill_order_totals',
    table: 'Order',
    rowsDone: 452_000,
    estimatedTotal: 1_000_000,
    batches: 57,
    rowsPerSecond: 52_310.4,
    etaMs: 10_480,
    lastKey: 'cm0abc',
    batchMs: 180,
    batchSize: 9000,
  };
  it('draws a bar on a TTY and a plain line with the checkpoint elsewhere', () => {
    expect(renderBackfillProgress(event, { bar: true })).toBe(
      'Order  [█████████░░░░░░░░░░░]  45.2%  452,000/1,000,000 rows  52,310 rows/s  ETA 10.5 s',
    );
    expect(renderBackfillProgress(event, { bar: false })).toBe(
      'backfill Order  45.2%  452,000/1,000,000 rows  52,310 rows/s  ETA 10.5 s  batch 57 (9,000 keys)  checkpoint cm0abc',
    );
    expect(renderBar(0, 4)).toBe('[░░░░]');
    expect(renderBar(100, 4)).toBe('[████]');
  });
  it('formats durations', () => {
    expect(formatDuration(950)).toBe('950 ms');
    expect(formatDuration(12_340)).toBe('12.3 s');
    expect(formatDuration(245_000)).toBe('4m05s');
    expect(formatDuration(3_720_000)).toBe('1h02m');
  });
  it('summarises a result for people and for JSON', () => {
    const r: BackfillRunResult = {
      batches: 120,
      rows: 1_000_000,
      durationMs: 20_000,
      slowestBatchMs: 240.4,
      resumedFrom: 'cm0abc',
      rowsDone: 1_200_000,
      throttledMs: 0,
      retries: 1,
      estimate: 'count',
      estimatedTotal: 1_200_000,
      alreadyFinished: false,
    };
    expect(renderBackfillSummary('m', 'User', r)).toBe(
      'backfill m on User: 1,000,000 rows in 120 batches, 20.0 s (50,000 rows/s), slowest batch 240 ms, 1 batch retry, resumed after key cm0abc',
    );
    expect(backfillSummary('m', 'User', r)).toMatchObject({
      rows: 1_000_000,
      rowsPerSecond: 50_000,
      slowestBatchMs: 240,
      batches: 120,
      resumedFrom: 'cm0abc',
    });
  });
  it('renders checkpoints for migrate status', () => {
    const text = renderBackfillStatus(
      [
        {
          migration: 'm1',
          table: 'Order',
          rowsDone: 400,
          estimatedTotal: 1000,
          percent: 40,
          lastKey: '4000',
          batches: 4,
          updatedAt: new Date('2024-03-01T00:00:00Z'),
          finished: false,
        },
      ],
      false,
    );
    expect(text).toMatch(/m1 .*Order .*unfinished .*40\.0% .*400\/1,000 .*4 .*4000/);
  });
});
