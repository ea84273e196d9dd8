/**
 * What PostgreSQL says about its connections: every client backend (pg_stat_activity), the
 * connection limits, the database's commit/rollback counters and, when readable,
 * pg_stat_statements. Queries run inside the caller's read-only transaction, so pg_stat_activity
 * is one consistent snapshot; the summaries (groups, idle in transaction, long-running) are pure.
 */
import type { ClientBase as Client } from 'pg';
import { maskSqlSecrets } from '../db/sql-secrets.js';

/** One client backend, ages in milliseconds at the moment of the snapshot. */
export interface Backend {
  pid: number;
  database: string | null;
  user: string | null;
  application: string;
  clientAddr: string | null;
  state: string | null;
  waitEventType: string | null;
  waitEvent: string | null;
  backendAgeMs: number | null;
  xactAgeMs: number | null;
  /** Time since the state last changed (for idle sessions: how long idle). */
  stateAgeMs: number | null;
  queryAgeMs: number | null;
  /** age(backend_xid): this session has written and holds a transaction ID. */
  xidAge: number | null;
  /** age(backend_xmin): the oldest snapshot this session still needs. */
  xminAge: number | null;
  /** The current query, or for idle sessions the last one; null when we may not see it. */
  query: string | null;
  /** This is dbops' own connection. */
  self: boolean;
}

export interface ServerInfo {
  version: string;
  versionNum: number;
  database: string;
  user: string;
  selfPid: number;
  maxConnections: number;
  superuserReserved: number;
  /** reserved_connections (PostgreSQL 16+; 0 before). */
  reserved: number;
  /** Superuser or pg_read_all_stats: may see other sessions' queries. */
  canSeeAllQueries: boolean;
  takenAt: string;
}

export interface DatabaseStats {
  xactCommit: number;
  xactRollback: number;
  statsReset: string | null;
}

export interface StatementStats {
  available: boolean;
  /** Why not available (not installed, not preloaded, not readable). */
  reason?: string;
  calls: number;
  totalMs: number;
  /** Statements (pg_stat_statements rows in this database) whose mean time is over the threshold. */
  slowStatements: number;
}

export interface ActivityRaw {
  server: ServerInfo;
  backends: Backend[];
  database: DatabaseStats;
  statements: StatementStats;
}

const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

/** Mask secrets in query text (ALTER ROLE ... PASSWORD '...', connection strings). */
export function maskQuery(query: string | null): string | null {
  return query === null ? null : maskSqlSecrets(query);
}

const INFO_SQL = `SELECT current_setting('server_version') AS version,
       current_setting('server_version_num')::int AS version_num,
       current_database() AS db, current_user AS usr, pg_backend_pid() AS pid,
       current_setting('max_connections')::int AS max_conn,
       current_setting('superuser_reserved_connections')::int AS su_res,
       COALESCE(current_setting('reserved_connections', true)::int, 0) AS res,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
         OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') AS see_all,
       to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS taken_at`;

// Ages from statement_timestamp(): one instant for every row of the snapshot.
const ACTIVITY_SQL = `SELECT pid, datname, usename, application_name, host(client_addr) AS client_addr, state,
       wait_event_type, wait_event,
       EXTRACT(EPOCH FROM statement_timestamp() - backend_start) * 1000 AS backend_ms,
       EXTRACT(EPOCH FROM statement_timestamp() - xact_start) * 1000 AS xact_ms,
       EXTRACT(EPOCH FROM statement_timestamp() - state_change) * 1000 AS state_ms,
       EXTRACT(EPOCH FROM statement_timestamp() - query_start) * 1000 AS query_ms,
       age(backend_xid) AS xid_age, age(backend_xmin) AS xmin_age,
       LEFT(query, 1000) AS query
  FROM pg_stat_activity
 WHERE backend_type = 'client backend'
 ORDER BY pid`;

const DATABASE_SQL = `SELECT xact_commit, xact_rollback,
       to_char(stats_reset AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS stats_reset
  FROM pg_stat_database WHERE datname = current_database()`;

const EXTENSION_SQL = `SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'`;

type Rows = Array<Record<string, unknown>>;

/**
 * Run constant statements (no parameters) in one round trip: node-postgres sends them with the
 * simple query protocol as one string and returns one result per statement.
 */
async function batch(client: Client, statements: string[]): Promise<Rows[]> {
  const res = (await client.query(statements.join(';\n'))) as unknown;
  const list = (Array.isArray(res) ? res : [res]) as Array<{ rows?: Rows }>;
  return list.map((r) => r.rows ?? []);
}

