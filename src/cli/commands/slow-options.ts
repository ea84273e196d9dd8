/** The options of `dbops slow-queries`, shared by its PostgreSQL and ClickHouse sources. */
import type { Baseline, GateOptions } from '../../diagnostics/slow-queries.js';

export interface SlowOptions {
  source: 'postgres' | 'clickhouse';
  flushLogs?: boolean;
  /** p95 and memory reach only the ClickHouse report; the PostgreSQL one refuses them first. */
  sort: 'total' | 'mean' | 'calls' | 'rows' | 'io';
  limit: number;
  minMeanMs: number;
  minCalls: number;
  onlySlow?: boolean;
  full?: boolean;
  save?: string;
  since?: string;
  failOnMeanMs?: number;
  baseline?: string;
  failOnRegression?: number;
  gateMinCalls: number;
  regressionMinMs: number;
  statementTimeout?: number;
  reset?: boolean;
  allDatabases?: boolean;
  yes?: boolean;
  json?: boolean;
}

/** The gates as the options ask for them (the same for PostgreSQL and ClickHouse). */
export function gateOptionsOf(opts: SlowOptions, baseline: Baseline | undefined): GateOptions {
  return {
    failOnMeanMs: opts.failOnMeanMs,
    baseline,
    failOnRegressionPct: opts.failOnRegression,
    gateMinCalls: opts.gateMinCalls,
    regressionMinMs: opts.regressionMinMs,
  };
}
