/**
 * Reading pg_stat_statements: availability checks with the exact fix, the server's identity, and
 * the counters of the current database's statements, all inside one READ ONLY transaction with a
 * statement timeout. Returns plain data; ranking and deltas are in slow-queries.ts.
 */

import type { ClientBase } from 'pg';
import { withReadOnly } from '../db/readonly.js';
import { maskSqlSecrets } from '../db/sql-secrets.js';
import {
  ConfigError,
  type DbopsError,
  isDbopsError,
  messageOf,
  OperationError,
  UnreachableError,
  UsageError,
} from '../errors.js';
import { atLeast, type PgssColumns, type PgssVersion, parsePgssVersion, pgssColumns } from './pgss-version.js';
import { loadOriginParser } from './prisma-origin.js';

export type SortKey = 'total' | 'mean' | 'calls' | 'rows' | 'io';
export const SORT_KEYS: readonly SortKey[] = ['total', 'mean', 'calls', 'rows', 'io'];

/** Cumulative counters of one pg_stat_statements entry, keyed by (queryid, userid, dbid). */
export interface StatementCounters {
  queryid: string;
  userid: number;
  dbid: number;
  rolname: string | null;
  calls: number;
  totalExecMs: number;
  totalPlanMs: number;
  stddevExecMs: number;
  maxExecMs: number;
  rows: number;
  sharedBlksHit: number;
  sharedBlksRead: number;
  sharedBlksWritten: number;
  tempBlksRead: number;
  tempBlksWritten: number;
  blkReadMs: number;
  blkWriteMs: number;
  /** When this entry started counting (extension 1.11+), ISO. */
  statsSince: string | null;
  query: string;
}

export interface ServerIdentity {
  /** pg_control_system().system_identifier when this role may call it. */
  systemIdentifier: string | null;
  serverVersion: string;
  serverVersionNum: number;
  database: string;
  dbid: number;
  currentUser: string;
  postmasterStart: string;
  pgssVersion: string;
  /** pg_stat_statements_info (extension 1.9+): last full reset, and entries evicted since. */
  statsReset: string | null;
  dealloc: number | null;
  trackPlanning: boolean | null;
  track: string | null;
  /** Server time when read, ISO. */
  takenAt: string;
}

export interface PgssRead {
  server: ServerIdentity;
  statements: StatementCounters[];
  /** Over every top-level entry of this database, also those not returned (top mode). */
  totals: { statements: number; calls: number; totalMs: number; slowStatements: number } | null;
}

export interface SlowRule {
  minMeanMs: number;
  minCalls: number;
}

export type ReadMode =
  | { mode: 'all' }
  | { mode: 'top'; sort: SortKey; limit: number; onlySlow: boolean; slow: SlowRule };

const FIX_PRELOAD =
  "add pg_stat_statements to shared_preload_libraries (postgresql.conf: shared_preload_libraries = 'pg_stat_statements') and restart PostgreSQL";
const FIX_CREATE = 'run CREATE EXTENSION pg_stat_statements; in this database (as a superuser or the database owner)';

export function pgssNotInstalled(database: string, preloaded: boolean | null): ConfigError {
  const hint =
    preloaded === false
      ? `${FIX_PRELOAD}, then ${FIX_CREATE}`
      : preloaded === null
        ? `${FIX_CREATE} (and make sure it is in shared_preload_libraries)`
        : FIX_CREATE;
  return new ConfigError(`pg_stat_statements is not installed in database "${database}"`, {
    hint,
    details: { reason: 'extension-missing', preloaded },
  });
}

export function pgssNotPreloaded(): ConfigError {
  return new ConfigError(
    'pg_stat_statements is installed but not loaded: it is missing from shared_preload_libraries',
    {
      hint: FIX_PRELOAD,
      details: { reason: 'not-preloaded' },
    },
  );
}

export function pgssNoPrivilege(role: string, hidden: number): ConfigError {
  return new ConfigError(
    `role "${role}" may not read other roles' statements in pg_stat_statements (${hidden} shown as <insufficient privilege>)`,
    {
      hint: `GRANT pg_read_all_stats TO "${role}"; (or pg_monitor, which includes it)`,
      details: { reason: 'insufficient-privilege', role, hidden },
    },
  );
}

/** SQL over alias `b` (a row of `baseSql`) for each sort key; all sort descending. */
export const SORT_SQL: Record<SortKey, string> = {
  total: '(b.total_exec_ms + b.total_plan_ms)',
  mean: '(b.total_exec_ms + b.total_plan_ms) / NULLIF(b.calls, 0)',
  calls: 'b.calls',
  rows: 'b.rows',
  io: '(b.shared_blks_read + b.temp_blks_read + b.temp_blks_written)',
};

