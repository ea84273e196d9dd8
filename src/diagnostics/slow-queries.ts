/**
 * `dbops slow-queries`: what the database spends its time on. Pure functions over the counters
 * read by slow-queries-read.ts: window (since reset, or the delta since a snapshot), ranking,
 * slow marking, origin, and CI gates. No I/O here, so every rule is unit-testable.
 */
import { UsageError } from '../errors.js';
import { normaliseQuery, prismaOrigin, type QueryOrigin, stripTagComments } from './prisma-origin.js';
import type { PrismaModels } from './prisma-schema.js';
import type { PgssRead, ServerIdentity, SlowRule, SortKey, StatementCounters } from './slow-queries-read.js';

export type { PgssRead, ReadMode, ServerIdentity, SlowRule, SortKey, StatementCounters } from './slow-queries-read.js';
export { readPgss, resetPgss, SORT_KEYS } from './slow-queries-read.js';

export const SNAPSHOT_KIND = 'dbops-slow-queries-snapshot';
export const REPORT_KIND = 'dbops-slow-queries-report';

export interface Snapshot {
  kind: typeof SNAPSHOT_KIND;
  formatVersion: 1;
  server: ServerIdentity;
  statements: StatementCounters[];
}

/** What happened to a statement between the snapshot and now. */
export type DeltaStatus = 'changed' | 'new' | 'reset';

export interface StatementStats {
  queryid: string;
  userid: number;
  rolname: string | null;
  calls: number;
  totalMs: number;
  execMs: number;
  planMs: number;
  meanMs: number;
  /** Largest single execution in the window; null when it happened before the snapshot (see maxUpperBoundMs). */
  maxMs: number | null;
  maxUpperBoundMs?: number;
  stddevMs: number;
  rows: number;
  rowsPerCall: number;
  /** Percent of the window's total time (all statements of this database). */
  sharePct: number;
  /** shared_blks_hit / (hit + read); null without block accesses. */
  hitRatio: number | null;
  sharedBlksRead: number;
  tempBlksWritten: number;
  /** Blocks not served from shared buffers: shared read + temp read + temp written. */
  ioBlocks: number;
  blkReadMs: number;
  blkWriteMs: number;
  slow: boolean;
  origin: QueryOrigin;
  /** Whitespace-collapsed full text, as pg_stat_statements normalised it. */
  query: string;
  status?: DeltaStatus;
}

export interface GateFailure {
  kind: 'mean' | 'regression' | 'new-slow';
  queryid: string;
  rolname: string | null;
  meanMs: number;
  calls: number;
  baselineMeanMs?: number;
  growthPct?: number;
  thresholdMs?: number;
  query: string;
  message: string;
}

/** What a gate judges: a statement of this report, or a query group of the ClickHouse report. */
export type GateSubject = Pick<StatementStats, 'queryid' | 'rolname' | 'meanMs' | 'calls' | 'query'>;

export interface GateOptions {
  failOnMeanMs?: number | undefined;
  baseline?: Baseline | undefined;
  failOnRegressionPct?: number | undefined;
  /** Statements with fewer calls in the window (or in the baseline) are not judged. */
  gateMinCalls: number;
  /** A regression only counts when the new mean is at least this (timing noise on tiny statements). */
  regressionMinMs: number;
}

export interface GateResult {
  failed: boolean;
  failures: GateFailure[];
  checked: {
    failOnMeanMs: number | null;
    failOnRegressionPct: number | null;
    gateMinCalls: number;
    regressionMinMs: number;
    baselineStatements: number | null;
  };
}

export interface SlowQueryReport {
  kind: typeof REPORT_KIND;
  formatVersion: 1;
  ok: boolean;
  server: ServerIdentity;
  window: { mode: 'since-reset' | 'since-snapshot'; from: string | null; to: string; seconds: number | null };
  sort: SortKey;
  limit: number;
  slowRule: SlowRule;
  onlySlow: boolean;
  totals: { statements: number; calls: number; totalMs: number; slowStatements: number };
  /** More statements matched than --limit shows. */
  truncated: boolean;
  statements: StatementStats[];
  /** In the snapshot, gone now (evicted or reset): their activity in the window is unknown. */
  disappeared: Array<{ queryid: string; rolname: string | null; query: string }>;
  notes: string[];
  gates: GateResult | null;
}

