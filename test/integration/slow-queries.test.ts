/**
 * slow-queries core against real PostgreSQL 18 (embedded) and 15 (Debian): a known workload of
 * pg_sleep statements, checked against a direct query of pg_stat_statements for this database only
 * (the view is per server and shared by every test database running in parallel).
 */

import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { withReadOnly } from '../../src/db/readonly.js';
import { buildReport, readPgss, resetPgss, snapshotOf } from '../../src/diagnostics/slow-queries.js';
import { OWN_MARK } from '../../src/diagnostics/slow-queries-read.js';
import { createTestDatabase, services, type TestDatabase } from '../helpers/services.js';

/** Three sleepy statements (distinct queryids through distinct shapes) and a fast one. */
const WORKLOAD = {
  slowA: { sql: 'SELECT pg_sleep($1)', args: [0.04], calls: 8 }, // mean 40 ms, total 320
  busyB: { sql: 'SELECT pg_sleep($1), $2::int AS b', args: [0.01, 1], calls: 20 }, // mean 10, total 200
  rareC: { sql: 'SELECT s FROM pg_sleep($1) AS s', args: [0.06], calls: 2 }, // mean 60, total 120
  fastD: { sql: 'SELECT count(*) FROM "User" WHERE email = $1', args: ['nobody@example.com'], calls: 300 },
} as const;
type Name = keyof typeof WORKLOAD;

async function runWorkload(client: pg.Client, times = 1): Promise<void> {
  for (let t = 0; t < times; t++) {
    for (const w of Object.values(WORKLOAD)) {
      for (let i = 0; i < w.calls; i++) await client.query(w.sql, [...w.args]);
    }
  }
}

const find = <T extends { query: string }>(rows: T[], name: Name) => rows.find((r) => r.query === WORKLOAD[name].sql);

const servers = [
  { label: 'PostgreSQL 18', server: 'pg' as const },
  { label: 'PostgreSQL 15', server: 'pg15' as const },
];

