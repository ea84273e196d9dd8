/**
 * Reading system.query_log for `dbops slow-queries --source clickhouse`. The server's columns
 * decide the SQL (planFor, pure and unit-tested for versions this machine cannot run):
 * - `normalized_query_hash` (21.1+): the server groups and computes the percentiles;
 * - without it (18.x-20.x): the server groups by exact text and returns each group's durations,
 *   and dbops merges texts with the same normalized form (sql-text.ts) and computes the same
 *   percentiles (quantileExact's definition) itself;
 * - `type` is a UInt8 before 19.x and an Enum8 after; `tables` and `exception_code` are read
 *   where they exist.
 */
import { type ClickHouseConnection, quoteString } from '../../db/clickhouse.js';
import { ConfigError, isDbopsError, OperationError } from '../../errors.js';

export interface QueryLogPlan {
  grouping: 'normalized_query_hash' | 'text';
  /** `type` is Enum8('QueryStart' = 1, ...) rather than UInt8. */
  typeIsEnum: boolean;
  /** The `tables` column (Array(String)) exists. */
  tables: boolean;
  exceptionCode: boolean;
  /**
   * Text grouping only: the server first merges texts that differ only in the values of their
   * number and string literals (preKeySql), so a log of 10,000 texts of 50 shapes sends 50 rows,
   * not 10,000; dbops' lexer still decides the final groups.
   */
  preKey: boolean;
}

/** Which figures a server's query_log can give, from its columns (name → type). */
export function planFor(columns: ReadonlyMap<string, string>): QueryLogPlan {
  return {
    grouping: columns.has('normalized_query_hash') ? 'normalized_query_hash' : 'text',
    typeIsEnum: (columns.get('type') ?? '').startsWith('Enum'),
    tables: (columns.get('tables') ?? '').startsWith('Array'),
    exceptionCode: columns.has('exception_code'),
    preKey: !columns.has('normalized_query_hash'),
  };
}

/**
 * The server-side pre-grouping key of old servers: the text with each number and single-quoted
 * string literal replaced by `?`, computed only for texts where such patterns read the text exactly
 * as dbops' lexer does, that is texts with nothing but words, numbers, single-quoted strings without
 * backslashes, punctuation and ASCII whitespace (no comments, double quotes, backticks, heredocs,
 * `#`, backslashes or non-ASCII). Any other text is its own key. Two texts with the same key differ
 * only in literal values, so they normalize alike: the key can merge less than the lexer, never more.
 * A number is only taken where the lexer starts one (not after a word character), and the string
 * alternative comes first, so digits inside a string are never read as a number.
 */
export function preKeySql(column = 'query'): string {
  const literal = String.raw`'(?:[^']|'')*'|(^|[^A-Za-z0-9_$])(0[xX][0-9a-fA-F]+|0[bB][01]+|[0-9][0-9_]*(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)`;
  const plain = ['"', '`', '--', '/*', '#', '$', '\\']
    .map((s) => `position(${column}, ${quoteString(s)}) = 0`)
    .concat(`length(${column}) = lengthUTF8(${column})`)
    .join(' AND ');
  return `if(${plain}, replaceRegexpAll(${column}, ${quoteString(literal)}, ${quoteString('\\1?')}), ${column})`;
}

/** Columns every supported server has (18.16 included); without them there is no report. */
export const REQUIRED_COLUMNS = [
  'type',
  'event_date',
  'event_time',
  'query_duration_ms',
  'read_rows',
  'read_bytes',
  'result_rows',
  'memory_usage',
  'query',
  'exception',
  'user',
];

export const PERCENTILES = [0.5, 0.95, 0.99] as const;

/** A window of event_time, in Unix seconds of the server's clock. */
export interface Window {
  from: number;
  to: number;
}

const whole = (n: number) => String(Math.floor(n));

export function groupsSql(plan: QueryLogPlan, w: Window): string {
  const finished = plan.typeIsEnum ? "type != 'QueryStart'" : 'type != 1';
  const failed = plan.typeIsEnum ? "type IN ('ExceptionBeforeStart', 'ExceptionWhileProcessing')" : 'type >= 3';
  const byHash = plan.grouping === 'normalized_query_hash';
  // The failing execution's own text travels with its error: it masks the literals the error repeats.
  const errorTuple = `(exception, query${plan.exceptionCode ? ', exception_code' : ''})`;
  const cols = [
    byHash
      ? 'toString(normalized_query_hash) AS key, any(query) AS sample'
      : plan.preKey
        ? `${preKeySql()} AS pre_key, any(query) AS sample`
        : 'query AS sample',
    'count() AS calls',
    `countIf(${failed}) AS failed`,
    'sum(query_duration_ms) AS total_ms',
    'max(query_duration_ms) AS max_ms',
    byHash
      ? `quantilesExact(${PERCENTILES.join(', ')})(query_duration_ms) AS q`
      : 'groupArray(query_duration_ms) AS durations',
    'sum(read_rows) AS read_rows',
    'sum(read_bytes) AS read_bytes',
    'sum(result_rows) AS result_rows',
    'max(memory_usage) AS peak_memory',
    'groupUniqArray(user) AS users',
    ...(plan.tables ? ['groupUniqArrayArray(tables) AS tables'] : []),
    `argMaxIf(${errorTuple}, event_time, ${failed}) AS err`,
    `toUInt32(toUnixTimestamp(maxIf(event_time, ${failed}))) AS err_at`,
    'toUInt32(toUnixTimestamp(min(event_time))) AS first_seen',
    'toUInt32(toUnixTimestamp(max(event_time))) AS last_seen',
  ];
  return [
    `SELECT ${cols.join(',\n       ')}`,
    'FROM system.query_log',
    // event_date is the table's partition and primary key prefix: it prunes the scan.
    `WHERE event_date >= toDate(toDateTime(${whole(w.from)})) AND event_time >= toDateTime(${whole(w.from)}) AND event_time <= toDateTime(${whole(w.to)})`,
    `  AND ${finished}`,
    `GROUP BY ${byHash ? 'normalized_query_hash' : plan.preKey ? 'pre_key' : 'query'}`,
  ].join('\n');
}