export interface ReportOptions {
  sort: SortKey;
  /** 0 = all. */
  limit: number;
  slow: SlowRule;
  onlySlow: boolean;
  since?: Snapshot | undefined;
  gates?: GateOptions | undefined;
  /** The application's Prisma models (schema.prisma), when found: sharper labels without comments. */
  prismaModels?: PrismaModels | undefined;
}

/** How to turn Prisma's query-insights comments on: the hint when labels come from the SQL shape. */
export const QUERY_INSIGHTS_HINT =
  "Prisma labels from the SQL shape ('?' = a guess): for exact labels, install @prisma/sqlcommenter-query-insights and create the client with new PrismaClient({ adapter, comments: [prismaQueryInsights()] }) (Prisma 7.1+); statements recorded before keep their first text until pg_stat_statements_reset()";

/** Prisma statements are labelled from their shape only (none carries a query-insights comment). */
export function labelsAreShapeOnly(statements: Array<Pick<StatementStats, 'origin'>>): boolean {
  return (
    statements.some((s) => s.origin.source === 'sql') &&
    !statements.some((s) => s.origin.source === 'tag' && s.origin.model !== undefined)
  );
}

const key = (s: { queryid: string; userid: number; dbid: number }) => `${s.queryid}/${s.userid}/${s.dbid}`;

export function snapshotOf(read: PgssRead): Snapshot {
  return { kind: SNAPSHOT_KIND, formatVersion: 1, server: read.server, statements: read.statements };
}

/** Validate a parsed snapshot file. */
export function parseSnapshot(doc: unknown, file: string): Snapshot {
  const d = doc as Partial<Snapshot> | null;
  if (!d || d.kind !== SNAPSHOT_KIND || d.formatVersion !== 1 || !d.server || !Array.isArray(d.statements)) {
    throw new UsageError(`${file} is not a dbops slow-queries snapshot`, {
      hint: 'create one with dbops slow-queries --save FILE',
    });
  }
  return d as Snapshot;
}

/** Refuse a snapshot from another server or database: its queryids and OIDs mean nothing here. */
export function checkSameSource(snap: Snapshot, now: ServerIdentity, file: string): void {
  const a = snap.server;
  if (a.systemIdentifier && now.systemIdentifier && a.systemIdentifier !== now.systemIdentifier) {
    throw new UsageError(
      `${file} was taken on another server (system identifier ${a.systemIdentifier}, this one is ${now.systemIdentifier})`,
      {
        hint: 'take the snapshot and the report against the same server and database',
      },
    );
  }
  if (a.database !== now.database || a.dbid !== now.dbid) {
    throw new UsageError(
      `${file} was taken on database "${a.database}" (oid ${a.dbid}), this is "${now.database}" (oid ${now.dbid})`,
      {
        hint: 'take the snapshot and the report against the same server and database',
      },
    );
  }
  if (Date.parse(a.takenAt) > Date.parse(now.takenAt)) {
    throw new UsageError(`${file} is from the future (${a.takenAt}, server time now ${now.takenAt})`, {
      hint: 'use a snapshot taken before this run',
    });
  }
}

/** Sum of squared execution times, recovered from mean and population stddev. */
const sumSq = (c: StatementCounters) =>
  c.calls * (c.stddevExecMs ** 2 + (c.calls > 0 ? c.totalExecMs / c.calls : 0) ** 2);

function decreased(cur: StatementCounters, prev: StatementCounters): boolean {
  return (
    cur.calls < prev.calls ||
    cur.totalExecMs < prev.totalExecMs - 1e-6 ||
    cur.rows < prev.rows ||
    cur.sharedBlksHit < prev.sharedBlksHit ||
    cur.sharedBlksRead < prev.sharedBlksRead
  );
}

