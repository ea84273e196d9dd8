/**
 * A full PostgreSQL is a finding, not a failure: a server of this test's own (PostgreSQL 18,
 * max_connections 8 with 2 superuser-reserved and 1 reserved slots: 5 for ordinary roles) filled
 * to its last ordinary slot. A pg_monitor role is refused (SQLSTATE 53300): `pool` and `doctor`
 * say the server is full and how to look anyway, and exit 3 (critical finding), not 5. A member of
 * pg_use_reserved_connections and a superuser get in through a reserved slot: dbops' own
 * connection is counted apart (0 free, never -1).
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, runDbops } from '../helpers/cli.js';
import { type PgServer, startPostgres } from '../helpers/servers.js';

describe('a PostgreSQL filled to its last ordinary slot', () => {
  let server: PgServer;
  const fillers: pg.Client[] = [];
  const url = (user: string) => `postgresql://${user}:pw-${user}@127.0.0.1:${server.port}/postgres`;

  beforeAll(async () => {
    server = await startPostgres('embedded', {
      max_connections: 8,
      superuser_reserved_connections: 2,
      reserved_connections: 1,
    });
    const admin = new pg.Client({ connectionString: server.url() });
    await admin.connect();
    await admin.query(`CREATE ROLE filler LOGIN PASSWORD 'pw-filler'`);
    await admin.query(`CREATE ROLE mon LOGIN PASSWORD 'pw-mon' IN ROLE pg_monitor`);
    await admin.query(`CREATE ROLE resv LOGIN PASSWORD 'pw-resv' IN ROLE pg_monitor, pg_use_reserved_connections`);
    await admin.end();
    for (let i = 0; i < 5; i++) {
      const c = new pg.Client({ connectionString: url('filler'), application_name: 'shop-api' });
      await c.connect();
      fillers.push(c);
    }
  }, 120_000);
  afterAll(async () => {
    for (const c of fillers) await c.end().catch(() => {});
    await server?.stop();
  });

  const dbops = (args: string[], user: string) => runDbops(args, { env: cleanEnv({ DATABASE_URL: url(user) }) });

  it('pool as a pg_monitor role: the server is full (exit 3, not unreachable), with how to look anyway', async () => {
    const r = await dbops(['pool'], 'mon');
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/full: .*remaining connection slots are reserved/);
    expect(r.stdout).toMatch(/CRITICAL PostgreSQL at 127.0.0.1:\d+\/postgres is full: it refused dbops a connection/);
    for (const way of ['superuser', 'pg_use_reserved_connections', "PgBouncer's console", 'replica'])
      expect(r.stdout).toContain(way);
    expect(r.stderr).not.toMatch(/unreachable/);
    expect(`${r.stdout}${r.stderr}`).not.toContain('pw-mon');

    const json = await dbops(['pool', '--json'], 'mon');
    expect(json.code).toBe(3);
    const doc = JSON.parse(json.stdout);
    expect(doc).toMatchObject({
      ok: false,
      worst: 'critical',
      serverFull: { endpoint: expect.stringContaining(String(server.port)) },
    });
    expect(doc.findings[0]).toMatchObject({ severity: 'critical', code: 'postgres-full' });
  });

  it('doctor as a pg_monitor role: FULL with the hint, exit 3', async () => {
    const r = await dbops(['doctor'], 'mon');
    expect(r.code).toBe(3);
    expect(r.stdout).toContain('FULL');
    expect(r.stdout).toMatch(/hint: every connection slot this role may use is taken: to look anyway/);
    expect(r.stdout).toContain('PostgreSQL is full');
  });

  it.for(['resv', 'postgres'])(
    'pool as %s gets in through a reserved slot and counts itself apart: 0 free, not -1',
    async (user) => {
      const r = await runDbops(['pool', '--json'], {
        env: cleanEnv({ DATABASE_URL: user === 'postgres' ? server.url() : url(user) }),
      });
      const doc = JSON.parse(r.stdout);
      expect(doc.headroom).toMatchObject({ usable: 5, inUse: 6, free: 0, selfInReservedSlot: true });
      expect(doc.headroom.formula).toContain("in use 5 (dbops' own connection is in a reserved slot, not counted) = 0");
      expect(doc.findings.find((f: { code: string }) => f.code === 'headroom-exhausted')?.message).toContain(
        '5 in use by others of 5 usable',
      );
      expect(r.code).toBe(3);
    },
  );
});
