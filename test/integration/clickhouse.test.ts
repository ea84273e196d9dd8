/**
 * ClickHouse on a real server (Debian's clickhouse-server, 18.16 here): every figure of the
 * slow-query report against the server's own system.query_log rows, the masking of credentials
 * the server logs verbatim, the column choice on a real server, running queries in the pool
 * snapshot, the doctor check, and a server whose query log is off.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ClickHouseConnection, connectClickHouse } from '../../src/db/clickhouse.js';
import { collectClickHousePool } from '../../src/diagnostics/clickhouse/activity.js';
import { checkClickHouse } from '../../src/diagnostics/clickhouse/doctor.js';
import { groupsSql, planFor, type RawGroupRow, readQueryLog } from '../../src/diagnostics/clickhouse/query-log-read.js';
import { buildClickHouseReport, type QueryGroup } from '../../src/diagnostics/clickhouse/slow-report.js';
import { ConfigError } from '../../src/errors.js';
import { type ClickHouseServer, MONITOR_PASSWORD, startClickHouse } from '../helpers/clickhouse.js';

const SECRETS = { mysql: 'MySqlPw-4kT9x', url: 'UrlPw-8mQ2w', syntax: 'SyntaxPw-1zV6', s3: 'S3Secret-5hN3' };
const SLOW = { minMeanMs: 20, minCalls: 100 };

let server: ClickHouseServer;
let conn: ClickHouseConnection;
let since: number;

async function runWorkload(s: ClickHouseServer): Promise<void> {
  await s.exec('CREATE TABLE events (id UInt64, kind String) ENGINE = MergeTree ORDER BY id');
  await s.exec("INSERT INTO events SELECT number, concat('k', toString(number % 10)) FROM numbers(200000)");
  for (let i = 0; i < 40; i++)
    await s.exec(`SELECT count() FROM events WHERE id % 7 = ${i % 7} AND kind = 'k${i % 10}'`);
  for (let i = 0; i < 6; i++) await s.exec(`SELECT sleep(0.0${2 + (i % 3)})`);
  for (let i = 0; i < 3; i++) await s.exec(`SELECT * FROM dbops_missing_table WHERE a = ${i}`).catch(() => {});
  // Credentials in table functions and in a syntax error: 18.16 logs them verbatim.
  await s.exec(`SELECT * FROM mysql('127.0.0.1:1', 'db', 'tbl', 'user', '${SECRETS.mysql}')`).catch(() => {});
  await s.exec(`SELECT * FROM url('http://u:${SECRETS.url}@127.0.0.1:1/x', CSV, 'a String')`).catch(() => {});
  await s.exec(`SELEC 'x', '${SECRETS.syntax}'`).catch(() => {});
  await s.exec(`SELECT * FROM mysql('127.0.0.1:1', 'db', 'tbl', 'AKIA', '${SECRETS.s3}'`).catch(() => {});
  await s.flushLogs();
}

beforeAll(async () => {
  server = await startClickHouse({ tls: true });
  since = Number((await server.query<{ t: number }>('SELECT toUInt32(toUnixTimestamp(now())) - 2 AS t'))[0]?.t);
  await runWorkload(server);
  conn = await connectClickHouse({ url: server.url('monitor'), connectTimeoutMs: 5000, queryTimeoutMs: 10_000 });
});

afterAll(async () => {
  await conn?.close();
  await server?.stop();
});

async function report(c: ClickHouseConnection = conn, flush = true) {
  const read = await readQueryLog(c, { window: { from: since, to: c.serverNow + 5 }, flush, timeoutMs: 10_000 });
  return { read, report: buildClickHouseReport(read, { sort: 'total', limit: 0, slow: SLOW, onlySlow: false }) };
}

const groupOf = (groups: QueryGroup[], text: string) => {
  const g = groups.find((x) => x.query === text);
  if (!g) throw new Error(`no group "${text}" in ${groups.map((x) => x.query).join(' | ')}`);
  return g;
};

interface LogRow {
  query_duration_ms: string | number;
  read_rows: string | number;
  read_bytes: string | number;
  result_rows: string | number;
  memory_usage: string | number;
  type: number;
  user: string;
  query: string;
  exception: string;
}

/** The server's own rows and quantiles for queries whose text matches a LIKE pattern. */
async function logRows(like: string) {
  const where = `type != 1 AND event_time >= toDateTime(${since}) AND query LIKE '${like}' AND query NOT LIKE '%system.query_log%'`;
  const rows = await server.query<LogRow>(
    `SELECT query_duration_ms, read_rows, read_bytes, result_rows, memory_usage, type, user, query, exception FROM system.query_log WHERE ${where}`,
  );
  const [q] = await server.query<{ q: number[] }>(
    `SELECT quantilesExact(0.5, 0.95, 0.99)(query_duration_ms) AS q FROM system.query_log WHERE ${where}`,
  );
  return { rows, q: q?.q ?? [] };
}