interface WindowEntry {
  c: StatementCounters;
  maxMs: number | null;
  maxUpperBoundMs?: number;
  stddevMs: number;
  status?: DeltaStatus;
}

/** Per-statement counters over the window: since the snapshot, or everything since the reset. */
export function windowOf(
  now: PgssRead,
  since: Snapshot | undefined,
  notes: string[],
): { entries: WindowEntry[]; disappeared: SlowQueryReport['disappeared'] } {
  if (!since) {
    return {
      entries: now.statements.map((c) => ({ c, maxMs: c.maxExecMs, stddevMs: c.stddevExecMs })),
      disappeared: [],
    };
  }
  const prev = new Map(since.statements.map((s) => [key(s), s]));
  const fullReset = Boolean(
    now.server.statsReset &&
      since.server.statsReset &&
      Date.parse(now.server.statsReset) > Date.parse(since.server.statsReset),
  );
  const restarted = now.server.postmasterStart !== since.server.postmasterStart;
  if (fullReset) {
    notes.push(
      `pg_stat_statements was reset at ${now.server.statsReset}, after the snapshot (${since.server.takenAt}): figures cover only the time since the reset`,
    );
  }
  if (restarted)
    notes.push(
      `the server restarted at ${now.server.postmasterStart}, after the snapshot: statistics may have been lost or reset`,
    );
  if (
    now.server.dealloc !== null &&
    since.server.dealloc !== null &&
    now.server.dealloc > since.server.dealloc &&
    !fullReset
  ) {
    notes.push(
      `${now.server.dealloc - since.server.dealloc} entries were evicted from pg_stat_statements in the window (pg_stat_statements.max too small): some statements are counted only partly`,
    );
  }
  const entries: WindowEntry[] = [];
  let resets = 0;
  for (const c of now.statements) {
    const p = prev.get(key(c));
    prev.delete(key(c));
    const restartedEntry =
      p !== undefined &&
      (fullReset ||
        decreased(c, p) ||
        (c.statsSince !== null && p.statsSince !== null && c.statsSince !== p.statsSince));
    if (!p || restartedEntry) {
      if (c.calls === 0) continue;
      if (restartedEntry) resets++;
      entries.push({ c, maxMs: c.maxExecMs, stddevMs: c.stddevExecMs, status: p ? 'reset' : 'new' });
      continue;
    }
    const calls = c.calls - p.calls;
    if (calls <= 0) continue;
    const d: StatementCounters = {
      ...c,
      calls,
      totalExecMs: c.totalExecMs - p.totalExecMs,
      totalPlanMs: Math.max(0, c.totalPlanMs - p.totalPlanMs),
      rows: c.rows - p.rows,
      sharedBlksHit: c.sharedBlksHit - p.sharedBlksHit,
      sharedBlksRead: c.sharedBlksRead - p.sharedBlksRead,
      sharedBlksWritten: Math.max(0, c.sharedBlksWritten - p.sharedBlksWritten),
      tempBlksRead: Math.max(0, c.tempBlksRead - p.tempBlksRead),
      tempBlksWritten: Math.max(0, c.tempBlksWritten - p.tempBlksWritten),
      blkReadMs: Math.max(0, c.blkReadMs - p.blkReadMs),
      blkWriteMs: Math.max(0, c.blkWriteMs - p.blkWriteMs),
    };
    const mean = d.totalExecMs / calls;
    const variance = Math.max(0, (sumSq(c) - sumSq(p)) / calls - mean ** 2);
    const entry: WindowEntry = { c: d, maxMs: null, stddevMs: Math.sqrt(variance), status: 'changed' };
    // The cumulative max grew: the new maximum happened in the window. Otherwise only a bound is known.
    if (c.maxExecMs > p.maxExecMs) entry.maxMs = c.maxExecMs;
    else entry.maxUpperBoundMs = c.maxExecMs;
    entries.push(entry);
  }
  if (resets > 0 && !fullReset)
    notes.push(
      `${resets} statements were reset or evicted and re-created in the window: they count from their restart only`,
    );
  const disappeared = [...prev.values()].map((p) => ({
    queryid: p.queryid,
    rolname: p.rolname,
    query: normaliseQuery(p.query),
  }));
  if (disappeared.length > 0) {
    notes.push(
      `${disappeared.length} statements of the snapshot are gone (reset or evicted): their activity in the window is unknown`,
    );
  }
  return { entries, disappeared };
}