/**
 * Every statement this report sends ends with this comment, which pg_stat_statements keeps in the
 * statement's text: the report leaves out its own reads (they would otherwise rank among the
 * statements and, slowed by the load of the moment, trip the regression gate).
 */
export const OWN_MARK = '/* dbops:slow-queries */';
const NOT_OWN = `AND (s.query IS NULL OR s.query NOT LIKE '%${OWN_MARK}')`;

/** One row per top-level statement of the current database (hidden ones have a NULL queryid). */
export function baseSql(cols: PgssColumns): string {
  return `SELECT s.queryid::text AS queryid, s.userid::int8 AS userid, s.dbid::int8 AS dbid, r.rolname,
       s.calls::float8 AS calls, ${cols.execTotal} AS total_exec_ms, ${cols.planTotal} AS total_plan_ms,
       ${cols.stddev} AS stddev_exec_ms, ${cols.max} AS max_exec_ms, s.rows::float8 AS rows,
       s.shared_blks_hit::float8 AS shared_blks_hit, s.shared_blks_read::float8 AS shared_blks_read,
       s.shared_blks_written::float8 AS shared_blks_written, s.temp_blks_read::float8 AS temp_blks_read,
       s.temp_blks_written::float8 AS temp_blks_written, ${cols.blkReadTime} AS blk_read_ms,
       ${cols.blkWriteTime} AS blk_write_ms, ${cols.statsSince} AS stats_since, s.query
  FROM pg_stat_statements s LEFT JOIN pg_roles r ON r.oid = s.userid
 WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ${cols.toplevel} ${NOT_OWN}`;
}

/**
 * The top-N query: `$1` limit (NULL = all), `$2` min calls, `$3` min mean ms (slow rule). The
 * totals over every entry of the database (hidden ones included) ride along as window columns
 * `t_*`, computed before the filter and the limit: one round trip and one read of the view.
 */
export function topSql(cols: PgssColumns, sort: SortKey, onlySlow: boolean): string {
  const isSlow = (a: string) =>
    `${a}.calls >= $2 AND (${a}.total_exec_ms + ${a}.total_plan_ms) / NULLIF(${a}.calls, 0) >= $3`;
  return `SELECT b.* FROM (
  SELECT a.*,
         count(*) FILTER (WHERE a.queryid IS NOT NULL) OVER () AS t_statements,
         count(*) FILTER (WHERE a.queryid IS NULL) OVER () AS t_hidden,
         COALESCE(sum(a.calls) OVER (), 0)::float8 AS t_calls,
         COALESCE(sum(a.total_exec_ms + a.total_plan_ms) OVER (), 0)::float8 AS t_total_ms,
         count(*) FILTER (WHERE a.queryid IS NOT NULL AND ${isSlow('a')}) OVER () AS t_slow
    FROM (${baseSql(cols)}) a) b
 WHERE b.queryid IS NOT NULL${onlySlow ? ` AND ${isSlow('b')}` : ''}
 ORDER BY ${SORT_SQL[sort]} DESC NULLS LAST, (b.total_exec_ms + b.total_plan_ms) DESC, b.queryid, b.userid
 LIMIT $1 ${OWN_MARK}`;
}

/** Totals over every entry but the report's own (read only when no statement passed the filter). */
export function totalsSql(cols: PgssColumns): string {
  return `SELECT count(*) FILTER (WHERE s.queryid IS NOT NULL)::int AS statements,
       count(*) FILTER (WHERE s.queryid IS NULL)::int AS hidden,
       COALESCE(sum(s.calls), 0)::float8 AS calls,
       COALESCE(sum(${cols.execTotal} + ${cols.planTotal}), 0)::float8 AS "totalMs",
       count(*) FILTER (WHERE s.queryid IS NOT NULL AND s.calls >= $1
                        AND (${cols.execTotal} + ${cols.planTotal}) / NULLIF(s.calls, 0) >= $2)::int AS slow
  FROM pg_stat_statements s
 WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ${cols.toplevel} ${NOT_OWN} ${OWN_MARK}`;
}

interface Totals {
  statements: number;
  hidden: number;
  calls: number;
  totalMs: number;
  slow: number;
}

/** A top-N row: the statement plus the window totals (bigint counts arrive as text). */
interface TopRow extends CounterRow {
  t_statements: string;
  t_hidden: string;
  t_calls: number;
  t_total_ms: number;
  t_slow: string;
}

interface IdentityRow {
  database: string;
  dbid: string;
  server_version: string;
  server_version_num: string;
  postmaster_start: Date;
  current_user: string;
  extversion: string | null;
  preload: string | null;
  track: string | null;
  track_planning: string | null;
  system_identifier: string | null;
  read_all_stats: boolean;
  taken_at: Date;
}

