import { spawn } from 'node:child_process';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, cleanEnv, ROOT, runDbops } from '../helpers/cli.js';
import { Sessions, stagePileUp } from '../helpers/pool-sessions.js';
import { freePort, type PgBouncerServer, startPgBouncer } from '../helpers/servers.js';
import { createTestDatabase, services, type TestDatabase, uniqueName } from '../helpers/services.js';

const MONITOR_PW = 'monitor-secret-Xy9';
const SECRET = 'Unique-Pool-Pw-4kq9ZX';

describe('dbops pool / dbops locks (built CLI, real servers)', () => {
  let db: TestDatabase;
  let monitorUrl: string;
  let observer: pg.Client;
  const sessions = new Sessions();
  const app = uniqueName('web');

  beforeAll(async () => {
    db = await createTestDatabase();
    monitorUrl = `postgresql://dbops_monitor:${MONITOR_PW}@127.0.0.1:${db.port}/${db.name}`;
    observer = new pg.Client({ connectionString: db.url });
    await observer.connect();
    for (let i = 0; i < 4; i++) await sessions.open(db.url, app);
  });
  afterAll(async () => {
    await sessions.close();
    await observer.end();
    await db.drop();
  });

  it('pool --json: one document with the figures, groups and headroom; no password in the output', async () => {
    const r = await runDbops(['pool', '--json'], { env: cleanEnv({ DATABASE_URL: monitorUrl }) });
    const doc = JSON.parse(r.stdout);
    expect(r.code).toBe(doc.ok ? 0 : 3);
    expect(doc.server.user).toBe('dbops_monitor');
    expect(doc.groups.find((g: { application: string }) => g.application === app)).toMatchObject({
      state: 'idle',
      count: 4,
    });
    expect(Object.keys(doc.pool)).toEqual([
      'active',
      'idle',
      'idleInTransaction',
      'waiting',
      'lockWaiting',
      'max',
      'usable',
    ]);
    expect(Object.keys(doc.metrics)).toEqual(
      expect.arrayContaining(['totalConnections', 'activeQueries', 'avgQueryTimeMs', 'slowQueries', 'errorRate']),
    );
    expect(doc.headroom.free).toBe(
      doc.headroom.maxConnections - doc.headroom.superuserReserved - doc.headroom.reserved - doc.headroom.inUse,
    );
    expect(doc.budget).toBeNull();
    expect(r.stdout + r.stderr).not.toContain(MONITOR_PW);
  });

  it('pool for a person: tables, headroom arithmetic, the budget hint and findings', async () => {
    const r = await runDbops(['pool'], { env: cleanEnv({ DATABASE_URL: monitorUrl }) });
    expect(r.stdout).toMatch(/^pool {6}active \d+ {2}idle \d+/m);
    expect(r.stdout).toMatch(
      /headroom {2}max_connections 400 − superuser_reserved_connections 3 − reserved_connections 0 − in use \d+ = \d+ free/,
    );
    expect(r.stdout).toMatch(new RegExp(`${app} +│ postgres │ 127\\.0\\.0\\.1 │ idle +│ +4 │`));
    expect(r.stdout).toMatch(/give --app-instances N/);
    expect(r.stdout + r.stderr).not.toContain(MONITOR_PW);
  });

  it('capacity budget: DATABASE_POOL_SIZE is the default pool size; over the limit is critical, exit 3', async () => {
    const ok = await runDbops(['pool', '--json', '--app-instances', '2', '--app-name', app], {
      env: cleanEnv({ DATABASE_URL: monitorUrl, DATABASE_POOL_SIZE: '7' }),
    });
    const doc = JSON.parse(ok.stdout);
    expect(doc.budget.appConnections).toBe(28);
    expect(doc.budget.lines[0]).toBe('application: 2 instances × pool 7 × surge 2 = 28 connections at most');
    expect(doc.budget.lines[2]).toMatch(new RegExp(`in use by others \\(\\d+ in use, 4 of them app=${app}\\)`));
    expect(doc.budget.checks[0]).toMatchObject({ id: 'app-vs-postgres', ok: true });
    const over = await runDbops(['pool', '--app-instances', '50', '--app-pool-size', '10', '--surge', '1.5'], {
      env: cleanEnv({ DATABASE_URL: monitorUrl }),
    });
    expect(over.code).toBe(3);
    expect(over.stdout).toMatch(/application: 50 instances × pool 10 × surge 1\.5 = 750 connections at most/);
    expect(over.stdout).toMatch(/CRITICAL application 750 > \d+ free on PostgreSQL: short by \d+/);
    expect(over.stdout).toMatch(/lower DATABASE_POOL_SIZE/);
  });

  it('locks: the pile-up chain idle → UPDATE → ALTER → SELECT, exit 3 once a wait exceeds --long-ms', async () => {
    await observer.query('CREATE TABLE IF NOT EXISTS e2e_items (id int PRIMARY KEY, n int NOT NULL)');
    await observer.query('INSERT INTO e2e_items VALUES (1, 0) ON CONFLICT DO NOTHING');
    const pile = new Sessions();
    try {
      const pids = await stagePileUp(pile, db.url, observer, 'e2e_items', { holder: `${app}-holder` });
      const r = await runDbops(['locks', '--json', '--long-ms', '1'], { env: cleanEnv({ DATABASE_URL: monitorUrl }) });
      expect(r.code).toBe(3);
      const doc = JSON.parse(r.stdout);
      const root = doc.locks.roots.find((n: { pid: number }) => n.pid === pids.holder);
      expect(root).toMatchObject({ state: 'idle in transaction', application: `${app}-holder` });
      const chain: number[] = [];
      for (let n = root; n; n = n.children[0]) chain.push(n.pid);
      expect(chain).toEqual([pids.holder, pids.update, pids.alter, pids.select]);
      const human = await runDbops(['pool', '--locks', '--long-ms', '1'], {
        env: cleanEnv({ DATABASE_URL: monitorUrl }),
      });
      expect(human.code).toBe(3);
      expect(human.stdout).toMatch(new RegExp(`pid ${pids.holder} {2}idle in transaction`));
      expect(human.stdout).toMatch(
        new RegExp(
          `└─ pid ${pids.select} {2}waiting .* for AccessShareLock on e2e_items {2}queued behind waiter ${pids.alter}`,
        ),
      );
      expect(human.stdout).toMatch(
        new RegExp(`to end the root \\(dbops never does\\): SELECT pg_terminate_backend\\(${pids.holder}\\);`),
      );
    } finally {
      await pile.close();
    }
  });

  it('--watch redraws until Ctrl-C (SIGINT), then exits 0', async () => {
    const child = spawn(process.execPath, [BIN, 'pool', '--watch', '0.5'], {
      cwd: ROOT,
      env: cleanEnv({ DATABASE_URL: monitorUrl }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const frames = new Promise<void>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if ((stdout.match(/Ctrl-C to stop/g) ?? []).length >= 2) resolve();
      });
    });
    await frames;
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(stdout).not.toContain('\x1b[2J');
    expect(stdout).toMatch(/Connections by database/);
    expect(stderr + stdout).not.toContain(MONITOR_PW);
  });
});

