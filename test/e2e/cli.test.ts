import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, cleanEnv, runDbops } from '../helpers/cli.js';
import { freePort, startPgBouncer, startPostgres } from '../helpers/servers.js';
import { createTestDatabase, redisUrl, services, type TestDatabase } from '../helpers/services.js';

const SECRET = 'Unique-Pw-8f3kq7ZZ';

describe('dbops CLI basics', () => {
  it('--help lists the command groups and loads neither pg, ioredis nor Prisma', () => {
    const trace = fileURLToPath(new URL('../helpers/trace-imports.mjs', import.meta.url));
    const r = spawnSync(process.execPath, ['--import', trace, BIN, '--help'], { encoding: 'utf8', env: cleanEnv() });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Usage: dbops/);
    expect(r.stdout).toMatch(/doctor/);
    const loaded = r.stderr.split('\n').filter((l) => l.startsWith('[import]'));
    expect(loaded.length).toBeGreaterThan(3);
    expect(loaded.filter((l) => /node_modules\/(pg|ioredis|@prisma|prisma|ora|cli-table3|jiti)\//.test(l))).toEqual([]);
  });

  it('--version prints the package version', async () => {
    const r = await runDbops(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('refuses with exit code 2 in CI when no database is configured', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'dbops-ci-'));
    const r = await runDbops(['doctor'], { cwd, env: cleanEnv({ CI: 'true' }) });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no database configured and CI is set/);
    expect(r.stderr).toMatch(/hint: set DATABASE_URL/);
  });

  it('an invalid setting names the setting and its source, exit 2, no password printed', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'dbops-cfg-'));
    writeFileSync(join(cwd, '.env'), `DATABASE_URL=mysql://u:${SECRET}@h/db\n`);
    const r = await runDbops(['doctor'], { cwd });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /DATABASE_URL \(from DATABASE_URL in .*\.env\) must start with postgresql:\/\/ or postgres:\/\/, not mysql:/,
    );
    expect(r.stderr + r.stdout).not.toContain(SECRET);
  });
});