describe.each(servers)('slow-queries on $label', ({ server }) => {
  let db: TestDatabase;
  let client: pg.Client;
  const available = () => server === 'pg' || services().pg15 !== null;

  beforeAll(async () => {
    if (!available()) return;
    db = await createTestDatabase({ server });
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
  });
  afterAll(async () => {
    await client?.end();
    await db?.drop();
  });

  it('ranks, counts, averages and marks slow as pg_stat_statements says, for this database only', async (t) => {
    if (!available()) t.skip();
    await runWorkload(client);
    // The test's own reads are not part of the workload: under load their means rival it and would
    // enter the top-N (a superuser may switch tracking off for its session).
    await client.query(`SET pg_stat_statements.track = 'none'`);
    onTestFinished(() => client.query('RESET pg_stat_statements.track').then(() => undefined));
    const read = await readPgss(client, { mode: 'all' }, 10_000);
    expect(read.server.database).toBe(db.name);
    expect(read.server.pgssVersion).toBe(server === 'pg' ? '1.12' : '1.10');
    expect(read.statements.every((s) => s.dbid === read.server.dbid)).toBe(true);
    const slow = { minMeanMs: 20, minCalls: 5 };
    const report = buildReport(read, { sort: 'total', limit: 0, slow, onlySlow: false });
    // Direct query: the truth, for this database only.
    const v = (
      await client.query<{ v: string }>(`SELECT extversion AS v FROM pg_extension WHERE extname = 'pg_stat_statements'`)
    ).rows[0]?.v;
    const total = v === '1.10' || v === '1.12' ? 'total_exec_time + total_plan_time' : 'total_time';
    const direct = await client.query<{ query: string; calls: string; total: number }>(
      `SELECT query, calls, ${total} AS total FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND toplevel`,
    );
    for (const name of Object.keys(WORKLOAD) as Name[]) {
      const mine = find(report.statements, name);
      const truth = find(direct.rows, name);
      expect(mine, name).toBeDefined();
      expect(mine?.calls).toBe(WORKLOAD[name].calls);
      expect(mine?.calls).toBe(Number(truth?.calls));
      // The direct query runs after ours: the workload's counters did not move in between.
      expect(mine?.totalMs).toBeCloseTo(Number(truth?.total), 6);
      expect(mine?.meanMs).toBeCloseTo(Number(truth?.total) / Number(truth?.calls), 6);
    }
    // pg_sleep(s) lasts at least s: means are at least the sleep, and the order is known.
    expect(find(report.statements, 'slowA')?.meanMs).toBeGreaterThanOrEqual(40);
    expect(find(report.statements, 'rareC')?.meanMs).toBeGreaterThanOrEqual(60);
    expect(find(report.statements, 'slowA')?.slow).toBe(true);
    expect(find(report.statements, 'busyB')?.slow).toBe(false); // mean 10 < 20
    expect(find(report.statements, 'rareC')?.slow).toBe(false); // 2 calls < 5
    expect(find(report.statements, 'fastD')?.slow).toBe(false);
    const order = (sort: 'total' | 'mean' | 'calls') =>
      buildReport(read, { sort, limit: 0, slow, onlySlow: false })
        .statements.map((s) => (Object.keys(WORKLOAD) as Name[]).find((n) => WORKLOAD[n].sql === s.query))
        .filter(Boolean);
    expect(order('mean').slice(0, 3)).toEqual(['rareC', 'slowA', 'busyB']);
    expect(order('calls')[0]).toBe('fastD');
    // Total time: the order the server's own totals give (sleeps of 320, 200 and 120 ms overshoot
    // under load, so the nominal order is not a fact; the server's figures are).
    const byTruth = (Object.keys(WORKLOAD) as Name[])
      .map((n) => ({ n, total: Number(find(direct.rows, n)?.total) }))
      .sort((a, b) => b.total - a.total)
      .map((x) => x.n);
    expect(order('total').slice(0, 4)).toEqual(byTruth.slice(0, 4));

    // The server-side top-N path agrees with the full read.
    const top = await readPgss(client, { mode: 'top', sort: 'mean', limit: 3, onlySlow: false, slow }, 10_000);
    const topReport = buildReport(top, { sort: 'mean', limit: 3, slow, onlySlow: false });
    expect(topReport.statements.map((s) => s.query)).toEqual([
      WORKLOAD.rareC.sql,
      WORKLOAD.slowA.sql,
      WORKLOAD.busyB.sql,
    ]);
    expect(topReport.truncated).toBe(true);
    expect(topReport.totals.statements).toBeGreaterThanOrEqual(4);
    const onlySlow = await readPgss(client, { mode: 'top', sort: 'total', limit: 10, onlySlow: true, slow }, 10_000);
    expect(onlySlow.statements.map((s) => s.query)).toContain(WORKLOAD.slowA.sql);
    expect(onlySlow.statements.map((s) => s.query)).not.toContain(WORKLOAD.busyB.sql);
  });

  it('leaves out its own reads: they are in pg_stat_statements, never in the report', async (t) => {
    if (!available()) t.skip();
    await runWorkload(client);
    // Tracking stays on: dbops' reads are counted by the server like any other statement.
    for (let i = 0; i < 3; i++) await readPgss(client, { mode: 'all' }, 10_000);
    const read = await readPgss(
      client,
      { mode: 'top', sort: 'total', limit: 1000, onlySlow: false, slow: { minMeanMs: 20, minCalls: 5 } },
      10_000,
    );
    const own = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query LIKE '%' || $1`,
      [OWN_MARK],
    );
    expect(own.rows[0]?.n).toBeGreaterThanOrEqual(3);
    expect(read.statements.length).toBeGreaterThan(0);
    expect(read.statements.filter((row) => row.query.includes('dbops:slow-queries'))).toEqual([]);
    expect(
      read.statements
        .filter((row) => /FROM pg_stat_statements|pg_postmaster_start_time/.test(row.query))
        .map((row) => row.query),
    ).toEqual([]);
  });

  it('the delta between two snapshots is exactly the workload run between them', async (t) => {
    if (!available()) t.skip();
    await runWorkload(client); // history before the window
    const before = snapshotOf(await readPgss(client, { mode: 'all' }, 10_000));
    await runWorkload(client, 2);
    await client.query('SELECT pg_sleep($1), $2::text AS appeared', [0.001, 'x']);
    const now = await readPgss(client, { mode: 'all' }, 10_000);
    const r = buildReport(now, {
      sort: 'total',
      limit: 0,
      slow: { minMeanMs: 20, minCalls: 100 },
      onlySlow: false,
      since: JSON.parse(JSON.stringify(before)),
    });
    for (const name of Object.keys(WORKLOAD) as Name[]) {
      const s = find(r.statements, name);
      expect(s?.calls, name).toBe(2 * WORKLOAD[name].calls);
      expect(s?.status).toBe('changed');
    }
    expect(find(r.statements, 'slowA')?.meanMs).toBeGreaterThanOrEqual(40);
    expect(find(r.statements, 'slowA')?.meanMs).toBeLessThan(1000);
    expect(r.statements.find((s) => s.query.includes('AS appeared'))).toMatchObject({ calls: 1, status: 'new' });
    expect(r.window.mode).toBe('since-snapshot');
  });

  it('a reset of this database in between: entries restart and are reported as such', async (t) => {
    if (!available()) t.skip();
    await runWorkload(client);
    const before = snapshotOf(await readPgss(client, { mode: 'all' }, 10_000));
    expect((await resetPgss(client, false)).scope).toBe('database');
    await client.query(WORKLOAD.slowA.sql, [...WORKLOAD.slowA.args]);
    const now = await readPgss(client, { mode: 'all' }, 10_000);
    const r = buildReport(now, {
      sort: 'total',
      limit: 0,
      slow: { minMeanMs: 20, minCalls: 100 },
      onlySlow: false,
      since: before,
    });
    // slowA had 8+ calls before, 1 now: counters went down, so the row counts from the reset.
    expect(find(r.statements, 'slowA')).toMatchObject({ calls: 1, status: 'reset' });
    expect(find(r.statements, 'busyB')).toBeUndefined();
    expect(r.disappeared.map((d) => d.query)).toContain(WORKLOAD.busyB.sql);
    expect(r.notes.join('\n')).toMatch(/gone \(reset or evicted\)/);
  });

  it('never carries a role password from the query text into reports or snapshots', async (t) => {
    if (!available()) t.skip();
    const role = `r_${db.name}`;
    await client.query(`CREATE ROLE ${role} LOGIN PASSWORD 'Stmt-Secret-77x'`);
    await client.query(`ALTER ROLE ${role} PASSWORD 'Stmt-Secret-78y'`);
    const read = await readPgss(client, { mode: 'all' }, 10_000);
    const texts = JSON.stringify(snapshotOf(read));
    expect(read.statements.some((s) => /ALTER ROLE/i.test(s.query))).toBe(true);
    expect(texts).not.toMatch(/Stmt-Secret/);
    await client.query(`DROP ROLE ${role}`);
  });

  it('works for a role with only pg_monitor, inside a read-only transaction', async (t) => {
    if (!available()) t.skip();
    await runWorkload(client);
    const port = server === 'pg' ? services().pg.port : (services().pg15?.port ?? 0);
    const monitor = new pg.Client({
      connectionString: `postgresql://dbops_monitor:monitor-secret-Xy9@127.0.0.1:${port}/${db.name}`,
    });
    await monitor.connect();
    try {
      const read = await readPgss(monitor, { mode: 'all' }, 10_000);
      expect(find(read.statements, 'slowA')?.rolname).toBe('postgres');
      expect(read.server.currentUser).toBe('dbops_monitor');
      // The helper really is read-only and times out.
      await expect(withReadOnly(monitor, 10_000, (c) => c.query('CREATE TEMP TABLE x (i int)'))).rejects.toThrow(
        /read-only transaction/,
      );
      await expect(withReadOnly(monitor, 50, (c) => c.query('SELECT pg_sleep(1)'))).rejects.toThrow(
        /statement timeout/,
      );
      // ... and leaves no transaction or timeout behind.
      expect((await monitor.query<{ t: string }>(`SELECT current_setting('statement_timeout') AS t`)).rows[0]?.t).toBe(
        '0',
      );
    } finally {
      await monitor.end();
    }
  });
});

