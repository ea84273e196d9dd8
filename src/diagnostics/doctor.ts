/**
 * `dbops doctor`: can each configured component be reached, how fast, which version, over TLS or
 * not, and (PostgreSQL) is pg_stat_statements usable and what may this role do. Returns data.
 */
import type { Client } from 'pg';
import { connectPg, describeEndpoint, isServerFull, SERVER_FULL_HINT } from '../db/pg.js';
import { closeRedis, connectRedis, describeRedis } from '../db/redis.js';
import { type DbopsError, isDbopsError, messageOf } from '../errors.js';
import { loadOriginParser, prismaOrigin } from './prisma-origin.js';
import { QUERY_INSIGHTS_HINT } from './slow-queries.js';

export type { ComponentCheck, ComponentKind } from './doctor-check.js';

import type { ComponentCheck, ComponentKind } from './doctor-check.js';

export interface DoctorReport {
  ok: boolean;
  components: ComponentCheck[];
}

export interface DoctorTargets {
  /** Direct PostgreSQL (DIRECT_DATABASE_URL, or DATABASE_URL when that is direct); none configured: skipped. */
  postgresUrl?: string | undefined;
  /** DATABASE_URL when it differs from the direct URL (usually PgBouncer). */
  pooledUrl?: string | undefined;
  pgbouncerAdminUrl?: string | undefined;
  redisUrl?: string | undefined;
  /** CLICKHOUSE_URL (and its CA); the check and its client load only when set. */
  clickhouse?: { url: string; caCert?: string | undefined } | undefined;
  /** Read replicas (DATABASE_REPLICA_URLS); their check loads only when some are set. */
  replicas?: { name: string; url: string }[] | undefined;
  timeoutMs: number;
}

const ms = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;
const round = (n: number) => Math.round(n * 10) / 10;

function failure(error: unknown): ComponentCheck['error'] {
  const e: DbopsError | undefined = isDbopsError(error) ? error : undefined;
  // A full server answered: it is a finding about the server, not an unreachable one.
  if (isServerFull(error))
    return { message: e ? e.message : messageOf(error), hint: SERVER_FULL_HINT, code: 'SERVER_FULL' };
  return { message: e ? e.message : messageOf(error), hint: e?.hint, code: e?.code ?? 'FAILED' };
}

export async function runDoctor(targets: DoctorTargets): Promise<DoctorReport> {
  const checks: Array<Promise<ComponentCheck>> = [];
  if (targets.postgresUrl) checks.push(checkPostgres('postgres', 'PostgreSQL', targets.postgresUrl, targets.timeoutMs));
  if (targets.pooledUrl && targets.pooledUrl !== targets.postgresUrl) {
    checks.push(
      checkPostgres('postgres-via-pgbouncer', 'PostgreSQL via PgBouncer', targets.pooledUrl, targets.timeoutMs),
    );
  }
  if (targets.pgbouncerAdminUrl) checks.push(checkPgbouncer(targets.pgbouncerAdminUrl, targets.timeoutMs));
  if (targets.redisUrl) checks.push(checkRedis(targets.redisUrl, targets.timeoutMs));
  const ch = targets.clickhouse;
  if (ch) checks.push(import('./clickhouse/doctor.js').then((m) => m.checkClickHouse(ch, targets.timeoutMs)));
  for (const r of targets.replicas ?? [])
    checks.push(import('./replicas.js').then((m) => m.checkReplica(r, targets.timeoutMs)));
  const components = await Promise.all(checks);
  return { ok: components.every((c) => c.ok), components };
}

async function checkPostgres(
  component: ComponentKind,
  label: string,
  url: string,
  timeoutMs: number,
): Promise<ComponentCheck> {
  const check: ComponentCheck = {
    component,
    label,
    endpoint: describeEndpoint(url),
    ok: false,
    details: {},
    warnings: [],
  };
  let client: Client | undefined;
  try {
    const t0 = process.hrtime.bigint();
    client = await connectPg({
      connectionString: url,
      timeoutMs,
      queryTimeoutMs: timeoutMs,
      label,
      applicationName: 'dbops doctor',
    });
    check.connectMs = round(ms(t0));
    const t1 = process.hrtime.bigint();
    await client.query('SELECT 1');
    check.roundTripMs = round(ms(t1));
    const info = await client.query<{ version: string; db: string; usr: string; tls: boolean | null }>(
      `SELECT current_setting('server_version') AS version, current_database() AS db, current_user AS usr,
              (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS tls`,
    );
    const row = info.rows[0];
    check.version = row?.version;
    check.tls = Boolean(row?.tls);
    check.details.database = row?.db;
    check.details.user = row?.usr;
    check.ok = true;
    if (component === 'postgres') await describePostgres(client, check);
  } catch (error) {
    if (check.connectMs === undefined) check.error = failure(error);
    else check.warnings.push(`query failed: ${messageOf(error)}`);
  } finally {
    await client?.end().catch(() => {});
  }
  return check;
}

