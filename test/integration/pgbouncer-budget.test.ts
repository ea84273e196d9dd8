/**
 * The capacity budget counts only what the application can use: its own (database, user) pool on a
 * real PgBouncer of this test, under pool_size + reserve_pool, max_db_connections,
 * max_user_connections, max_client_conn and the pool mode; other users' pools are shown apart.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectPg } from '../../src/db/pg.js';
import { collectPoolReport, type PoolOptions } from '../../src/diagnostics/pool.js';
import { type PgBouncerServer, startPgBouncer } from '../helpers/servers.js';
import { createTestDatabase, services, type TestDatabase } from '../helpers/services.js';

describe('capacity budget of the application pool on a real PgBouncer', () => {
  let db: TestDatabase;
  let bouncer: PgBouncerServer;
  let direct: pg.Client;
  let admin: pg.Client;
  const clients: pg.Client[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    bouncer = await startPgBouncer(
      services().pg.port,
      { default_pool_size: 8, reserve_pool_size: 2, max_user_connections: 5, max_client_conn: 20 },
      { dbops_app: 'app-secret-Zq7' },
    );
    direct = new pg.Client({ connectionString: db.url });
    await direct.connect();
    admin = await connectPg({
      connectionString: bouncer.adminUrl,
      timeoutMs: 5000,
      adminConsole: true,
      label: 'PgBouncer',
    });
    // The application's pool (user dbops_app) and a monitoring user's pool (postgres) on the same database.
    for (const user of ['dbops_app', 'postgres', 'postgres']) {
      const c = new pg.Client({
        connectionString: bouncer.url(db.name, user),
        application_name: user === 'dbops_app' ? 'shop-api' : 'monitor',
      });
      await c.connect();
      await c.query('SELECT 1');
      clients.push(c);
    }
  });
  afterAll(async () => {
    for (const c of clients) await c.end().catch(() => {});
    await admin?.end().catch(() => {});
    await direct?.end();
    await bouncer?.stop();
    await db?.drop();
  });

  const report = (extra: Partial<PoolOptions> = {}) =>
    collectPoolReport(
      direct,
      { client: admin },
      {
        queryTimeoutMs: 5000,
        budget: { appInstances: 1, appPoolSize: 10, surge: 1, pgbouncerInstances: 1 },
        appPool: { database: db.name, user: 'dbops_app', source: 'from DATABASE_URL' },
        ...extra,
      },
    );

  it('max_user_connections caps the application pool; the monitoring pool is shown apart, not counted', async () => {
    const r = await report();
    expect(r.budget?.appPool).toMatchObject({
      user: 'dbops_app',
      poolSize: 8,
      reservePool: 2,
      maxUserConnections: 5,
      maxServerConnections: 5,
      limitedBy: 'max_user_connections',
    });
    expect(r.budget?.otherPools).toEqual([{ database: db.name, user: 'postgres', max: 5 }]);
    const queue = r.budget?.checks.find((c) => c.id === 'app-vs-pgbouncer-pools');
    expect(queue).toMatchObject({ demand: 10, capacity: 5, ok: false });
    expect(queue?.text).toBe(
      'application 10 client connections share 5 server connections: beyond 5 concurrent transactions, clients queue in PgBouncer',
    );
    expect(r.budget?.lines.join('\n')).toContain(`other pools, not the application's: ${db.name}/postgres (up to 5)`);
  });

  it('max_client_conn counts the clients of other pools', async () => {
    const r = await report({ budget: { appInstances: 2, appPoolSize: 10, surge: 1, pgbouncerInstances: 1 } });
    const c = r.budget?.checks.find((x) => x.id === 'app-vs-max-client-conn');
    // max_client_conn 20 − 2 monitoring clients = 18 < 20 wanted.
    expect(c).toMatchObject({ demand: 20, capacity: 18, ok: false });
    expect(r.budget?.lines.join('\n')).toContain('max_client_conn 20 − 2 clients of other pools now = 18');
  });

  it('max_db_connections, then pool_size + reserve_pool, then session mode', async () => {
    await bouncer.reload({ max_user_connections: 0, max_db_connections: 3 });
    let r = await report();
    expect(r.budget?.appPool).toMatchObject({ maxServerConnections: 3, limitedBy: 'max_db_connections' });
    await bouncer.reload({ max_db_connections: 0 });
    r = await report();
    expect(r.budget?.appPool).toMatchObject({
      maxServerConnections: 10,
      limitedBy: 'pool_size + reserve_pool',
      poolMode: 'transaction',
    });
    expect(r.budget?.checks.find((c) => c.id === 'app-vs-pgbouncer-pools')).toMatchObject({
      demand: 10,
      capacity: 10,
      ok: true,
    });
    await bouncer.reload({ pool_mode: 'session' });
    r = await report({ budget: { appInstances: 2, appPoolSize: 10, surge: 1, pgbouncerInstances: 1 } });
    expect(r.budget?.appPool?.poolMode).toBe('session');
    expect(r.budget?.checks.find((c) => c.id === 'app-vs-pgbouncer-pools')?.text).toMatch(
      /in session mode: beyond 10 connected clients, the rest wait until a client disconnects/,
    );
  });
});