const IDENTITY_SQL = `SELECT current_database() AS database,
       (SELECT oid FROM pg_database WHERE datname = current_database())::int8 AS dbid,
       current_setting('server_version') AS server_version,
       current_setting('server_version_num') AS server_version_num,
       pg_postmaster_start_time() AS postmaster_start, current_user AS current_user, now() AS taken_at,
       (SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements') AS extversion,
       (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries') AS preload,
       (SELECT setting FROM pg_settings WHERE name = 'pg_stat_statements.track') AS track,
       (SELECT setting FROM pg_settings WHERE name = 'pg_stat_statements.track_planning') AS track_planning,
       CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE')
            THEN (SELECT system_identifier::text FROM pg_control_system()) END AS system_identifier,
       (pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')
        OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)) AS read_all_stats ${OWN_MARK}`;

/** Is pg_stat_statements among the preloaded libraries? null when this role cannot see the setting. */
export function isPreloaded(setting: string | null): boolean | null {
  if (setting === null) return null;
  return setting
    .split(',')
    .map((s) => s.trim().replace(/^"|"$/g, ''))
    .some((lib) => lib === 'pg_stat_statements' || lib.endsWith('/pg_stat_statements'));
}

interface CounterRow {
  queryid: string | null;
  userid: string;
  dbid: string;
  rolname: string | null;
  calls: number;
  total_exec_ms: number;
  total_plan_ms: number;
  stddev_exec_ms: number;
  max_exec_ms: number;
  rows: number;
  shared_blks_hit: number;
  shared_blks_read: number;
  shared_blks_written: number;
  temp_blks_read: number;
  temp_blks_written: number;
  blk_read_ms: number;
  blk_write_ms: number;
  stats_since: Date | null;
  query: string | null;
}

function toCounters(r: CounterRow): StatementCounters {
  return {
    queryid: r.queryid ?? '',
    userid: Number(r.userid),
    dbid: Number(r.dbid),
    rolname: r.rolname,
    calls: r.calls,
    totalExecMs: r.total_exec_ms,
    totalPlanMs: r.total_plan_ms,
    stddevExecMs: r.stddev_exec_ms,
    maxExecMs: r.max_exec_ms,
    rows: r.rows,
    sharedBlksHit: r.shared_blks_hit,
    sharedBlksRead: r.shared_blks_read,
    sharedBlksWritten: r.shared_blks_written,
    tempBlksRead: r.temp_blks_read,
    tempBlksWritten: r.temp_blks_written,
    blkReadMs: r.blk_read_ms,
    blkWriteMs: r.blk_write_ms,
    statsSince: r.stats_since ? r.stats_since.toISOString() : null,
    query: maskSqlSecrets(r.query ?? ''),
  };
}

/** Translate a query error into the right dbops error (missing library, privilege, timeout). */
function readError(error: unknown, role: string): DbopsError {
  if (isDbopsError(error)) return error;
  const code = (error as { code?: string } | null)?.code;
  const msg = messageOf(error);
  if (code === '55000' && /shared_preload_libraries/.test(msg)) return pgssNotPreloaded();
  if (code === '42501') {
    return new ConfigError(`role "${role}" may not read pg_stat_statements: ${msg}`, {
      hint: `GRANT pg_read_all_stats TO "${role}"; and GRANT SELECT ON pg_stat_statements TO "${role}";`,
      cause: error,
      details: { reason: 'insufficient-privilege', sqlstate: code },
    });
  }
  if (code === '57014') {
    return new OperationError(`reading pg_stat_statements was cancelled by the statement timeout: ${msg}`, {
      hint: 'raise --statement-timeout, or lower pg_stat_statements.max',
      cause: error,
    });
  }
  if (code && /^(08|57P)/.test(code))
    return new UnreachableError(`lost the connection while reading pg_stat_statements: ${msg}`, { cause: error });
  return new OperationError(`reading pg_stat_statements failed: ${msg}`, {
    cause: error,
    details: code ? { sqlstate: code } : undefined,
  });
}

/**
 * Read the identity and the statements of the current database. Throws ConfigError (exit 2) with
 * the exact fix when pg_stat_statements is missing, not preloaded, or hidden from this role.
 */