describe('slow-queries: Prisma model mapping on what the example client issues (PostgreSQL 18)', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
  });

  it('maps Prisma SQL to model and operation, from the SQL shape and from sqlcommenter tags', async () => {
    const { PrismaClient } = await import('../../src/generated/prisma/client.js');
    const plain = new PrismaClient({ adapter: new PrismaPg({ connectionString: db.url }) });
    const u = await plain.user.create({ data: { email: 'a@example.com', name: 'A' } });
    await plain.user.findMany({ where: { isActive: true } });
    await plain.user.update({ where: { id: u.id }, data: { name: 'B' } });
    await plain.post.deleteMany({ where: { title: 'none' } });
    await plain.$disconnect();
    // With a tag plugin in the format of @prisma/sqlcommenter-query-insights.
    const tagged = new PrismaClient({
      adapter: new PrismaPg({ connectionString: db.url }),
      comments: [
        (ctx) => ({
          prismaQuery: `${ctx.query.type === 'single' && ctx.query.modelName ? `${ctx.query.modelName}.` : ''}${ctx.query.action}:e30`,
        }),
      ],
    });
    await tagged.order.findFirst({ where: { userId: u.id } });
    await tagged.$disconnect();

    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const r = buildReport(await readPgss(client, { mode: 'all' }, 10_000), {
        sort: 'total',
        limit: 0,
        slow: { minMeanMs: 20, minCalls: 100 },
        onlySlow: false,
      });
      const origins = r.statements
        .filter((s) => s.origin.source !== 'none')
        .map((s) => `${s.origin.source}:${s.origin.model}.${s.origin.operation}`);
      expect(origins).toEqual(
        expect.arrayContaining([
          'sql:User.create',
          'sql:User.findMany',
          'sql:User.update',
          'sql:Post.deleteMany',
          'tag:Order.findFirst',
        ]),
      );
      const tag = r.statements.find((s) => s.origin.source === 'tag');
      expect(tag?.query).toMatch(/FROM "public"\."Order"/);
      expect(tag?.origin.tags.prismaQuery).toBe('Order.findFirst:e30');
    } finally {
      await client.end();
    }
  });
});