const NO_ORIGIN: QueryOrigin = { source: 'none', certain: false, tags: {} };

function statsOf(e: WindowEntry, totalMs: number, slow: SlowRule): StatementStats {
  const c = e.c;
  const total = c.totalExecMs + c.totalPlanMs;
  const mean = c.calls > 0 ? total / c.calls : 0;
  const blocks = c.sharedBlksHit + c.sharedBlksRead;
  const s: StatementStats = {
    queryid: c.queryid,
    userid: c.userid,
    rolname: c.rolname,
    calls: c.calls,
    totalMs: total,
    execMs: c.totalExecMs,
    planMs: c.totalPlanMs,
    meanMs: mean,
    maxMs: e.maxMs,
    stddevMs: e.stddevMs,
    rows: c.rows,
    rowsPerCall: c.calls > 0 ? c.rows / c.calls : 0,
    sharePct: totalMs > 0 ? (100 * total) / totalMs : 0,
    hitRatio: blocks > 0 ? c.sharedBlksHit / blocks : null,
    sharedBlksRead: c.sharedBlksRead,
    tempBlksWritten: c.tempBlksWritten,
    ioBlocks: c.sharedBlksRead + c.tempBlksRead + c.tempBlksWritten,
    blkReadMs: c.blkReadMs,
    blkWriteMs: c.blkWriteMs,
    slow: isSlow(c.calls, mean, slow),
    // Read with PostgreSQL's parser only for the statements shown (below): thousands are ranked, tens shown.
    origin: NO_ORIGIN,
    query: normaliseQuery(c.query),
  };
  if (e.maxUpperBoundMs !== undefined) s.maxUpperBoundMs = e.maxUpperBoundMs;
  if (e.status) s.status = e.status;
  return s;
}

/** findFirst/findUnique return at most one row: more rows per call can only be a findMany with `take` (still a guess). */
function refineOrigin(o: QueryOrigin, rowsPerCall: number): QueryOrigin {
  return o.source === 'sql' &&
    !o.certain &&
    (o.operation === 'findFirst' || o.operation === 'findUnique') &&
    rowsPerCall > 1
    ? {
        ...o,
        operation: 'findMany',
        note: 'findMany with take (more than one row per call), or a read inside a nested write',
      }
    : o;
}

export function isSlow(calls: number, meanMs: number, rule: SlowRule): boolean {
  return calls >= rule.minCalls && meanMs >= rule.minMeanMs;
}

const SORT_VALUE: Record<SortKey, (s: StatementStats) => number> = {
  total: (s) => s.totalMs,
  mean: (s) => s.meanMs,
  calls: (s) => s.calls,
  rows: (s) => s.rows,
  io: (s) => s.ioBlocks,
};

/** Descending by the key, then by total time, then queryid/userid: the same order as the SQL. */
export function rank(stats: StatementStats[], sort: SortKey): StatementStats[] {
  const v = SORT_VALUE[sort];
  return [...stats].sort(
    (a, b) =>
      v(b) - v(a) ||
      b.totalMs - a.totalMs ||
      (a.queryid < b.queryid ? -1 : a.queryid > b.queryid ? 1 : 0) ||
      a.userid - b.userid,
  );
}