/** Read the server's limits, every client backend, database counters and pg_stat_statements. */
export async function readActivity(
  client: Client,
  opts: { slowMs: number; backendsOnly?: boolean },
): Promise<ActivityRaw> {
  const [infoRows = [], activityRows = [], dbRows = [], extRows = []] = await batch(
    client,
    opts.backendsOnly ? [INFO_SQL, ACTIVITY_SQL] : [INFO_SQL, ACTIVITY_SQL, DATABASE_SQL, EXTENSION_SQL],
  );
  const s = infoRows[0] ?? {};
  const server: ServerInfo = {
    version: String(s.version),
    versionNum: Number(s.version_num),
    database: String(s.db),
    user: String(s.usr),
    selfPid: Number(s.pid),
    maxConnections: Number(s.max_conn),
    superuserReserved: Number(s.su_res),
    reserved: Number(s.res),
    canSeeAllQueries: Boolean(s.see_all),
    takenAt: String(s.taken_at),
  };
  const ms = (v: unknown) => {
    const n = num(v);
    return n === null ? null : Math.max(0, Math.round(n));
  };
  const str = (v: unknown) => (v === null || v === undefined ? null : String(v));
  const backends: Backend[] = activityRows.map((r) => ({
    pid: Number(r.pid),
    database: str(r.datname),
    user: str(r.usename),
    application: str(r.application_name) ?? '',
    clientAddr: str(r.client_addr),
    state: str(r.state),
    waitEventType: str(r.wait_event_type),
    waitEvent: str(r.wait_event),
    backendAgeMs: ms(r.backend_ms),
    xactAgeMs: ms(r.xact_ms),
    stateAgeMs: ms(r.state_ms),
    queryAgeMs: ms(r.query_ms),
    xidAge: num(r.xid_age),
    xminAge: num(r.xmin_age),
    query: maskQuery(str(r.query)),
    self: Number(r.pid) === server.selfPid,
  }));
  if (opts.backendsOnly) {
    return {
      server,
      backends,
      database: { xactCommit: 0, xactRollback: 0, statsReset: null },
      statements: { available: false, calls: 0, totalMs: 0, slowStatements: 0 },
    };
  }
  const d = dbRows[0] ?? {};
  const database: DatabaseStats = {
    xactCommit: Number(d.xact_commit ?? 0),
    xactRollback: Number(d.xact_rollback ?? 0),
    statsReset: str(d.stats_reset),
  };
  const statements = await readStatements(client, str(extRows[0]?.extversion), opts.slowMs);
  return { server, backends, database, statements };
}

