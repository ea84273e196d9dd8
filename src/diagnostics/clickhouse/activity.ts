/**
 * ClickHouse in `dbops pool`: connections by protocol (system.metrics) against max_connections,
 * running queries (system.processes, longest first) against max_concurrent_queries, and findings
 * with the same severities as PostgreSQL's. The limits are server settings, readable only where
 * the server has system.server_settings (newer servers; 22.x and older do not): elsewhere they are
 * unknown and said so. Never kills anything: the KILL statements are for a person to run.
 */
import type { ClickHouseConnection } from '../../db/clickhouse.js';
import { newQueryId, quoteString } from '../../db/clickhouse.js';
import type { Finding, Severity } from '../findings.js';
import { normalizeQuery } from './sql-text.js';

export const CLICKHOUSE_POOL_KIND = 'dbops-clickhouse-pool';

/** Client connections by protocol (system.metrics); null where the server has no such metric. */
export interface ClickHouseConnections {
  tcp: number | null;
  http: number | null;
  interserver: number | null;
  mysql: number | null;
  postgresql: number | null;
  /** TCP + HTTP + MySQL + PostgreSQL: the client connections that max_connections bounds (dbops' own HTTP one included). */
  clients: number;
}

export interface ClickHouseLimits {
  maxConnections: number | null;
  maxConcurrentQueries: number | null;
  /** Where they were read; null when the server does not expose them. */
  source: 'system.server_settings' | null;
}

export interface RunningQuery {
  queryId: string;
  user: string;
  elapsedMs: number;
  memoryBytes: number;
  peakMemoryBytes: number;
  readRows: number;
  readBytes: number;
  initial: boolean;
  cancelled: boolean;
  /** Normalized: literals replaced by `?`. */
  query: string;
  /** For a person to run; dbops never does. */
  kill: string;
}

export interface Headroom {
  inUse: number;
  max: number;
  free: number;
}

export interface ClickHousePoolReport {
  kind: typeof CLICKHOUSE_POOL_KIND;
  ok: boolean;
  worst: Severity | null;
  takenAt: string;
  server: { endpoint: string; version: string; user: string; tls: boolean };
  connections: ClickHouseConnections;
  limits: ClickHouseLimits;
  headroom: { connections: Headroom | null; queries: Headroom | null };
  running: RunningQuery[];
  findings: Finding[];
  thresholds: { longMs: number; headroomWarnRatio: number };
}

export interface ClickHouseThresholds {
  longMs: number;
  headroomWarnRatio: number;
}

const METRICS: Record<string, keyof Omit<ClickHouseConnections, 'clients'>> = {
  TCPConnection: 'tcp',
  HTTPConnection: 'http',
  InterserverConnection: 'interserver',
  MySQLConnection: 'mysql',
  PostgreSQLConnection: 'postgresql',
};

const n = (v: number | string | null | undefined) => (v === null || v === undefined || v === '' ? 0 : Number(v));

export function connectionsFrom(rows: Array<{ metric: string; value: number | string }>): ClickHouseConnections {
  const c: ClickHouseConnections = {
    tcp: null,
    http: null,
    interserver: null,
    mysql: null,
    postgresql: null,
    clients: 0,
  };
  for (const r of rows) {
    const k = METRICS[r.metric];
    if (k) c[k] = n(r.value);
  }
  c.clients = (c.tcp ?? 0) + (c.http ?? 0) + (c.mysql ?? 0) + (c.postgresql ?? 0);
  return c;
}

/** Limits from system.server_settings rows; a value of 0 means "no limit" there. */
export function limitsFrom(rows: Array<{ name: string; value: string }> | null): ClickHouseLimits {
  if (rows === null) return { maxConnections: null, maxConcurrentQueries: null, source: null };
  const get = (name: string) => {
    const v = rows.find((r) => r.name === name)?.value;
    return v === undefined || n(v) <= 0 ? null : n(v);
  };
  return {
    maxConnections: get('max_connections'),
    maxConcurrentQueries: get('max_concurrent_queries'),
    source: 'system.server_settings',
  };
}

function headroom(inUse: number, max: number | null): Headroom | null {
  return max === null ? null : { inUse, max, free: max - inUse };
}

const sec = (ms: number) => (ms >= 10_000 ? `${Math.round(ms / 1000)} s` : `${(ms / 1000).toFixed(1)} s`);
const ORDER: Record<Severity, number> = { critical: 0, warning: 1, info: 2 };

