/**
 * `dbops slow-queries --source clickhouse` as data: the query groups of a query_log window with
 * their figures, ranked, marked slow, and judged by the same CI gates as the PostgreSQL report
 * (evaluateGates). Pure: no I/O, so every rule is unit-testable.
 */

import { serverErrorText } from '../../db/clickhouse.js';
import { UsageError } from '../../errors.js';
import { normaliseQuery, stripTagComments } from '../prisma-origin.js';
import {
  type Baseline,
  type BaselineEntry,
  evaluateGates,
  type GateOptions,
  type GateResult,
  isSlow,
  REPORT_KIND as PG_REPORT_KIND,
  SNAPSHOT_KIND as PG_SNAPSHOT_KIND,
  type SlowRule,
} from '../slow-queries.js';
import {
  PERCENTILES,
  type QueryLogPlan,
  type QueryLogRead,
  type QueryLogServer,
  type RawGroupRow,
} from './query-log-read.js';
import { maskErrorText, normalizedHash, normalizeQuery } from './sql-text.js';

export const CLICKHOUSE_REPORT_KIND = 'dbops-clickhouse-slow-queries-report';
export const CLICKHOUSE_SORT_KEYS = ['total', 'mean', 'p95', 'calls', 'rows', 'io', 'memory'] as const;
export type ClickHouseSortKey = (typeof CLICKHOUSE_SORT_KEYS)[number];

/** One normalized query of the window. */
export interface QueryGroup {
  /** normalized_query_hash (21.1+), else `t` + a hash of dbops' normalized text. */
  queryid: string;
  /** Executions that finished or failed in the window. */
  calls: number;
  failed: number;
  totalMs: number;
  meanMs: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  readRows: number;
  readBytes: number;
  resultRows: number;
  /** Largest memory_usage of one execution (the peak of that query). */
  peakMemoryBytes: number;
  /** Percent of the window's total time over all groups. */
  sharePct: number;
  users: string[];
  /** Tables read (`db.table`); null where the server does not record them (before 21.1). */
  tables: string[] | null;
  /** The newest failure's message, masked. */
  lastError: { at: string; message: string; code: number | null } | null;
  firstSeen: string;
  lastSeen: string;
  slow: boolean;
  /** Literals replaced by `?`: no value of the query is ever shown. */
  query: string;
}

export interface ClickHouseSlowReport {
  kind: typeof CLICKHOUSE_REPORT_KIND;
  formatVersion: 1;
  source: 'clickhouse';
  ok: boolean;
  server: QueryLogServer & { grouping: QueryLogPlan['grouping']; tablesRecorded: boolean };
  window: { from: string; to: string; seconds: number };
  sort: ClickHouseSortKey;
  limit: number;
  slowRule: SlowRule;
  onlySlow: boolean;
  totals: { statements: number; calls: number; failed: number; totalMs: number; slowStatements: number };
  truncated: boolean;
  statements: QueryGroup[];
  notes: string[];
  gates: GateResult | null;
}

export interface ClickHouseReportOptions {
  sort: ClickHouseSortKey;
  /** 0 = all. */
  limit: number;
  slow: SlowRule;
  onlySlow: boolean;
  gates?: GateOptions | undefined;
}

const num = (v: number | string | undefined | null): number =>
  v === undefined || v === null || v === '' ? 0 : Number(v);
const iso = (unix: number) => new Date(unix * 1000).toISOString();

/** quantileExact's definition: the element at ⌊level·n⌋ of the sorted values (the last for level 1). */
export function quantileExact(sorted: readonly number[], level: number): number {
  if (sorted.length === 0) return 0;
  const i = level < 1 ? Math.floor(level * sorted.length) : sorted.length - 1;
  return sorted[Math.min(i, sorted.length - 1)] ?? 0;
}

interface Acc {
  queryid: string;
  query: string;
  calls: number;
  failed: number;
  totalMs: number;
  maxMs: number;
  durations: number[] | null;
  q: number[] | null;
  readRows: number;
  readBytes: number;
  resultRows: number;
  peak: number;
  users: Set<string>;
  tables: Set<string> | null;
  err: { at: number; message: string; query: string; code: number | null } | null;
  first: number;
  last: number;
}

/** The error of a row: [exception, query?, code?] in whatever shape the plan asked for. */
function errorOf(row: RawGroupRow, plan: QueryLogPlan): { message: string; query: string; code: number | null } | null {
  const [exception, query, exceptionCode] = row.err;
  const message = String(exception ?? '');
  let code = plan.exceptionCode ? num(exceptionCode) : null;
  if (!message) return null;
  if (code === null) {
    const m = /^\s*Code: (\d+)/.exec(message);
    code = m ? Number(m[1]) : null;
  }
  return { message, query: String(query ?? row.sample), code: code || null };
}