async function readStatements(client: Client, version: string | null, slowMs: number): Promise<StatementStats> {
  const none = (reason: string): StatementStats => ({
    available: false,
    reason,
    calls: 0,
    totalMs: 0,
    slowStatements: 0,
  });
  if (!version) return none('pg_stat_statements is not installed in this database');
  const [major = 0, minor = 0] = version.split('.').map(Number);
  // 1.8 (PostgreSQL 13) renamed total_time to total_exec_time and added planning time.
  const newer = major > 1 || (major === 1 && minor >= 8);
  const total = newer ? 'total_exec_time + total_plan_time' : 'total_time';
  // Inlined because the batch cannot take parameters: a finite number we parsed, never text.
  const threshold = Number.isFinite(slowMs) ? Number(slowMs) : 1000;
  // pg_stat_statements(false): the counters without reading the query-text file.
  // A savepoint keeps the transaction usable if the view errors (not preloaded, no privilege).
  try {
    const [, rows = []] = await batch(client, [
      'SAVEPOINT dbops_pss',
      `SELECT COALESCE(SUM(calls), 0) AS calls, COALESCE(SUM(${total}), 0) AS total_ms,
              COUNT(*) FILTER (WHERE calls > 0 AND (${total}) / calls > ${threshold}) AS slow
         FROM pg_stat_statements(false)
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      'RELEASE SAVEPOINT dbops_pss',
    ]);
    const row = rows[0] ?? {};
    return {
      available: true,
      calls: Number(row.calls),
      totalMs: Number(row.total_ms),
      slowStatements: Number(row.slow),
    };
  } catch (error) {
    await client.query('ROLLBACK TO SAVEPOINT dbops_pss');
    return none(`pg_stat_statements is not readable: ${(error as Error).message}`);
  }
}

/** Connections grouped by who and how: one row per (database, application, user, client, state). */
export interface ConnectionGroup {
  database: string | null;
  application: string;
  user: string | null;
  clientAddr: string | null;
  state: string;
  count: number;
  longestInStateMs: number | null;
  oldestXactMs: number | null;
}

const maxOf = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.max(a, b));

export function groupConnections(backends: Backend[]): ConnectionGroup[] {
  const groups = new Map<string, ConnectionGroup>();
  for (const b of backends) {
    const state = b.state ?? (b.query === null ? 'unknown (no privilege)' : 'starting');
    const key = JSON.stringify([b.database, b.application, b.user, b.clientAddr, state]);
    let g = groups.get(key);
    if (!g) {
      g = {
        database: b.database,
        application: b.application,
        user: b.user,
        clientAddr: b.clientAddr,
        state,
        count: 0,
        longestInStateMs: null,
        oldestXactMs: null,
      };
      groups.set(key, g);
    }
    g.count++;
    g.longestInStateMs = maxOf(g.longestInStateMs, b.stateAgeMs);
    g.oldestXactMs = maxOf(g.oldestXactMs, b.xactAgeMs);
  }
  return [...groups.values()].sort(
    (a, b) => b.count - a.count || a.application.localeCompare(b.application) || a.state.localeCompare(b.state),
  );
}

export const isIdleInTransaction = (b: Backend) =>
  b.state === 'idle in transaction' || b.state === 'idle in transaction (aborted)';

/** The transaction-ID age a session holds back: the larger of age(backend_xid) and age(backend_xmin). */
export const xidHeldBack = (b: Backend): number | null => maxOf(b.xidAge, b.xminAge);

export interface SessionRow {
  pid: number;
  database: string | null;
  application: string;
  user: string | null;
  clientAddr: string | null;
  state: string | null;
  xactAgeMs: number | null;
  stateAgeMs: number | null;
  queryAgeMs: number | null;
  xidHeldBack: number | null;
  /** For idle sessions the last statement, for active ones the current one. */
  query: string | null;
  waitEventType: string | null;
  waitEvent: string | null;
  /** A statement a person may choose to run; dbops never runs it. */
  terminate: string;
  cancel?: string;
}

function sessionRow(b: Backend): SessionRow {
  return {
    pid: b.pid,
    database: b.database,
    application: b.application,
    user: b.user,
    clientAddr: b.clientAddr,
    state: b.state,
    xactAgeMs: b.xactAgeMs,
    stateAgeMs: b.stateAgeMs,
    queryAgeMs: b.queryAgeMs,
    xidHeldBack: xidHeldBack(b),
    query: b.query,
    waitEventType: b.waitEventType,
    waitEvent: b.waitEvent,
    terminate: `SELECT pg_terminate_backend(${b.pid});`,
  };
}

/** Every session idle in a transaction, oldest transaction first. */
export function idleInTransaction(backends: Backend[]): SessionRow[] {
  return backends
    .filter(isIdleInTransaction)
    .map(sessionRow)
    .sort((a, b) => (b.xactAgeMs ?? 0) - (a.xactAgeMs ?? 0));
}

/** Active queries running for at least `longMs` (dbops' own excluded), longest first. */
export function longRunning(backends: Backend[], longMs: number): SessionRow[] {
  return backends
    .filter((b) => !b.self && b.state === 'active' && (b.queryAgeMs ?? 0) >= longMs)
    .map((b) => ({ ...sessionRow(b), cancel: `SELECT pg_cancel_backend(${b.pid});` }))
    .sort((a, b) => (b.queryAgeMs ?? 0) - (a.queryAgeMs ?? 0));
}

export interface Headroom {
  maxConnections: number;
  superuserReserved: number;
  reserved: number;
  /** max_connections − superuser_reserved_connections − reserved_connections. */
  usable: number;
  /** Client backends now, this dbops session included. */
  inUse: number;
  /** usable − inUse: new connections an ordinary role can still open (never below 0 when dbops sits in a reserved slot). */
  free: number;
  /**
   * dbops got in through a reserved slot (a superuser, or a member of pg_use_reserved_connections):
   * every slot ordinary roles may use was taken by others, so its own connection is not counted against them.
   */
  selfInReservedSlot: boolean;
  formula: string;
}

export function headroom(server: ServerInfo, backends: Backend[]): Headroom {
  const usable = server.maxConnections - server.superuserReserved - server.reserved;
  const inUse = backends.length;
  const self = backends.filter((b) => b.self).length;
  const others = inUse - self;
  // With every usable slot taken by others, dbops' own connection can only be in a reserved one.
  const selfInReservedSlot = self > 0 && others >= usable;
  const counted = selfInReservedSlot ? others : inUse;
  const free = selfInReservedSlot ? Math.max(0, usable - others) : usable - inUse;
  return {
    maxConnections: server.maxConnections,
    superuserReserved: server.superuserReserved,
    reserved: server.reserved,
    usable,
    inUse,
    free,
    selfInReservedSlot,
    formula: `max_connections ${server.maxConnections} − superuser_reserved_connections ${server.superuserReserved} − reserved_connections ${server.reserved} − in use ${counted}${
      selfInReservedSlot ? " (dbops' own connection is in a reserved slot, not counted)" : ''
    } = ${free}`,
  };
}