export function buildReport(now: PgssRead, opts: ReportOptions): SlowQueryReport {
  const notes: string[] = [];
  const { entries, disappeared } = windowOf(now, opts.since, notes);
  const windowTotalMs = entries.reduce((sum, e) => sum + e.c.totalExecMs + e.c.totalPlanMs, 0);
  const totalMs = now.totals && !opts.since ? now.totals.totalMs : windowTotalMs;
  const all = entries.map((e) => statsOf(e, totalMs, opts.slow));
  const totals =
    now.totals && !opts.since
      ? now.totals
      : {
          statements: all.length,
          calls: all.reduce((n, s) => n + s.calls, 0),
          totalMs: windowTotalMs,
          slowStatements: all.filter((s) => s.slow).length,
        };
  const candidates = rank(
    all.filter((s) => !opts.onlySlow || s.slow),
    opts.sort,
  );
  const matching =
    now.totals && !opts.since ? (opts.onlySlow ? now.totals.slowStatements : now.totals.statements) : candidates.length;
  const statements = (opts.limit > 0 ? candidates.slice(0, opts.limit) : candidates).map((s) => ({
    ...s,
    origin: refineOrigin(prismaOrigin(s.query, opts.prismaModels), s.rowsPerCall),
  }));
  if (now.server.track === 'none') notes.push('pg_stat_statements.track is none: nothing is being recorded');
  if (labelsAreShapeOnly(statements)) notes.push(QUERY_INSIGHTS_HINT);
  const gates = opts.gates ? evaluateGates(all, opts.gates, opts.slow) : null;
  if (opts.gates?.baseline?.truncated) {
    notes.push(
      'the baseline report was cut by --limit: statements beyond it count as new (write baselines with --limit 0)',
    );
  }
  const since = opts.since;
  const to = now.server.takenAt;
  const from = since ? since.server.takenAt : now.server.statsReset;
  return {
    kind: REPORT_KIND,
    formatVersion: 1,
    ok: !gates?.failed,
    server: now.server,
    window: {
      mode: since ? 'since-snapshot' : 'since-reset',
      from,
      to,
      seconds: from ? Math.round((Date.parse(to) - Date.parse(from)) / 100) / 10 : null,
    },
    sort: opts.sort,
    limit: opts.limit,
    slowRule: opts.slow,
    onlySlow: opts.onlySlow,
    totals,
    truncated: matching > statements.length,
    statements,
    disappeared,
    notes,
    gates,
  };
}

// ---------------------------------------------------------------- baselines and gates

export interface BaselineEntry {
  queryid: string;
  rolname: string | null;
  /** Normalised text without Prisma tags: matches across servers where queryids differ. */
  text: string;
  calls: number;
  meanMs: number;
}

export interface Baseline {
  source: 'report' | 'snapshot';
  truncated: boolean;
  entries: BaselineEntry[];
}

const textKey = (q: string) => normaliseQuery(stripTagComments(q));

/**
 * A baseline is a previous `--json` report (typically `--since ... --limit 0` around a test suite)
 * or a snapshot (its cumulative means since the last reset).
 */
export function parseBaseline(doc: unknown, file: string): Baseline {
  const d = doc as { kind?: string; statements?: unknown[]; truncated?: boolean } | null;
  if (d?.kind === SNAPSHOT_KIND) {
    const snap = parseSnapshot(doc, file);
    return {
      source: 'snapshot',
      truncated: false,
      entries: snap.statements
        .filter((s) => s.calls > 0)
        .map((s) => ({
          queryid: s.queryid,
          rolname: s.rolname,
          text: textKey(s.query),
          calls: s.calls,
          meanMs: (s.totalExecMs + s.totalPlanMs) / s.calls,
        })),
    };
  }
  if (d?.kind === REPORT_KIND && Array.isArray(d.statements)) {
    const entries: BaselineEntry[] = [];
    for (const raw of d.statements) {
      const s = raw as Partial<StatementStats>;
      if (typeof s.queryid !== 'string' || typeof s.meanMs !== 'number' || typeof s.calls !== 'number') continue;
      entries.push({
        queryid: s.queryid,
        rolname: s.rolname ?? null,
        text: textKey(String(s.query ?? '')),
        calls: s.calls,
        meanMs: s.meanMs,
      });
    }
    return { source: 'report', truncated: Boolean(d.truncated), entries };
  }
  throw new UsageError(`${file} is neither a dbops slow-queries report (--json) nor a snapshot (--save)`, {
    hint: 'write a baseline with: dbops slow-queries --since BEFORE.json --limit 0 --json > baseline.json',
  });
}