/** Fold the server's rows into groups: by hash as they come, or by dbops' normalized text. */
export function groupRows(rows: RawGroupRow[], plan: QueryLogPlan): Acc[] {
  const byKey = new Map<string | number, Acc>();
  for (const row of rows) {
    // Old servers: grouped by a hash of the normalized text, built without the string; the
    // text itself is made once per group.
    const byHash = plan.grouping === 'normalized_query_hash';
    const key = byHash ? String(row.key) : normalizedHash(row.sample);
    let a = byKey.get(key);
    if (!a) {
      const text = normalizeQuery(row.sample);
      a = {
        queryid: byHash ? String(key) : `t${key.toString(16).padStart(14, '0')}`,
        query: text,
        calls: 0,
        failed: 0,
        totalMs: 0,
        maxMs: 0,
        durations: plan.grouping === 'text' ? [] : null,
        q: null,
        readRows: 0,
        readBytes: 0,
        resultRows: 0,
        peak: 0,
        users: new Set(),
        tables: plan.tables ? new Set() : null,
        err: null,
        first: Number.POSITIVE_INFINITY,
        last: 0,
      };
      byKey.set(key, a);
    }
    a.calls += num(row.calls);
    a.failed += num(row.failed);
    a.totalMs += num(row.total_ms);
    a.maxMs = Math.max(a.maxMs, num(row.max_ms));
    if (a.durations) for (const d of row.durations ?? []) a.durations.push(num(d));
    if (row.q) a.q = row.q.map(num);
    a.readRows += num(row.read_rows);
    a.readBytes += num(row.read_bytes);
    a.resultRows += num(row.result_rows);
    a.peak = Math.max(a.peak, num(row.peak_memory));
    for (const u of row.users ?? []) a.users.add(u);
    if (a.tables) for (const t of row.tables ?? []) a.tables.add(t);
    const at = num(row.err_at);
    const err = errorOf(row, plan);
    if (err && at > 0 && (!a.err || at >= a.err.at)) a.err = { at, ...err };
    a.first = Math.min(a.first, num(row.first_seen));
    a.last = Math.max(a.last, num(row.last_seen));
  }
  return [...byKey.values()];
}

function toGroup(a: Acc, windowTotalMs: number, slow: SlowRule): QueryGroup {
  let p: number[];
  if (a.durations) {
    const sorted = [...a.durations].sort((x, y) => x - y);
    p = PERCENTILES.map((l) => quantileExact(sorted, l));
  } else p = a.q ?? [0, 0, 0];
  const meanMs = a.calls > 0 ? a.totalMs / a.calls : 0;
  return {
    queryid: a.queryid,
    calls: a.calls,
    failed: a.failed,
    totalMs: a.totalMs,
    meanMs,
    p50Ms: p[0] ?? 0,
    p95Ms: p[1] ?? 0,
    p99Ms: p[2] ?? 0,
    maxMs: a.maxMs,
    readRows: a.readRows,
    readBytes: a.readBytes,
    resultRows: a.resultRows,
    peakMemoryBytes: a.peak,
    sharePct: windowTotalMs > 0 ? (100 * a.totalMs) / windowTotalMs : 0,
    users: [...a.users].sort(),
    tables: a.tables ? [...a.tables].sort() : null,
    lastError: a.err
      ? { at: iso(a.err.at), message: maskErrorText(serverErrorText(a.err.message), a.err.query), code: a.err.code }
      : null,
    firstSeen: iso(Number.isFinite(a.first) ? a.first : 0),
    lastSeen: iso(a.last),
    slow: isSlow(a.calls, meanMs, slow),
    query: a.query,
  };
}

const SORT_VALUE: Record<ClickHouseSortKey, (g: QueryGroup) => number> = {
  total: (g) => g.totalMs,
  mean: (g) => g.meanMs,
  p95: (g) => g.p95Ms,
  calls: (g) => g.calls,
  rows: (g) => g.readRows,
  io: (g) => g.readBytes,
  memory: (g) => g.peakMemoryBytes,
};

/** Descending by the key, then by total time, then by queryid: a stable order. */
export function rankGroups(groups: QueryGroup[], sort: ClickHouseSortKey): QueryGroup[] {
  const v = SORT_VALUE[sort];
  return [...groups].sort(
    (a, b) => v(b) - v(a) || b.totalMs - a.totalMs || (a.queryid < b.queryid ? -1 : a.queryid > b.queryid ? 1 : 0),
  );
}

