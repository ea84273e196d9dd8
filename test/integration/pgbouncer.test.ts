import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectPg } from '../../src/db/pg.js';
import { readPgBouncer } from '../../src/diagnostics/pgbouncer.js';
import { collectPoolReport } from '../../src/diagnostics/pool.js';
import { Sessions } from '../helpers/pool-sessions.js';
import { type PgBouncerServer, startPgBouncer } from '../helpers/servers.js';
import { createTestDatabase, services, type TestDatabase } from '../helpers/services.js';

async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('PgBouncer with pool size 1 and three concurrent clients', () => {
  let db: TestDatabase;
  let bouncer: PgBouncerServer;
  let direct: pg.Client;
  let admin: pg.Client;
  const sessions = new Sessions();
  let holderPid: number;

  beforeAll(async () => {
    db = await createTestDatabase({ empty: true });
    bouncer = await startPgBouncer(services().pg.port, { default_pool_size: 1 });
    direct = new pg.Client({ connectionString: db.url });
    await direct.connect();
    admin = await connectPg({
      connectionString: bouncer.adminUrl,
      timeoutMs: 5000,
      adminConsole: true,
      label: 'PgBouncer',
    });
    // Client 1 takes the only server connection and keeps a transaction open.
    const holder = await sessions.open(bouncer.url(db.name), 'holder-app');
    await holder.query('BEGIN');
    holderPid = Number((await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
    for (const name of ['waiter-1', 'waiter-2']) {
      const c = new pg.Client({ connectionString: bouncer.url(db.name), application_name: name });
      c.on('error', () => {});
      await c.connect();
      sessions.adopt(c);
      sessions.background(c, 'SELECT 1');
    }
    await waitFor(
      async () =>
        (await admin.query('SHOW POOLS')).rows.some((r) => r.database === db.name && Number(r.cl_waiting) === 2),
      'two waiting clients',
    );
    await new Promise((r) => setTimeout(r, 100));
  });
  afterAll(async () => {
    await admin?.end().catch(() => {});
    await sessions.close();
    await direct?.end();
    await bouncer?.stop();
    await db?.drop();
  });

  it('reports the waiting clients and their wait, joined to the backend that holds the pool', async () => {
    const r = await collectPoolReport(
      direct,
      { client: admin },
      { queryTimeoutMs: 5000, thresholds: { longMs: 3_600_000 } },
    );
    if (!r.pgbouncer || !('pools' in r.pgbouncer)) throw new Error('no PgBouncer view');
    const pool = r.pgbouncer.pools.find((p) => p.database === db.name);
    expect(pool).toMatchObject({ clWaiting: 2, clActive: 1, svActive: 1, poolMode: 'transaction' });
    expect(pool?.maxWaitMs).toBeGreaterThanOrEqual(100);
    expect(pool?.backends).toHaveLength(1);
    expect(pool?.backends[0]).toMatchObject({
      pid: holderPid,
      state: 'idle in transaction',
      application: 'holder-app',
    });
    expect(pool?.explanation).toMatch(
      new RegExp(
        `^2 clients waiting on pool ${db.name}/postgres \\(longest .+\\) because 1 backend idle in transaction from app=holder-app \\(pid ${holderPid}`,
      ),
    );
    expect(r.pool.waiting).toBeGreaterThanOrEqual(2);
    // Who waits and who holds: SHOW CLIENTS grouped by state, application, user and address.
    const waiting = pool?.clientGroups.filter((g) => g.state === 'waiting') ?? [];
    expect(waiting.map((g) => g.applicationName).sort()).toEqual(['waiter-1', 'waiter-2']);
    for (const g of waiting) {
      expect(g).toMatchObject({ count: 1, user: 'postgres', addr: '127.0.0.1', linked: 0 });
      expect(g.longestWaitMs).toBeGreaterThanOrEqual(100);
    }
    const holding = pool?.clientGroups.find((g) => g.applicationName === 'holder-app');
    expect(holding).toMatchObject({ state: 'active', count: 1, linked: 1, pids: [holderPid] });
    const holderClient = pool?.clients.find((c) => c.applicationName === 'holder-app');
    expect(holderClient?.server?.backend).toMatchObject({ pid: holderPid, state: 'idle in transaction' });
    expect(pool?.explanation).toMatch(
      /; 1 of app=waiter-\d user postgres from 127\.0\.0\.1 up to \d.+, 1 of app=waiter-\d user postgres from 127\.0\.0\.1 up to \d.+\) because/,
    );
    expect(r.pgbouncer.config).toMatchObject({ defaultPoolSize: 1, maxClientConn: 500, poolMode: 'transaction' });
    const f = r.findings.find((x) => x.code === 'pgbouncer-clients-waiting' && x.message.includes(db.name));
    expect(f?.severity).toBe('warning');
    expect(f?.pids).toEqual([holderPid]);
    expect(f?.suggestion).toMatch(/idle_transaction_timeout/);
    expect(r.findings.find((x) => x.code === 'pgbouncer-pool-mode')).toBeUndefined();
  });

  it('a wait past 5 s is critical', async () => {
    await new Promise((res) => setTimeout(res, 5100));
    const r = await collectPoolReport(
      direct,
      { client: admin },
      { queryTimeoutMs: 5000, thresholds: { longMs: 3_600_000 } },
    );
    const f = r.findings.find((x) => x.code === 'pgbouncer-clients-waiting' && x.message.includes(db.name));
    expect(f?.severity).toBe('critical');
    expect(r.ok).toBe(false);
  });

  it('the capacity budget uses max_client_conn and the pool sizes, against PostgreSQL headroom', async () => {
    const r = await collectPoolReport(
      direct,
      { client: admin },
      { queryTimeoutMs: 5000, budget: { appInstances: 3, appPoolSize: 10, surge: 2, pgbouncerInstances: 1 } },
    );
    expect(r.budget?.appConnections).toBe(60);
    expect(r.budget?.pgbouncerClientLimit).toBe(500);
    // One (database, user) pool exists on this private PgBouncer: pool_size 1 + reserve 0.
    expect(r.budget?.pgbouncerServerMax).toBe(1);
    expect(r.budget?.lines.join('\n')).toMatch(/3 instances × pool 10 × surge 2 = 60/);
    expect(r.budget?.checks.find((c) => c.id === 'app-vs-max-client-conn')?.ok).toBe(true);
    expect(r.budget?.checks.find((c) => c.id === 'pgbouncer-vs-postgres')?.ok).toBe(true);
  });

  it('a session pool mode is flagged for a Prisma application', async () => {
    await bouncer.reload({ pool_mode: 'session' });
    try {
      const raw = await readPgBouncer(admin, 5000);
      expect(raw.error).toBeNull();
      const r = await collectPoolReport(direct, { client: admin }, { queryTimeoutMs: 5000 });
      expect(r.findings.find((x) => x.code === 'pgbouncer-pool-mode')?.message).toMatch(
        /pool mode is session.*transaction mode/,
      );
    } finally {
      await bouncer.reload({ pool_mode: 'transaction' });
    }
  });

  it('a misused console (extended protocol) does not crash: the error becomes data', async () => {
    const victim = await connectPg({
      connectionString: bouncer.adminUrl,
      timeoutMs: 5000,
      adminConsole: true,
      label: 'PgBouncer',
    });
    await expect(victim.query({ text: 'SHOW POOLS', values: [1] })).rejects.toThrow();
    const raw = await readPgBouncer(victim, 2000);
    expect(raw.error).toMatch(/.+/);
    const r = await collectPoolReport(direct, { client: victim }, { queryTimeoutMs: 5000 });
    expect(r.findings.find((x) => x.code === 'pgbouncer-unreadable')?.severity).toBe('warning');
    await victim.end().catch(() => {});
  });
});
