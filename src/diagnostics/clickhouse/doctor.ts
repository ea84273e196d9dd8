/**
 * `dbops doctor` for ClickHouse: reachable (connect + login), round trip, version, TLS, whether
 * queries are logged (log_queries for this user, system.query_log present), and which system
 * tables this user may read. Only an unreachable server fails the check; the rest are warnings.
 */
import { connectClickHouse, describeClickHouse, shortMessage } from '../../db/clickhouse.js';
import { isDbopsError, messageOf } from '../../errors.js';
import type { ComponentCheck } from '../doctor-check.js';

/** The system tables dbops reads: query_log (slow-queries), processes and metrics (pool), settings. */
export const SYSTEM_TABLES = ['query_log', 'processes', 'metrics', 'settings'] as const;

export async function checkClickHouse(
  target: { url: string; caCert?: string | undefined },
  timeoutMs: number,
): Promise<ComponentCheck> {
  const check: ComponentCheck = {
    component: 'clickhouse',
    label: 'ClickHouse',
    endpoint: describeClickHouse(target.url),
    ok: false,
    details: {},
    warnings: [],
  };
  let conn: Awaited<ReturnType<typeof connectClickHouse>> | undefined;
  try {
    conn = await connectClickHouse({
      url: target.url,
      caCert: target.caCert,
      connectTimeoutMs: timeoutMs,
      queryTimeoutMs: timeoutMs,
      application: 'dbops doctor',
    });
  } catch (error) {
    check.error = {
      message: isDbopsError(error) ? error.message : messageOf(error),
      hint: isDbopsError(error) ? error.hint : undefined,
      code: isDbopsError(error) ? error.code : 'FAILED',
    };
    return check;
  }
  try {
    check.connectMs = Math.round(conn.connectMs * 10) / 10;
    const t1 = process.hrtime.bigint();
    await conn.query('SELECT 1', { doing: 'SELECT 1' });
    check.roundTripMs = Math.round((Number(process.hrtime.bigint() - t1) / 1e6) * 10) / 10;
    check.version = conn.version;
    check.tls = conn.tls;
    check.ok = true;
    check.details.user = conn.user;
    check.details.database = conn.database;
    check.details.readonly = conn.readonly;
    const readable: Record<string, boolean> = {};
    const errors: Record<string, string> = {};
    for (const table of SYSTEM_TABLES) {
      try {
        await conn.query(`SELECT * FROM system.${table} LIMIT 0`, { doing: `reading system.${table}` });
        readable[table] = true;
      } catch (error) {
        readable[table] = false;
        errors[table] = isDbopsError(error) ? error.message : shortMessage(error);
      }
    }
    // A missing query_log is not a missing right: the table appears at the first logged query.
    const present = await conn.query<{ name: string }>(
      "SELECT name FROM system.tables WHERE database = 'system' AND name IN ('query_log', 'server_settings')",
      {
        doing: 'reading system.tables',
      },
    );
    const queryLogExists = present.some((r) => r.name === 'query_log');
    const logQueries = conn.logQueries;
    check.details.queryLog = {
      exists: queryLogExists,
      logQueries,
      readable: queryLogExists ? readable.query_log : null,
    };
    check.details.systemTables = readable;
    check.details.serverSettings = present.some((r) => r.name === 'server_settings');
    if (!queryLogExists) {
      check.warnings.push(
        "system.query_log does not exist: no query has been logged (turn log_queries on in the users' profile); slow-queries --source clickhouse needs it",
      );
    } else if (!readable.query_log) check.warnings.push(`system.query_log is not readable: ${errors.query_log}`);
    if (logQueries === false)
      check.warnings.push(
        `log_queries is 0 for ${conn.user}'s profile: queries of users with that profile are not logged`,
      );
    for (const t of SYSTEM_TABLES)
      if (t !== 'query_log' && readable[t] === false) check.warnings.push(`system.${t} is not readable: ${errors[t]}`);
  } catch (error) {
    check.warnings.push(`query failed: ${messageOf(error)}`);
  } finally {
    await conn.close().catch(() => {});
  }
  return check;
}