export function buildClickHouseReport(read: QueryLogRead, opts: ClickHouseReportOptions): ClickHouseSlowReport {
  const notes: string[] = [];
  const accs = groupRows(read.rows, read.plan);
  const windowTotalMs = accs.reduce((s, a) => s + a.totalMs, 0);
  const all = accs.map((a) => toGroup(a, windowTotalMs, opts.slow));
  const candidates = rankGroups(
    all.filter((g) => !opts.onlySlow || g.slow),
    opts.sort,
  );
  const statements = opts.limit > 0 ? candidates.slice(0, opts.limit) : candidates;
  if (read.server.logQueries === false) {
    notes.push(
      `log_queries is 0 for ${read.server.user}'s profile: users with that profile are not logged (others may be)`,
    );
  }
  if (read.plan.grouping === 'text') {
    notes.push(
      `ClickHouse ${read.server.version} has no normalized_query_hash (21.1+): queries were grouped by dbops' normalization of their text, and the tables they read are not recorded`,
    );
  }
  // The gates judge groups by mean over all users: a group has no single role.
  const gates = opts.gates
    ? evaluateGates(
        all.map((g) => ({ ...g, rolname: null })),
        opts.gates,
        opts.slow,
      )
    : null;
  if (opts.gates?.baseline?.truncated)
    notes.push(
      'the baseline report was cut by --limit: queries beyond it count as new (write baselines with --limit 0)',
    );
  return {
    kind: CLICKHOUSE_REPORT_KIND,
    formatVersion: 1,
    source: 'clickhouse',
    ok: !gates?.failed,
    server: { ...read.server, grouping: read.plan.grouping, tablesRecorded: read.plan.tables },
    window: { from: iso(read.window.from), to: iso(read.window.to), seconds: read.window.to - read.window.from },
    sort: opts.sort,
    limit: opts.limit,
    slowRule: opts.slow,
    onlySlow: opts.onlySlow,
    totals: {
      statements: all.length,
      calls: all.reduce((n, g) => n + g.calls, 0),
      failed: all.reduce((n, g) => n + g.failed, 0),
      totalMs: windowTotalMs,
      slowStatements: all.filter((g) => g.slow).length,
    },
    truncated: candidates.length > statements.length,
    statements,
    notes,
    gates,
  };
}

/** A baseline from a previous `slow-queries --source clickhouse --json` report. */
export function parseClickHouseBaseline(doc: unknown, file: string): Baseline {
  const d = doc as { kind?: string; statements?: unknown[]; truncated?: boolean } | null;
  if (d?.kind === PG_REPORT_KIND || d?.kind === PG_SNAPSHOT_KIND) {
    throw new UsageError(
      `${file} is a PostgreSQL slow-queries ${d.kind === PG_REPORT_KIND ? 'report' : 'snapshot'}, not a ClickHouse one`,
      {
        hint: 'write a ClickHouse baseline with: dbops slow-queries --source clickhouse --since 1h --limit 0 --json > baseline.json',
      },
    );
  }
  if (d?.kind !== CLICKHOUSE_REPORT_KIND || !Array.isArray(d.statements)) {
    throw new UsageError(`${file} is not a dbops ClickHouse slow-queries report (--source clickhouse --json)`, {
      hint: 'write one with: dbops slow-queries --source clickhouse --since 1h --limit 0 --json > baseline.json',
    });
  }
  const entries: BaselineEntry[] = [];
  for (const raw of d.statements) {
    const s = raw as Partial<QueryGroup>;
    if (typeof s.queryid !== 'string' || typeof s.meanMs !== 'number' || typeof s.calls !== 'number') continue;
    entries.push({
      queryid: s.queryid,
      rolname: null,
      text: normaliseQuery(stripTagComments(String(s.query ?? ''))),
      calls: s.calls,
      meanMs: s.meanMs,
    });
  }
  return { source: 'report', truncated: Boolean(d.truncated), entries };
}

const UNIT_S: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/**
 * The window of `--since`: a duration back from the server's clock (`90s`, `30m`, `1h`, `2d`) or
 * a point in time (`2026-05-01T03:00:00Z`; without a zone, UTC). Ends at the server's now.
 */
export function windowSince(value: string, serverNow: number): { from: number; to: number } {
  const v = value.trim();
  const d = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(v);
  if (d) {
    const seconds = Math.round(Number(d[1]) * (UNIT_S[d[2] as string] ?? 1));
    if (seconds <= 0) throw new UsageError(`--since ${value}: the window is empty`, { hint: 'e.g. --since 1h' });
    return { from: serverNow - seconds, to: serverNow };
  }
  if (/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$/.test(v)) {
    const zoned = /(Z|[+-]\d{2}:?\d{2})$/.test(v) ? v : `${v.length === 10 ? `${v}T00:00:00` : v.replace(' ', 'T')}Z`;
    const ms = Date.parse(zoned);
    if (Number.isFinite(ms)) {
      const from = Math.floor(ms / 1000);
      if (from >= serverNow)
        throw new UsageError(`--since ${value} is not in the past (server time ${iso(serverNow)})`, {
          hint: 'e.g. --since 1h',
        });
      return { from, to: serverNow };
    }
  }
  throw new UsageError(
    `--since ${value}: with --source clickhouse, --since is a window such as 30m, 1h, 2d or a time such as 2026-05-01T03:00:00Z`,
    {
      hint: 'a snapshot file (--save) is a PostgreSQL feature; ClickHouse keeps a log, so a window is enough',
    },
  );
}