const sum = (rows: LogRow[], k: keyof LogRow) => rows.reduce((s, r) => s + Number(r[k]), 0);

describe('slow-queries --source clickhouse on a real server', () => {
  it('chooses the columns this server has: 18.16 groups by text, type is a UInt8, no tables column', async () => {
    const cols = new Map(
      (
        await server.query<{ name: string; type: string }>(
          "SELECT name, type FROM system.columns WHERE database = 'system' AND table = 'query_log'",
        )
      ).map((r) => [r.name, r.type]),
    );
    expect(planFor(cols)).toEqual({
      grouping: 'text',
      typeIsEnum: false,
      tables: false,
      exceptionCode: false,
      preKey: true,
    });
  });

  it("reports every figure of a group as the server's own query_log rows give it", async () => {
    const { report: r } = await report();
    const g = groupOf(r.statements, 'SELECT count() FROM events WHERE id % ? = ? AND kind = ?');
    const { rows, q } = await logRows('SELECT count() FROM events WHERE id %%');
    expect(rows).toHaveLength(40);
    expect(g.calls).toBe(40);
    expect(g.failed).toBe(0);
    expect(g.totalMs).toBe(sum(rows, 'query_duration_ms'));
    expect(g.meanMs).toBeCloseTo(sum(rows, 'query_duration_ms') / 40, 9);
    expect(g.maxMs).toBe(Math.max(...rows.map((x) => Number(x.query_duration_ms))));
    expect([g.p50Ms, g.p95Ms, g.p99Ms]).toEqual(q.map(Number));
    expect(g.readRows).toBe(sum(rows, 'read_rows'));
    expect(g.readRows).toBeGreaterThan(0);
    expect(g.readBytes).toBe(sum(rows, 'read_bytes'));
    expect(g.resultRows).toBe(sum(rows, 'result_rows'));
    expect(g.peakMemoryBytes).toBe(Math.max(...rows.map((x) => Number(x.memory_usage))));
    expect(g.users).toEqual(['default']);
    expect(g.tables).toBeNull();
    expect(r.totals.totalMs).toBe(r.statements.reduce((s, x) => s + x.totalMs, 0));
    expect(g.sharePct).toBeCloseTo((100 * g.totalMs) / r.totals.totalMs, 9);
  });

  it('merges texts that differ only in literals, with percentiles over all their executions', async () => {
    const { report: r } = await report();
    const g = groupOf(r.statements, 'SELECT sleep(?)');
    const { rows, q } = await logRows('SELECT sleep(0.0%');
    expect(new Set(rows.map((x) => x.query)).size).toBe(3);
    expect(g.calls).toBe(6);
    expect(g.totalMs).toBe(sum(rows, 'query_duration_ms'));
    expect([g.p50Ms, g.p95Ms, g.p99Ms]).toEqual(q.map(Number));
  });

  it('counts failures and shows the newest error', async () => {
    const { report: r } = await report();
    const g = groupOf(r.statements, 'SELECT * FROM dbops_missing_table WHERE a = ?');
    const { rows } = await logRows('SELECT * FROM dbops_missing_table%');
    expect(rows.every((x) => Number(x.type) === 3)).toBe(true);
    expect(g.calls).toBe(3);
    expect(g.failed).toBe(3);
    expect(g.lastError?.code).toBe(60);
    expect(g.lastError?.message).toMatch(/dbops_missing_table doesn't exist/);
  });

  it('logs credentials verbatim on this server, and the report shows none of them', async () => {
    const raw = await server.query<{ query: string; exception: string }>(
      `SELECT query, exception FROM system.query_log WHERE event_time >= toDateTime(${since}) AND (query LIKE '%Pw-%' OR query LIKE '%S3Secret%') AND query NOT LIKE '%system.query_log%'`,
    );
    const logged = JSON.stringify(raw);
    for (const s of Object.values(SECRETS)) expect(logged).toContain(s);
    // The server's own syntax-error message quotes the query, secret included.
    expect(raw.some((x) => x.exception.includes(SECRETS.syntax))).toBe(true);
    const { report: r } = await report();
    const doc = JSON.stringify(r);
    for (const s of Object.values(SECRETS)) expect(doc).not.toContain(s);
    expect(r.statements.map((x) => x.query)).toEqual(
      expect.arrayContaining(['SELECT * FROM mysql(?..)', 'SELECT * FROM url(?, CSV, ?)']),
    );
    const syntax = r.statements.find((x) => x.query.startsWith('SELEC '));
    expect(syntax?.lastError?.message).toMatch(
      /Syntax error: failed at position \d+ \(the quoted query is not shown\)/,
    );
  });

  it("the server's pre-grouping of old servers merges only what dbops' lexer merges (a corpus of edge cases)", async () => {
    const corpus = [
      (n: number) => `SELECT ${n}`,
      (n: number) => `SELECT ${n}, ${n + 1}, -${n}`,
      (n: number) => `SELECT 0x${(n + 10).toString(16)}, 0b1${n % 2}, ${n}.5e3, ${n}e, .${n}`,
      (n: number) => `SELECT tupleElement(tuple(${n}), 1) AS t${n % 2}`,
      (n: number) => `SELECT ${n} AS col_${n}`,
      (n: number) => `SELECT 1_00${n}, x${n} FROM (SELECT 1 AS x0, 2 AS x1)`,
      (n: number) => `SELECT '${n}', 'it''s ${n}', '${n}''', ${n}`,
      (n: number) => `SELECT 'a'${n}`,
      (n: number) => `SELECT '${n}`,
      (n: number) => `SELECT /* comment ${n} */ ${n}`,
      (n: number) => `SELECT "c${n}" FROM (SELECT 1 AS "c${n}")`,
      (n: number) => `SELECT 'é${n}', \`x\``,
      (n: number) => `SELECT 'back\\slash ${n}'`,
      (n: number) => `SELECT $$${n}$$`,
      (n: number) => `SELECT   ${n}  ,  ${n}`,
      (n: number) => `SELECT [${n}, ${n}, ${n}][1] + ${n}.${n}.${n}`,
    ];
    for (const make of corpus) for (const n of [1, 2, 7]) await server.exec(make(n)).catch(() => {});
    await server.flushLogs();
    const groups = async (preKey: boolean) => {
      const r = await readQueryLog(conn, {
        window: { from: since, to: conn.serverNow + 60 },
        flush: false,
        timeoutMs: 10_000,
      });
      const plan = { ...r.plan, preKey };
      const rows = await conn.query<RawGroupRow>(groupsSql(plan, r.window), { timeoutMs: 10_000 });
      const report = buildClickHouseReport(
        { ...r, plan, rows },
        { sort: 'total', limit: 0, slow: SLOW, onlySlow: false },
      );
      return { rows, byText: new Map(report.statements.map((g) => [g.query, g.calls])) };
    };
    const exact = await groups(false);
    const keyed = await groups(true);
    // Fewer rows from the server: texts that differ in literals only are merged there...
    expect(keyed.rows.length).toBeLessThan(exact.rows.length);
    const calls = (key: string) => Number(keyed.rows.find((r) => r.pre_key === key)?.calls);
    expect(calls('SELECT ?, ?, -?')).toBe(3);
    expect(calls('SELECT ?, ?, ?, ?')).toBe(3);
    expect(calls("SELECT '?")).toBe(3);
    // ...texts the patterns cannot read exactly are left to dbops' lexer...
    expect(keyed.rows.filter((r) => r.pre_key?.includes('/* comment')).length).toBe(3);
    // ...and the groups after dbops' lexer are the same either way.
    const mine = (m: Map<string, number>) =>
      new Map([...m].filter(([q]) => q.includes('SELECT') && !q.includes('query_log')));
    expect(mine(keyed.byText)).toEqual(mine(exact.byText));
  });

  it('works for a readonly=1 user, who may not set max_execution_time', async () => {
    const ro = await connectClickHouse({ url: server.url('ro'), connectTimeoutMs: 5000, queryTimeoutMs: 10_000 });
    try {
      expect(ro.readonly).toBe(1);
      // A readonly user may not flush the logs either: they were flushed by the workload.
      const { report: r } = await report(ro, false);
      expect(groupOf(r.statements, 'SELECT count() FROM events WHERE id % ? = ? AND kind = ?').calls).toBe(40);
    } finally {
      await ro.close();
    }
  });

  it('ranks by the sort key', async () => {
    const { read } = await report();
    const r = buildClickHouseReport(read, { sort: 'calls', limit: 2, slow: SLOW, onlySlow: false });
    expect(r.statements[0]?.calls).toBe(40);
    expect(r.truncated).toBe(true);
  });
});

describe('ClickHouse in pool and doctor', () => {
  it('lists a running query with its elapsed time, leaves its own out, and reports it as long', async () => {
    const marker = `long_${Date.now()}`;
    const running = server.exec(`SELECT sleep(3), '${marker}'`);
    let snap = await collectClickHousePool(conn, {
      timeoutMs: 5000,
      thresholds: { longMs: 300, headroomWarnRatio: 0.1 },
    });
    // Wait until the server itself reports the query past the threshold (no wall-clock assertion).
    for (let i = 0; i < 200 && !snap.running.some((q) => q.query.includes('sleep') && q.elapsedMs >= 300); i++) {
      await new Promise((r) => setTimeout(r, 50));
      snap = await collectClickHousePool(conn, {
        timeoutMs: 5000,
        thresholds: { longMs: 300, headroomWarnRatio: 0.1 },
      });
    }
    const q = snap.running.find((x) => x.query === 'SELECT sleep(?), ?');
    expect(q?.user).toBe('default');
    expect(q?.kill).toBe(`KILL QUERY WHERE query_id = '${q?.queryId}';`);
    expect(snap.running.some((x) => x.query.includes('system.processes'))).toBe(false);
    expect(snap.findings.find((f) => f.code === 'clickhouse-long-running')?.statements).toContain(q?.kill);
    // 18.16 has no system.server_settings: the limits are unknown, and said so.
    expect(snap.limits).toEqual({ maxConnections: null, maxConcurrentQueries: null, source: null });
    expect(snap.findings.map((f) => f.code)).toContain('clickhouse-limits-unknown');
    expect(snap.connections.http).toBeGreaterThanOrEqual(1);
    expect(snap.ok).toBe(true);
    await running;
  });

  it('doctor: reachable, version, TLS over https with the CA, query log on, system tables readable', async () => {
    const plain = await checkClickHouse({ url: server.url('monitor') }, 5000);
    expect(plain.ok).toBe(true);
    expect(plain.version).toBe('18.16.1');
    expect(plain.tls).toBe(false);
    expect(plain.details.queryLog).toEqual({ exists: true, logQueries: true, readable: true });
    expect(plain.details.systemTables).toEqual({ query_log: true, processes: true, metrics: true, settings: true });
    const tls = await checkClickHouse(
      { url: server.url('monitor', { https: true }), caCert: server.caCert ?? undefined },
      5000,
    );
    expect(tls.ok).toBe(true);
    expect(tls.tls).toBe(true);
    const untrusted = await checkClickHouse({ url: server.url('monitor', { https: true }) }, 5000);
    expect(untrusted.ok).toBe(false);
    expect(untrusted.error?.message).toMatch(/TLS failed/);
    const nolog = await checkClickHouse({ url: server.url('nolog') }, 5000);
    expect(nolog.warnings.join('\n')).toMatch(/log_queries is 0 for nolog/);
    expect(JSON.stringify([plain, tls, untrusted])).not.toContain(MONITOR_PASSWORD);
  });
});

describe('a server whose query log is off', () => {
  it('is a configuration error (exit 2) that says how to turn it on', async () => {
    const off = await startClickHouse({ queryLog: false });
    const c = await connectClickHouse({ url: off.url('monitor'), connectTimeoutMs: 5000, queryTimeoutMs: 10_000 });
    try {
      await off.exec('SELECT 1');
      const error = await readQueryLog(c, {
        window: { from: c.serverNow - 60, to: c.serverNow },
        flush: true,
        timeoutMs: 5000,
      }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).exitCode).toBe(2);
      expect((error as ConfigError).message).toMatch(/system\.query_log does not exist .*log_queries is 0 for monitor/);
      expect((error as ConfigError).hint).toMatch(/log_queries/);
    } finally {
      await c.close();
      await off.stop();
    }
  });
});
