import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectPoolReport } from '../../src/diagnostics/pool.js';
import { Sessions } from '../helpers/pool-sessions.js';
import { type PgServer, startPostgres } from '../helpers/servers.js';
import { createTestDatabase, services, type TestDatabase, uniqueName } from '../helpers/services.js';

const MONITOR = (port: number, db: string) => `postgresql://dbops_monitor:monitor-secret-Xy9@127.0.0.1:${port}/${db}`;

describe('pool report on the shared server', () => {
  let db: TestDatabase;
  const sessions = new Sessions();
  const app = uniqueName('api');
  let monitor: pg.Client;

  beforeAll(async () => {
    db = await createTestDatabase();
    for (let i = 0; i < 7; i++) await sessions.open(db.url, app);
    monitor = new pg.Client({ connectionString: MONITOR(db.port, db.name) });
    await monitor.connect();
  });
  afterAll(async () => {
    await sessions.close();
    await monitor.end();
    await db.drop();
  });

  it('groups N idle connections of a named application, read by a pg_monitor role', async () => {
    const r = await collectPoolReport(monitor, undefined, { queryTimeoutMs: 5000 });
    expect(r.server.user).toBe('dbops_monitor');
    expect(r.server.canSeeAllQueries).toBe(true);
    const groups = r.groups.filter((g) => g.application === app);
    expect(groups).toHaveLength(1);
    expect(groups[0]).toMatchObject({
      application: app,
      state: 'idle',
      count: 7,
      user: 'postgres',
      database: db.name,
      clientAddr: '127.0.0.1',
    });
    expect(groups[0]?.longestInStateMs).toBeGreaterThanOrEqual(0);
    expect(groups[0]?.oldestXactMs).toBeNull();
    expect(r.findings.find((f) => f.code === 'limited-visibility')).toBeUndefined();
    // The design's figures are all there; pg_stat_statements is installed in the test template.
    expect(r.metrics.totalConnections).toBe(r.headroom.inUse);
    expect(r.metrics.avgQueryTimeMs).not.toBeNull();
    expect(r.metrics.slowQueries).toBe(0);
    expect(r.metrics.errorRate).not.toBeNull();
    expect(r.pool.waiting).toBeNull();
    expect(r.pool.max).toBe(r.headroom.maxConnections);
  });

  it('an idle-in-transaction session with a written row reports its age, last query and the xid it holds back', async () => {
    const s = await sessions.open(db.url, `${app}-tx`);
    await s.query('BEGIN');
    await s.query(`UPDATE "User" SET name = name WHERE false`);
    await s.query('SELECT txid_current()');
    await new Promise((res) => setTimeout(res, 50));
    const r = await collectPoolReport(monitor, undefined, { queryTimeoutMs: 5000, thresholds: { longMs: 1 } });
    const row = r.idleInTransaction.find((x) => x.pid === s.pid);
    expect(row).toMatchObject({
      application: `${app}-tx`,
      state: 'idle in transaction',
      query: 'SELECT txid_current()',
    });
    expect(row?.xactAgeMs).toBeGreaterThanOrEqual(50);
    expect(row?.xidHeldBack).not.toBeNull();
    const finding = r.findings.find((f) => f.code === 'idle-in-transaction' && f.message.includes(`app=${app}-tx`));
    expect(finding?.severity).toBe('warning');
    expect(finding?.statements).toEqual([`SELECT pg_terminate_backend(${s.pid});`]);
    await s.query('ROLLBACK');
  });
});

/** Open connections as an ordinary role until the server refuses; returns how many it accepted. */
async function fillUntilRefused(url: string, sessions: Sessions): Promise<{ opened: number; error: string }> {
  for (let opened = 0; ; opened++) {
    try {
      await sessions.open(url, 'filler');
    } catch (error) {
      return { opened, error: (error as Error).message };
    }
  }
}

interface HeadroomCase {
  kind: 'embedded' | 15;
  settings: { max_connections: number; superuser_reserved_connections: number; reserved_connections?: number };
}

describe.each<HeadroomCase>([
  { kind: 'embedded', settings: { max_connections: 14, superuser_reserved_connections: 2, reserved_connections: 3 } },
  { kind: 15, settings: { max_connections: 12, superuser_reserved_connections: 3 } },
])('headroom equals what PostgreSQL $kind accepts', ({ kind, settings }) => {
  let server: PgServer | undefined;
  const sessions = new Sessions();
  beforeAll(async () => {
    if (kind === 15 && !services().pg15) return;
    server = await startPostgres(kind, { ...settings });
    const admin = new pg.Client({ connectionString: server.url() });
    await admin.connect();
    await admin.query(`CREATE ROLE dbops_monitor LOGIN PASSWORD 'monitor-secret-Xy9' IN ROLE pg_monitor`);
    await admin.end();
  });
  afterAll(async () => {
    await sessions.close();
    await server?.stop();
  });

  it('max_connections − reserved slots − in use = connections an ordinary role can still open', async (t) => {
    if (!server) return t.skip();
    const url = MONITOR(server.port, 'postgres');
    for (let i = 0; i < 3; i++) await sessions.open(url, 'busy');
    const monitor = await sessions.open(url, 'dbops-test');
    const r = await collectPoolReport(monitor, undefined, { queryTimeoutMs: 5000 });
    const reserved = settings.reserved_connections ?? 0;
    expect(r.headroom).toMatchObject({
      maxConnections: settings.max_connections,
      superuserReserved: settings.superuser_reserved_connections,
      reserved,
      usable: settings.max_connections - settings.superuser_reserved_connections - reserved,
      inUse: 4,
    });
    const { opened, error } = await fillUntilRefused(url, sessions);
    expect(error).toMatch(/remaining connection slots are reserved/);
    expect(opened).toBe(r.headroom.free);
    const full = await collectPoolReport(monitor, undefined, { queryTimeoutMs: 5000 });
    expect(full.headroom.free).toBe(0);
    expect(full.findings[0]).toMatchObject({ severity: 'critical', code: 'headroom-exhausted' });
    expect(full.ok).toBe(false);
  });
});