/** One row of groupsSql as JSON (64-bit integers may arrive as strings). */
export interface RawGroupRow {
  key?: string;
  pre_key?: string;
  sample: string;
  calls: number | string;
  failed: number | string;
  total_ms: number | string;
  max_ms: number | string;
  durations?: Array<number | string>;
  q?: Array<number | string>;
  read_rows: number | string;
  read_bytes: number | string;
  result_rows: number | string;
  peak_memory: number | string;
  users: string[];
  tables?: string[];
  /** [exception, the failing execution's query(, exception_code)] */
  err: Array<string | number>;
  err_at: number | string;
  first_seen: number | string;
  last_seen: number | string;
}

export interface QueryLogServer {
  endpoint: string;
  version: string;
  user: string;
  tls: boolean;
  /** log_queries for dbops' own user (its profile); null when unreadable. */
  logQueries: boolean | null;
}

export interface QueryLogRead {
  server: QueryLogServer;
  plan: QueryLogPlan;
  window: Window;
  rows: RawGroupRow[];
  /** The SQL that was run (the benchmark runs the same through clickhouse-client). */
  sql: string;
}

const ACCESS_DENIED = /\b(497|ACCESS_DENIED)\b|Not enough privileges/i;

async function columnsOf(
  conn: ClickHouseConnection,
  table: string,
  timeoutMs: number,
): Promise<ReadonlyMap<string, string>> {
  const rows = await conn.query<{ name: string; type: string }>(
    `SELECT name, type FROM system.columns WHERE database = 'system' AND table = '${table}'`,
    {
      timeoutMs,
      doing: `reading the columns of system.${table}`,
    },
  );
  return new Map(rows.map((r) => [r.name, r.type]));
}

export interface ReadOptions {
  window: Window;
  /** SYSTEM FLUSH LOGS first, so the last seconds (flush_interval_milliseconds, 7.5 s by default) are in. */
  flush: boolean;
  timeoutMs: number;
}

/** Read the groups of the window. A missing or unreadable query_log is a ConfigError (exit 2) with the fix. */
export async function readQueryLog(conn: ClickHouseConnection, opts: ReadOptions): Promise<QueryLogRead> {
  const { timeoutMs } = opts;
  const logQueries = conn.logQueries;
  if (opts.flush) {
    try {
      await conn.command('SYSTEM FLUSH LOGS', { timeoutMs, doing: 'SYSTEM FLUSH LOGS' });
    } catch (error) {
      throw new ConfigError(`--flush-logs: ${isDbopsError(error) ? error.message : String(error)}`, {
        hint:
          conn.readonly === 1
            ? `user ${conn.user} is readonly=1, which may not flush: drop --flush-logs (the server flushes every flush_interval_milliseconds, 7.5 s by default)`
            : `user ${conn.user} needs the SYSTEM FLUSH LOGS privilege (GRANT SYSTEM FLUSH LOGS ON *.* TO ${conn.user}), or drop --flush-logs`,
        cause: error,
      });
    }
  }
  // Read at connect; again after a flush, which creates the table on a server that logged nothing yet.
  const columns =
    !opts.flush && conn.queryLogColumns ? conn.queryLogColumns : await columnsOf(conn, 'query_log', timeoutMs);
  const server: QueryLogServer = {
    endpoint: conn.endpoint,
    version: conn.version,
    user: conn.user,
    tls: conn.tls,
    logQueries,
  };
  if (columns.size === 0) {
    const off = logQueries === false ? ` (log_queries is 0 for ${conn.user}'s profile)` : '';
    throw new ConfigError(
      `system.query_log does not exist on ClickHouse ${conn.version} at ${conn.endpoint}: no query has been logged${off}`,
      {
        hint:
          "turn the query log on: <log_queries>1</log_queries> in the users' profile (users.xml; the default before 19.x is 0) and a <query_log> section in the server config; " +
          'the table appears at the first flush (flush_interval_milliseconds, or SYSTEM FLUSH LOGS)',
        details: { logQueries },
      },
    );
  }
  const missing = REQUIRED_COLUMNS.filter((c) => !columns.has(c));
  if (missing.length > 0) {
    throw new OperationError(
      `system.query_log on ClickHouse ${conn.version} lacks the columns ${missing.join(', ')}: dbops cannot read it`,
      {
        hint: 'report this server version to the dbops maintainers',
      },
    );
  }
  const plan = planFor(columns);
  const sql = groupsSql(plan, opts.window);
  let rows: RawGroupRow[];
  try {
    rows = await conn.query<RawGroupRow>(sql, { timeoutMs, doing: 'reading system.query_log' });
  } catch (error) {
    if (isDbopsError(error) && ACCESS_DENIED.test(error.message)) {
      throw new ConfigError(`user ${conn.user} may not read system.query_log: ${error.message}`, {
        hint: `GRANT SELECT ON system.query_log TO ${conn.user} (or run dbops as a user who may)`,
        cause: error,
      });
    }
    throw error;
  }
  return { server, plan, window: opts.window, rows, sql };
}