function findBaseline(b: Baseline, s: GateSubject): BaselineEntry | undefined {
  // Same queryid and role first; else the same text (queryids differ between servers: they hash OIDs).
  const text = textKey(s.query);
  return (
    b.entries.find((e) => e.queryid === s.queryid && e.rolname === s.rolname) ??
    b.entries.find((e) => e.queryid === s.queryid) ??
    b.entries.find((e) => e.text === text && e.rolname === s.rolname) ??
    b.entries.find((e) => e.text === text)
  );
}

const ms = (n: number) => `${n.toFixed(n < 10 ? 2 : 1)} ms`;

export function evaluateGates(stats: GateSubject[], g: GateOptions, slow: SlowRule): GateResult {
  const failures: GateFailure[] = [];
  const judged = stats.filter((s) => s.calls >= g.gateMinCalls);
  const short = (q: string) => textKey(q).slice(0, 120);
  if (g.failOnMeanMs !== undefined) {
    for (const s of judged) {
      if (s.meanMs > g.failOnMeanMs) {
        failures.push({
          kind: 'mean',
          queryid: s.queryid,
          rolname: s.rolname,
          meanMs: s.meanMs,
          calls: s.calls,
          thresholdMs: g.failOnMeanMs,
          query: s.query,
          message: `mean ${ms(s.meanMs)} over ${s.calls} calls > ${ms(g.failOnMeanMs)}: ${short(s.query)}`,
        });
      }
    }
  }
  if (g.baseline && g.failOnRegressionPct !== undefined) {
    const newThreshold = g.failOnMeanMs ?? slow.minMeanMs;
    for (const s of judged) {
      const b = findBaseline(g.baseline, s);
      if (!b) {
        if (s.meanMs > newThreshold) {
          failures.push({
            kind: 'new-slow',
            queryid: s.queryid,
            rolname: s.rolname,
            meanMs: s.meanMs,
            calls: s.calls,
            thresholdMs: newThreshold,
            query: s.query,
            message: `new statement, mean ${ms(s.meanMs)} over ${s.calls} calls > ${ms(newThreshold)}: ${short(s.query)}`,
          });
        }
        continue;
      }
      if (b.calls < g.gateMinCalls || b.meanMs <= 0) continue;
      const growth = (100 * (s.meanMs - b.meanMs)) / b.meanMs;
      if (growth > g.failOnRegressionPct && s.meanMs >= g.regressionMinMs) {
        failures.push({
          kind: 'regression',
          queryid: s.queryid,
          rolname: s.rolname,
          meanMs: s.meanMs,
          calls: s.calls,
          baselineMeanMs: b.meanMs,
          growthPct: growth,
          query: s.query,
          message: `mean ${ms(b.meanMs)} → ${ms(s.meanMs)} (+${growth.toFixed(0)}% > ${g.failOnRegressionPct}%): ${short(s.query)}`,
        });
      }
    }
  }
  return {
    failed: failures.length > 0,
    failures,
    checked: {
      failOnMeanMs: g.failOnMeanMs ?? null,
      failOnRegressionPct: g.baseline ? (g.failOnRegressionPct ?? null) : null,
      gateMinCalls: g.gateMinCalls,
      regressionMinMs: g.regressionMinMs,
      baselineStatements: g.baseline ? g.baseline.entries.length : null,
    },
  };
}