describe('dbops pool with PgBouncer (private, pool size 1)', () => {
  let db: TestDatabase;
  let bouncer: PgBouncerServer;
  const sessions = new Sessions();
  let holderPid: number;

  beforeAll(async () => {
    db = await createTestDatabase({ empty: true });
    bouncer = await startPgBouncer(services().pg.port, { default_pool_size: 1, pool_mode: 'session' });
    const holder = await sessions.open(bouncer.url(db.name), 'holder-app');
    holderPid = holder.pid;
    await holder.query('BEGIN');
    for (const name of ['w1', 'w2']) {
      const c = new pg.Client({ connectionString: bouncer.url(db.name), application_name: name });
      c.on('error', () => {});
      // Session mode: a second client cannot even log in to a server connection; it waits.
      c.connect().catch(() => {});
      sessions.adopt(c);
      sessions.background(c, 'SELECT 1');
    }
    await new Promise((r) => setTimeout(r, 300));
  });
  afterAll(async () => {
    await sessions.close();
    await bouncer.stop();
    await db.drop();
  });

  it('waiting clients and their wait, joined to the backend; session mode flagged; no crash on a bad console URL', async () => {
    const env = cleanEnv({ DATABASE_URL: db.url, PGBOUNCER_ADMIN_URL: bouncer.adminUrl });
    const r = await runDbops(['pool', '--json', '--app-instances', '2', '--app-pool-size', '5'], { env });
    const doc = JSON.parse(r.stdout);
    const pool = doc.pgbouncer.pools.find((p: { database: string }) => p.database === db.name);
    expect(pool.clWaiting).toBe(2);
    expect(pool.maxWaitMs).toBeGreaterThan(0);
    expect(pool.backends).toEqual([
      expect.objectContaining({ pid: holderPid, application: 'holder-app', state: 'idle in transaction' }),
    ]);
    expect(doc.pool.waiting).toBe(2);
    expect(doc.findings.map((f: { code: string }) => f.code)).toEqual(
      expect.arrayContaining(['pgbouncer-clients-waiting', 'pgbouncer-pool-mode']),
    );
    expect(doc.budget.lines.join('\n')).toMatch(/PgBouncer clients: max_client_conn 500/);
    const human = await runDbops(['pool'], { env });
    expect(human.stdout).toMatch(
      new RegExp(
        `2 clients waiting on pool ${db.name}/postgres \\(longest .*\\) because 1 backend idle in transaction from app=holder-app \\(pid ${holderPid}`,
      ),
    );
    const closed = await freePort();
    const bad = await runDbops(['pool', '--json', '--timeout', '2s'], {
      env: cleanEnv({
        DATABASE_URL: db.url,
        PGBOUNCER_ADMIN_URL: `postgresql://admin:${SECRET}@127.0.0.1:${closed}/pgbouncer`,
      }),
    });
    const badDoc = JSON.parse(bad.stdout);
    expect(badDoc.findings.find((f: { code: string }) => f.code === 'pgbouncer-unreadable').message).toMatch(
      /unreachable/,
    );
    expect(bad.stdout + bad.stderr).not.toContain(SECRET);
  });
});