/** pg_stat_statements availability and the role's relevant privileges; never fails the check. */
async function describePostgres(client: Client, check: ComponentCheck): Promise<void> {
  const priv = await client.query<Record<string, boolean>>(
    `SELECT r.rolsuper AS superuser,
            pg_has_role(current_user, 'pg_monitor', 'MEMBER') AS pg_monitor,
            pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') AS pg_read_all_stats,
            has_database_privilege(current_database(), 'CREATE') AS create_on_database,
            has_schema_privilege('public', 'CREATE') AS create_on_public
       FROM pg_roles r WHERE r.rolname = current_user`,
  );
  check.details.privileges = priv.rows[0] ?? {};
  const ext = await client.query<{ installed: string | null; available: string | null }>(
    `SELECT (SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements') AS installed,
            (SELECT default_version FROM pg_available_extensions WHERE name = 'pg_stat_statements') AS available`,
  );
  const installed = ext.rows[0]?.installed ?? null;
  const pss: Record<string, unknown> = {
    installed: installed !== null,
    version: installed,
    availableVersion: ext.rows[0]?.available ?? null,
  };
  try {
    const pre = await client.query<{ libs: string }>(`SELECT current_setting('shared_preload_libraries') AS libs`);
    pss.preloaded = /(^|[,\s])"?pg_stat_statements"?($|[,\s])/.test(pre.rows[0]?.libs ?? '');
  } catch {
    pss.preloaded = null;
  }
  if (installed !== null) {
    try {
      await client.query('SELECT 1 FROM pg_stat_statements LIMIT 1');
      pss.readable = true;
    } catch (error) {
      pss.readable = false;
      pss.error = messageOf(error);
    }
  }
  if (pss.readable === true) {
    const labels = await prismaLabels(client).catch(() => undefined);
    if (labels) {
      pss.prismaStatements = labels.prisma;
      pss.prismaStatementsWithComments = labels.tagged;
      if (labels.prisma > 0 && labels.tagged === 0) {
        check.warnings.push(
          `${labels.prisma} Prisma statements carry no query-insights comment: ${QUERY_INSIGHTS_HINT}`,
        );
      }
    }
  }
  check.details.pgStatStatements = pss;
  if (pss.preloaded === false)
    check.warnings.push(
      'pg_stat_statements is not in shared_preload_libraries: slow-query reports need it (restart required)',
    );
  else if (installed === null)
    check.warnings.push(
      'pg_stat_statements is not installed in this database: run CREATE EXTENSION pg_stat_statements',
    );
  else if (pss.readable === false) check.warnings.push(`pg_stat_statements is not readable: ${String(pss.error)}`);
}

/** This database's statements that are Prisma's (by their shape or comment), and how many carry a query-insights comment. */
async function prismaLabels(client: Client): Promise<{ prisma: number; tagged: number }> {
  await loadOriginParser();
  const rows = await client.query<{ query: string }>(
    `SELECT query FROM pg_stat_statements
      WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
      ORDER BY calls DESC LIMIT 1000`,
  );
  let prisma = 0;
  let tagged = 0;
  for (const r of rows.rows) {
    const o = prismaOrigin(r.query);
    if (o.source === 'tag' && o.model) tagged++;
    if (o.source !== 'none' && (o.source === 'sql' || o.model)) prisma++;
  }
  return { prisma, tagged };
}

async function checkPgbouncer(url: string, timeoutMs: number): Promise<ComponentCheck> {
  const check: ComponentCheck = {
    component: 'pgbouncer-admin',
    label: 'PgBouncer admin console',
    endpoint: describeEndpoint(url),
    ok: false,
    details: {},
    warnings: [],
  };
  let client: Client | undefined;
  try {
    const t0 = process.hrtime.bigint();
    client = await connectPg({
      connectionString: url,
      timeoutMs,
      queryTimeoutMs: timeoutMs,
      label: 'PgBouncer',
      adminConsole: true,
    });
    check.connectMs = round(ms(t0));
    const t1 = process.hrtime.bigint();
    // The admin console speaks only the simple query protocol: no parameters, no statement names.
    const res = await client.query('SHOW VERSION');
    check.roundTripMs = round(ms(t1));
    const first = res.rows[0] as Record<string, string> | undefined;
    check.version = first ? String(Object.values(first)[0]).replace(/^PgBouncer\s*/i, '') : undefined;
    check.tls = /sslmode=(require|verify)/.test(url);
    check.ok = true;
  } catch (error) {
    check.error = failure(error);
  } finally {
    await client?.end().catch(() => {});
  }
  return check;
}

async function checkRedis(url: string, timeoutMs: number): Promise<ComponentCheck> {
  const check: ComponentCheck = {
    component: 'redis',
    label: 'Redis',
    endpoint: describeRedis(url),
    ok: false,
    details: {},
    warnings: [],
  };
  try {
    const t0 = process.hrtime.bigint();
    const client = await connectRedis({ url, timeoutMs, commandTimeoutMs: timeoutMs, connectionName: 'dbops-doctor' });
    check.connectMs = round(ms(t0));
    try {
      const t1 = process.hrtime.bigint();
      await client.ping();
      check.roundTripMs = round(ms(t1));
      const info = await client.info('server');
      const cluster = await client.info('cluster');
      check.version = /redis_version:(\S+)/.exec(info)?.[1];
      check.details.mode = /redis_mode:(\S+)/.exec(info)?.[1];
      check.details.cluster = /cluster_enabled:1/.test(cluster);
      check.tls = url.startsWith('rediss:');
      check.ok = true;
    } finally {
      await closeRedis(client);
    }
  } catch (error) {
    check.error = failure(error);
  }
  return check;
}