export function clickhouseFindings(
  input: {
    connections: Headroom | null;
    queries: Headroom | null;
    running: RunningQuery[];
    limitsKnown: boolean;
    version: string;
  },
  t: ClickHouseThresholds,
): Finding[] {
  const out: Finding[] = [];
  const budget = (h: Headroom | null, what: string, code: string, setting: string, fix: string) => {
    if (!h) return;
    if (h.free <= 0) {
      out.push({
        severity: 'critical',
        code: `${code}-exhausted`,
        message: `ClickHouse ${what}: ${h.inUse} of ${setting} ${h.max}, none free`,
        suggestion: fix,
      });
    } else if (h.free < Math.max(1, h.max * t.headroomWarnRatio)) {
      out.push({
        severity: 'warning',
        code: `${code}-low`,
        message: `ClickHouse ${what}: only ${h.free} of ${setting} ${h.max} free`,
        suggestion: fix,
      });
    }
  };
  budget(
    input.connections,
    'client connections',
    'clickhouse-connections',
    'max_connections',
    'find who holds them (HTTP keep-alive pools, idle native clients); lower client pool sizes or raise max_connections',
  );
  budget(
    input.queries,
    'running queries',
    'clickhouse-queries',
    'max_concurrent_queries',
    'new queries fail with "Too many simultaneous queries": find the long ones below, or raise max_concurrent_queries',
  );
  const long = input.running.filter((q) => q.elapsedMs >= t.longMs);
  if (long.length > 0) {
    out.push({
      severity: 'warning',
      code: 'clickhouse-long-running',
      message: `${long.length} ClickHouse quer${long.length === 1 ? 'y' : 'ies'} running for over ${sec(t.longMs)} (longest ${sec(Math.max(...long.map((q) => q.elapsedMs)))}, by ${[...new Set(long.map((q) => q.user))].join(', ')})`,
      suggestion: "set max_execution_time in the users' profile; stop one with the KILL QUERY statement shown",
      statements: long.map((q) => q.kill),
    });
  }
  if (!input.limitsKnown) {
    out.push({
      severity: 'info',
      code: 'clickhouse-limits-unknown',
      message: `ClickHouse ${input.version} does not expose max_connections and max_concurrent_queries (no system.server_settings): headroom unknown`,
      suggestion: 'read them in the server config (config.xml); newer servers show them in system.server_settings',
    });
  }
  return out.sort((a, b) => ORDER[a.severity] - ORDER[b.severity]);
}

interface ProcessRow {
  query_id: string;
  user: string;
  elapsed: number | string;
  memory_usage: number | string;
  peak_memory_usage: number | string;
  read_rows: number | string;
  read_bytes: number | string;
  is_initial_query: number | string;
  is_cancelled: number | string;
  query: string;
}

export interface ClickHousePoolOptions {
  timeoutMs: number;
  thresholds: ClickHouseThresholds;
}

/** One snapshot. The reads run one after another on one connection, each bounded. */
export async function collectClickHousePool(
  conn: ClickHouseConnection,
  opts: ClickHousePoolOptions,
): Promise<ClickHousePoolReport> {
  const q = <T>(sql: string, doing: string, queryId?: string) =>
    conn.query<T>(sql, { timeoutMs: opts.timeoutMs, doing, ...(queryId ? { queryId } : {}) });
  const metricRows = await q<{ metric: string; value: number | string }>(
    `SELECT metric, value FROM system.metrics WHERE metric IN (${Object.keys(METRICS)
      .map((m) => `'${m}'`)
      .join(', ')})`,
    'reading system.metrics',
  );
  const [probe] = await q<{ n: number | string; now: number | string }>(
    "SELECT (SELECT count() FROM system.tables WHERE database = 'system' AND name = 'server_settings') AS n, toUInt32(toUnixTimestamp(now())) AS now",
    'reading system.tables',
  );
  const limitRows =
    n(probe?.n) > 0
      ? await q<{ name: string; value: string }>(
          "SELECT name, value FROM system.server_settings WHERE name IN ('max_connections', 'max_concurrent_queries')",
          'reading system.server_settings',
        )
      : null;
  // Our own query is left out by its query_id (generated here: hex and dashes only).
  const own = newQueryId('pool');
  const processRows = await q<ProcessRow>(
    `SELECT query_id, user, elapsed, memory_usage, peak_memory_usage, read_rows, read_bytes, is_initial_query, is_cancelled, query
       FROM system.processes WHERE query_id != '${own}' ORDER BY elapsed DESC`,
    'reading system.processes',
    own,
  );
  const connections = connectionsFrom(metricRows);
  const limits = limitsFrom(limitRows);
  const running: RunningQuery[] = processRows.map((r) => ({
    queryId: r.query_id,
    user: r.user,
    elapsedMs: Math.round(n(r.elapsed) * 1000),
    memoryBytes: n(r.memory_usage),
    peakMemoryBytes: n(r.peak_memory_usage),
    readRows: n(r.read_rows),
    readBytes: n(r.read_bytes),
    initial: n(r.is_initial_query) === 1,
    cancelled: n(r.is_cancelled) === 1,
    query: normalizeQuery(r.query),
    kill: `KILL QUERY WHERE query_id = ${quoteString(r.query_id)};`,
  }));
  const h = {
    connections: headroom(connections.clients, limits.maxConnections),
    queries: headroom(running.length, limits.maxConcurrentQueries),
  };
  const findings = clickhouseFindings(
    {
      connections: h.connections,
      queries: h.queries,
      running,
      limitsKnown: limits.source !== null,
      version: conn.version,
    },
    opts.thresholds,
  );
  const worst = findings.reduce<Severity | null>(
    (w, f) => (w === null || ORDER[f.severity] < ORDER[w] ? f.severity : w),
    null,
  );
  return {
    kind: CLICKHOUSE_POOL_KIND,
    ok: worst !== 'critical',
    worst,
    takenAt: new Date((n(probe?.now) || conn.serverNow) * 1000).toISOString(),
    server: { endpoint: conn.endpoint, version: conn.version, user: conn.user, tls: conn.tls },
    connections,
    limits,
    headroom: h,
    running,
    findings,
    thresholds: opts.thresholds,
  };
}
