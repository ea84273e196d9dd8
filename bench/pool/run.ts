/**
 * `dbops pool --json` with 300 open client connections, against `dbops --version` (start-up) and
 * psql running the equivalent activity queries, all measured in the same run on a private
 * PostgreSQL 18 (max_connections 400). Goal: (pool − version) ≤ 1.5 × psql's whole wall time.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startPostgres } from '../../test/helpers/servers.js';
import { fmt, median, percentile, printTable, timeCommand } from '../lib/measure.js';

const bin = fileURLToPath(new URL('../../bin/dbops.js', import.meta.url));
const runs = Number(process.env.BENCH_RUNS ?? 15);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 300);

// What dbops reads, as one psql script: limits, every client backend, the database's counters,
// pg_stat_statements and the lock waiters' blockers.
const SQL = `
BEGIN READ ONLY;
SET LOCAL statement_timeout = 5000;
SELECT current_setting('server_version'), current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int,
       COALESCE(current_setting('reserved_connections', true)::int, 0), pg_backend_pid(), current_user;
SELECT pid, datname, usename, application_name, host(client_addr), state, wait_event_type, wait_event,
       EXTRACT(EPOCH FROM statement_timestamp() - backend_start) * 1000, EXTRACT(EPOCH FROM statement_timestamp() - xact_start) * 1000,
       EXTRACT(EPOCH FROM statement_timestamp() - state_change) * 1000, EXTRACT(EPOCH FROM statement_timestamp() - query_start) * 1000,
       age(backend_xid), age(backend_xmin), LEFT(query, 1000)
  FROM pg_stat_activity WHERE backend_type = 'client backend' ORDER BY pid;
SELECT xact_commit, xact_rollback, stats_reset FROM pg_stat_database WHERE datname = current_database();
SELECT COALESCE(SUM(calls), 0), COALESCE(SUM(total_exec_time + total_plan_time), 0), COUNT(*) FILTER (WHERE calls > 0 AND (total_exec_time + total_plan_time) / calls > 1000)
  FROM pg_stat_statements(false) WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database());
SELECT w.pid, b FROM pg_stat_activity w, unnest(pg_blocking_pids(w.pid)) b WHERE w.wait_event_type = 'Lock';
COMMIT;
`;

const server = await startPostgres('embedded', { max_connections: 400 });
const clients: pg.Client[] = [];
try {
  const admin = new pg.Client({ connectionString: server.url() });
  await admin.connect();
  await admin.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  await admin.end();
  for (let i = 0; i < CONNECTIONS; i++) {
    const c = new pg.Client({ connectionString: server.url(), application_name: `bench-app-${i % 5}` });
    c.on('error', () => {});
    await c.connect();
    clients.push(c);
  }
  // A few busy ones so the snapshot is not all idle: open transactions.
  for (const c of clients.slice(0, 10)) await c.query('BEGIN; SELECT 1');
  const dir = mkdtempSync(join(tmpdir(), 'dbops-bench-pool-'));
  const sqlFile = join(dir, 'activity.sql');
  writeFileSync(sqlFile, SQL);
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', DATABASE_URL: server.url() };
  delete env.CI;
  const pool = timeCommand(process.execPath, [bin, 'pool', '--json'], { runs, env });
  const version = timeCommand(process.execPath, [bin, '--version'], { runs, env });
  const psql = timeCommand('psql', ['-X', '-q', '-d', server.url(), '-f', sqlFile], { runs, env });
  const row = (name: string, t: number[]) => ({
    command: name,
    'median ms': fmt(median(t)),
    'p90 ms': fmt(percentile(t, 90)),
  });
  printTable([
    row('dbops pool --json', pool),
    row('dbops --version', version),
    row('psql, equivalent queries (reference)', psql),
  ]);
  const added = median(pool) - median(version);
  const ratio = added / median(psql);
  console.log(
    `\n(pool − version) = ${fmt(added)} ms = ${fmt(ratio, 2)} × psql ${fmt(median(psql))} ms (goal <= 1.50) ${ratio <= 1.5 ? 'MET' : 'NOT MET'}   connections=${CONNECTIONS} runs=${runs}`,
  );
} finally {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await server.stop();
}