export async function readPgss(client: ClientBase, mode: ReadMode, statementTimeoutMs: number): Promise<PgssRead> {
  await loadOriginParser(); // the report's Prisma labels read the SQL with PostgreSQL's parser
  let role = 'current role';
  try {
    return await withReadOnly(client, statementTimeoutMs, async (c) => {
      const id = (await c.query<IdentityRow>(IDENTITY_SQL)).rows[0];
      if (!id) throw new OperationError('reading the server identity returned no row');
      role = id.current_user;
      const preloaded = isPreloaded(id.preload);
      if (id.extversion === null) throw pgssNotInstalled(id.database, preloaded);
      if (preloaded === false) throw pgssNotPreloaded();
      const version: PgssVersion = parsePgssVersion(id.extversion);
      const cols = pgssColumns(version);
      let statsReset: string | null = null;
      let dealloc: number | null = null;
      if (cols.hasInfoView) {
        const info = await c.query<{ dealloc: string; stats_reset: Date | null }>(
          `SELECT dealloc, stats_reset FROM pg_stat_statements_info ${OWN_MARK}`,
        );
        statsReset = info.rows[0]?.stats_reset?.toISOString() ?? null;
        dealloc = info.rows[0] ? Number(info.rows[0].dealloc) : null;
      }
      const server: ServerIdentity = {
        systemIdentifier: id.system_identifier,
        serverVersion: id.server_version,
        serverVersionNum: Number(id.server_version_num),
        database: id.database,
        dbid: Number(id.dbid),
        currentUser: id.current_user,
        postmasterStart: id.postmaster_start.toISOString(),
        pgssVersion: version.text,
        statsReset,
        dealloc,
        trackPlanning: id.track_planning === null ? null : id.track_planning === 'on',
        track: id.track,
        takenAt: id.taken_at.toISOString(),
      };
      if (mode.mode === 'all') {
        const rows = (await c.query<CounterRow>(`${baseSql(cols)} ${OWN_MARK}`)).rows;
        const hidden = rows.filter((r) => r.queryid === null).length;
        if (hidden > 0 && !id.read_all_stats) throw pgssNoPrivilege(id.current_user, hidden);
        return { server, statements: rows.filter((r) => r.queryid !== null).map(toCounters), totals: null };
      }
      const { rows } = await c.query<TopRow>(topSql(cols, mode.sort, mode.onlySlow), [
        mode.limit > 0 ? mode.limit : null,
        mode.slow.minCalls,
        mode.slow.minMeanMs,
      ]);
      const t = rows[0];
      // No row passed the filter (or every entry is hidden): the totals need their own query.
      const totals = t
        ? {
            statements: Number(t.t_statements),
            hidden: Number(t.t_hidden),
            calls: t.t_calls,
            totalMs: t.t_total_ms,
            slow: Number(t.t_slow),
          }
        : (await c.query<Totals>(totalsSql(cols), [mode.slow.minCalls, mode.slow.minMeanMs])).rows[0];
      if (totals && totals.hidden > 0 && !id.read_all_stats) throw pgssNoPrivilege(id.current_user, totals.hidden);
      return {
        server,
        statements: rows.map(toCounters),
        totals: {
          statements: totals?.statements ?? 0,
          calls: totals?.calls ?? 0,
          totalMs: totals?.totalMs ?? 0,
          slowStatements: totals?.slow ?? 0,
        },
      };
    });
  } catch (error) {
    throw readError(error, role);
  }
}

/**
 * `pg_stat_statements_reset()`: for the current database only where the extension supports it
 * (1.7+: reset(userid, dbid, queryid) with 0 as a wildcard), else everything.
 */
export async function resetPgss(client: ClientBase, allDatabases: boolean): Promise<{ scope: 'database' | 'server' }> {
  let signature = '(oid, oid, bigint)';
  try {
    const v = await client.query<{ extversion: string | null; database: string }>(
      `SELECT (SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements') AS extversion, current_database() AS database`,
    );
    const row = v.rows[0];
    if (!row?.extversion) throw pgssNotInstalled(row?.database ?? '?', null);
    // 1.11 (PostgreSQL 17) added a fourth argument, minmax_only.
    if (atLeast(parsePgssVersion(row.extversion), 1, 11)) signature = '(oid, oid, bigint, boolean)';
    if (!allDatabases && !atLeast(parsePgssVersion(row.extversion), 1, 7)) {
      throw new UsageError(`pg_stat_statements ${row.extversion} can only reset every database of the server at once`, {
        hint: 'add --all-databases to reset the whole server, or upgrade the extension (ALTER EXTENSION pg_stat_statements UPDATE)',
      });
    }
    if (!allDatabases) {
      await client.query(
        'SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)',
      );
      return { scope: 'database' };
    }
    await client.query('SELECT pg_stat_statements_reset()');
    return { scope: 'server' };
  } catch (error) {
    const code = (error as { code?: string } | null)?.code;
    if (code === '42501') {
      return Promise.reject(
        new ConfigError(`this role may not reset pg_stat_statements: ${messageOf(error)}`, {
          hint: `run it as a superuser, or GRANT EXECUTE ON FUNCTION pg_stat_statements_reset${signature} TO the role`,
          cause: error,
        }),
      );
    }
    throw readError(error, 'current role');
  }
}