describe('dbops doctor against real servers', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
  });

  it('reports PostgreSQL, PostgreSQL via PgBouncer, the PgBouncer console and Redis', async () => {
    const s = services();
    const env = cleanEnv({
      DATABASE_URL: db.bouncerUrl,
      DIRECT_DATABASE_URL: db.url,
      PGBOUNCER_ADMIN_URL: `postgresql://postgres@127.0.0.1:${s.pgbouncer.port}/pgbouncer`,
      REDIS_URL: redisUrl(),
    });
    const r = await runDbops(['doctor', '--json'], { env });
    // --json: the document on stdout; on stderr only the target lines, one per server (issue 13)
    expect(r.stderr.split('\n').filter(Boolean)).toEqual([
      `→ postgresql://postgres@127.0.0.1:${db.port}/${db.name} (DIRECT_DATABASE_URL from the environment)`,
      `→ PgBouncer console postgresql://postgres@127.0.0.1:${s.pgbouncer.port}/pgbouncer (PGBOUNCER_ADMIN_URL from the environment)`,
      `→ Redis ${redisUrl()} (REDIS_URL from the environment)`,
    ]);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.ok).toBe(true);
    expect(report.components.map((c: { component: string }) => c.component)).toEqual([
      'postgres',
      'postgres-via-pgbouncer',
      'pgbouncer-admin',
      'redis',
    ]);
    const pgc = report.components[0];
    expect(pgc.version).toMatch(/^18/);
    expect(pgc.tls).toBe(false);
    expect(pgc.details.pgStatStatements).toMatchObject({ installed: true, preloaded: true, readable: true });
    expect(pgc.details.privileges.superuser).toBe(true);
    expect(report.components[2].version).toMatch(/^1\./);
    expect(report.components[3].details.cluster).toBe(false);
  });

  it('shows a table for a person', async () => {
    const r = await runDbops(['doctor'], { env: cleanEnv({ DATABASE_URL: db.url, REDIS_URL: redisUrl() }) });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/PostgreSQL .*ok/);
    expect(r.stdout).toMatch(/pg_stat_statements: installed/);
    expect(r.stdout).toMatch(/all configured components reachable/);
  });

  it('detects a Redis cluster', async () => {
    const r = await runDbops(['doctor', '--json'], {
      env: cleanEnv({ DATABASE_URL: db.url, REDIS_URL: `redis://127.0.0.1:${services().cluster.ports[0]}` }),
    });
    expect(JSON.parse(r.stdout).components[1].details.cluster).toBe(true);
  });

  it('fails within its timeout on closed ports, exit 5, printing no password', async () => {
    const closed = await freePort();
    const env = cleanEnv({
      DATABASE_URL: `postgresql://app:${SECRET}@127.0.0.1:${closed}/x`,
      REDIS_URL: `redis://default:${SECRET}@127.0.0.1:${closed}/0`,
      PGBOUNCER_ADMIN_URL: `postgresql://admin:${SECRET}@127.0.0.1:${closed}/pgbouncer`,
    });
    const started = Date.now();
    const r = await runDbops(['doctor', '--timeout', '2s'], { env });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(r.code).toBe(5);
    expect(r.stdout).toMatch(/FAILED/);
    expect(r.stdout + r.stderr).not.toContain(SECRET);
  });

  it('a wrong password is reported as a refused login, exit 5, without the password', async () => {
    const env = cleanEnv({ DATABASE_URL: `postgresql://dbops_app:${SECRET}@127.0.0.1:${db.port}/${db.name}` });
    const r = await runDbops(['doctor', '--json', '--verbose'], { env });
    expect(r.code).toBe(5);
    const report = JSON.parse(r.stdout);
    expect(report.components[0].error.message).toMatch(/refused the login/);
    expect(r.stdout + r.stderr).not.toContain(SECRET);
  });

  it('an unresolvable host fails fast without printing the password', async () => {
    const r = await runDbops([
      'doctor',
      '--timeout',
      '2s',
      '--database-url',
      `postgres://u:${SECRET}@no-such-host.invalid:5432/db`,
    ]);
    expect(r.code).toBe(5);
    expect(r.stdout + r.stderr).not.toContain(SECRET);
  });

  it('in CI with only Redis configured, checks Redis (and no embedded database)', async () => {
    const r = await runDbops(['doctor', '--json'], { env: cleanEnv({ CI: 'true', REDIS_URL: redisUrl() }) });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).components.map((c: { component: string }) => c.component)).toEqual(['redis']);
  });

  it('through a PgBouncer whose PostgreSQL is down: fails within the timeout instead of hanging', async () => {
    const server = await startPostgres('embedded');
    const bouncer = await startPgBouncer(server.port);
    try {
      await server.stop();
      const started = Date.now();
      const r = await runDbops(['doctor', '--json', '--timeout', '2s'], {
        env: cleanEnv({ DATABASE_URL: bouncer.url('postgres'), DIRECT_DATABASE_URL: bouncer.url('postgres') }),
      });
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(r.code).toBe(5);
      expect(JSON.parse(r.stdout).ok).toBe(false);
    } finally {
      await bouncer.stop();
    }
  });

  it('config shows masked settings and their sources', async () => {
    const r = await runDbops(['config', '--json'], {
      env: cleanEnv({ DATABASE_URL: `postgresql://app:${SECRET}@db:5432/x`, CACHE_KEY_PREFIX: 'myapp' }),
    });
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.database.url).toBe('postgresql://app:***@db:5432/x');
    expect(doc.settings.CACHE_KEY_PREFIX).toEqual({ value: 'myapp', source: 'environment variable CACHE_KEY_PREFIX' });
    expect(r.stdout + r.stderr).not.toContain(SECRET);
  });
});
