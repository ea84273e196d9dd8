import { describe, expect, it } from 'vitest';
import { capacityBudget } from '../../src/diagnostics/pool-budget.js';

const postgres = { maxConnections: 100, superuserReserved: 3, reserved: 0, inUse: 25, appInUse: 0 };

describe('capacityBudget', () => {
  it('direct: instances × pool × surge against PostgreSQL free slots, arithmetic shown', () => {
    const b = capacityBudget({ appInstances: 6, appPoolSize: 10, surge: 2, postgres });
    expect(b.appConnections).toBe(120);
    expect(b.postgresUsable).toBe(97);
    expect(b.postgresFree).toBe(72);
    expect(b.checks).toEqual([
      {
        id: 'app-vs-postgres',
        demand: 120,
        capacity: 72,
        ok: false,
        text: 'application 120 > 72 free on PostgreSQL: short by 48',
      },
    ]);
    expect(b.lines[0]).toBe('application: 6 instances × pool 10 × surge 2 = 120 connections at most');
    expect(b.lines[1]).toBe(
      'PostgreSQL: max_connections 100 − superuser_reserved 3 − reserved 0 = 97 usable by ordinary roles',
    );
    expect(b.lines[2]).toMatch(/97 usable − 25 in use now = 72 for the application/);
  });

  it("direct with --app-name: the application's current connections are not counted against it", () => {
    const b = capacityBudget({
      appInstances: 3,
      appPoolSize: 10,
      surge: 2,
      appName: 'api',
      postgres: { ...postgres, inUse: 40, appInUse: 30, reserved: 2 },
    });
    expect(b.postgresUsable).toBe(95);
    expect(b.postgresFree).toBe(85);
    expect(b.checks[0]).toMatchObject({ ok: true, demand: 60, capacity: 85 });
    expect(b.lines[2]).toBe(
      'PostgreSQL: 95 usable − 10 in use by others (40 in use, 30 of them app=api) = 85 for the application',
    );
  });

  it('a fractional surge rounds the demand up', () => {
    expect(capacityBudget({ appInstances: 3, appPoolSize: 7, surge: 1.5, postgres }).appConnections).toBe(32);
  });

  const bouncer = {
    instances: 1,
    maxClientConn: 100,
    defaultPoolSize: 20,
    reservePoolSize: 5,
    maxDbConnections: 0,
    pools: [
      { database: 'app', user: 'api' },
      { database: 'app', user: 'worker' },
      { database: 'reports', user: 'bi' },
    ],
    databases: [
      { name: 'app', poolSize: 20, reservePool: 5, maxConnections: 0 },
      { name: 'reports', poolSize: 10, reservePool: 0, maxConnections: 0 },
    ],
    serverConnectionsInUse: 20,
  };

  it('PgBouncer: clients vs max_client_conn, Σ(pool_size + reserve_pool) × users vs PostgreSQL', () => {
    const b = capacityBudget({ appInstances: 6, appPoolSize: 10, surge: 2, postgres, pgbouncer: bouncer });
    expect(b.pgbouncerClientLimit).toBe(100);
    // app: (20 + 5) × 2 users = 50; reports: (10 + 0) × 1 = 10.
    expect(b.pgbouncerServerMax).toBe(60);
    // 97 usable − (25 in use − 20 PgBouncer's) = 92.
    expect(b.postgresFree).toBe(92);
    const byId = Object.fromEntries(b.checks.map((c) => [c.id, c]));
    expect(byId['app-vs-max-client-conn']).toMatchObject({ demand: 120, capacity: 100, ok: false });
    expect(byId['pgbouncer-vs-postgres']).toMatchObject({ demand: 60, capacity: 92, ok: true });
    expect(byId['app-vs-pgbouncer-pools']).toMatchObject({ demand: 120, capacity: 60, ok: false });
    expect(b.lines).toContain(
      'PgBouncer servers: app: (pool_size 20 + reserve_pool 5) × 2 users = 50; reports: (pool_size 10 + reserve_pool 0) × 1 user = 10; sum = 60',
    );
  });

  it('PgBouncer: max_db_connections caps a database, several PgBouncer instances multiply', () => {
    const b = capacityBudget({
      appInstances: 2,
      appPoolSize: 10,
      surge: 2,
      postgres: { ...postgres, maxConnections: 60 },
      pgbouncer: {
        ...bouncer,
        instances: 2,
        databases: [{ name: 'app', poolSize: 20, reservePool: 5, maxConnections: 30 }],
        pools: [bouncer.pools[0]!, bouncer.pools[1]!],
      },
    });
    expect(b.pgbouncerServerMax).toBe(60);
    expect(b.pgbouncerClientLimit).toBe(200);
    expect(b.lines.join('\n')).toMatch(/capped by max_db_connections 30 → 30; × 2 instances = 60/);
    // 57 usable − 5 others = 52 < 60.
    expect(b.checks.find((c) => c.id === 'pgbouncer-vs-postgres')).toMatchObject({
      ok: false,
      demand: 60,
      capacity: 52,
    });
  });

  it('PgBouncer without pools yet assumes one database/user pair at the default sizes', () => {
    const b = capacityBudget({
      appInstances: 1,
      appPoolSize: 5,
      surge: 1,
      postgres,
      pgbouncer: { ...bouncer, pools: [], databases: [] },
    });
    expect(b.pgbouncerServerMax).toBe(25);
    expect(b.lines.join('\n')).toMatch(/no pools yet/);
  });
});
