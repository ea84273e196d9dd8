/**
 * The target is never a surprise (issue 13): a flag beats every lower source, DIRECT_DATABASE_URL
 * included; every command that touches a server names it on one stderr line (no password); the
 * diagnostics never start the embedded server on their own. The built CLI in a temp folder with a
 * .env of its own, on the harness' real servers.
 */
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, runDbops } from '../helpers/cli.js';
import { auditMig, withClient } from '../helpers/migrations.js';
import { createTestDatabase, services, type TestDatabase } from '../helpers/services.js';

/** A working folder with a .env and one data migration. */
function project(dotenv: Record<string, string>): string {
  const cwd = mkdtempSync(join(tmpdir(), 'dbops-target-'));
  writeFileSync(
    join(cwd, '.env'),
    Object.entries(dotenv)
      .map(([k, v]) => `${k}="${v}"\n`)
      .join(''),
  );
  mkdirSync(join(cwd, 'data-migrations'));
  writeFileSync(join(cwd, 'data-migrations', '20250101000000_audit_one.ts'), auditMig('one'));
  return cwd;
}

/** With a password the test server does not check (trust), so its absence from the output means something. */
const withPassword = (url: string) => url.replace('postgresql://postgres@', 'postgresql://postgres:s3cret-pw@');

async function ledgerRows(url: string): Promise<number> {
  return withClient(url, async (c) => {
    const t = await c.query(`SELECT to_regclass('dbops.data_migrations') AS t`);
    if (!t.rows[0].t) return 0;
    return (await c.query('SELECT count(*)::int AS n FROM dbops.data_migrations')).rows[0].n;
  });
}

describe('precedence: the database named on the command line is the one used', () => {
  let inDotenv: TestDatabase;
  let onFlag: TestDatabase;
  beforeAll(async () => {
    [inDotenv, onFlag] = await Promise.all([createTestDatabase(), createTestDatabase()]);
    for (const db of [inDotenv, onFlag])
      await withClient(db.url, (c) => c.query('CREATE TABLE audit (id serial, name text)'));
  });
  afterAll(async () => {
    await Promise.all([inDotenv?.drop(), onFlag?.drop()]);
  });

  it('--database-url beats DATABASE_URL and DIRECT_DATABASE_URL from .env; the target line says so', async () => {
    const cwd = project({ DATABASE_URL: withPassword(inDotenv.url), DIRECT_DATABASE_URL: withPassword(inDotenv.url) });
    const r = await runDbops(['migrate', 'up', '--database-url', withPassword(onFlag.url)], { cwd, env: cleanEnv() });
    expect(r.code, r.stderr).toBe(0);
    expect(await ledgerRows(onFlag.url)).toBe(1);
    expect(await ledgerRows(inDotenv.url)).toBe(0);
    const line = r.stderr.split('\n').filter((l) => l.startsWith('→'));
    expect(line).toEqual([
      `→ postgresql://postgres@127.0.0.1:${onFlag.port}/${onFlag.name} (--database-url; DIRECT_DATABASE_URL from .env ignored under it: pass --direct-database-url to use one)`,
    ]);
    expect(r.stdout + r.stderr).not.toContain('s3cret-pw');
  });

  it('--direct-database-url beats DIRECT_DATABASE_URL from the environment', async () => {
    const cwd = project({});
    const r = await runDbops(['migrate', 'status', '--json', '--direct-database-url', onFlag.url], {
      cwd,
      env: cleanEnv({ DATABASE_URL: inDotenv.url, DIRECT_DATABASE_URL: inDotenv.url }),
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      `→ postgresql://postgres@127.0.0.1:${onFlag.port}/${onFlag.name} (--direct-database-url)`,
    );
  });

  it('a DIRECT_DATABASE_URL from the same source as DATABASE_URL is used, and named', async () => {
    const cwd = project({
      DATABASE_URL: services().pgbouncer ? inDotenv.bouncerUrl : inDotenv.url,
      DIRECT_DATABASE_URL: inDotenv.url,
    });
    const r = await runDbops(['locks', '--json'], { cwd, env: cleanEnv() });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      `→ postgresql://postgres@127.0.0.1:${inDotenv.port}/${inDotenv.name} (DIRECT_DATABASE_URL from .env)`,
    );
    // --json keeps its one document on stdout; the target line is a log line on stderr.
    expect(() => JSON.parse(r.stdout)).not.toThrow();
  });

  it('migrate status shows the description of a pending migration too (read from its module)', async () => {
    const cwd = project({ DATABASE_URL: inDotenv.url });
    const json = await runDbops(['migrate', 'status', '--json'], { cwd, env: cleanEnv() });
    expect(json.code, json.stderr).toBe(0);
    const doc = JSON.parse(json.stdout) as {
      entries: Array<{ name: string; state: string; description: string | null }>;
    };
    expect(doc.entries.find((e) => e.name === '20250101000000_audit_one')).toMatchObject({
      state: 'pending',
      description: 'audit one',
    });
    const human = await runDbops(['migrate', 'status'], { cwd, env: cleanEnv({ COLUMNS: '100' }) });
    expect(human.stdout).toMatch(/20250101000000_audit_one .*pending.*audit one/);
    for (const line of human.stdout.split('\n')) expect(line.length).toBeLessThanOrEqual(100);
  });

  it('slow-queries reports on the flag database, not the .env one', async () => {
    const cwd = project({ DIRECT_DATABASE_URL: inDotenv.url });
    const r = await runDbops(['slow-queries', '--json', '--database-url', onFlag.url], { cwd, env: cleanEnv() });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`/${onFlag.name} (--database-url; DIRECT_DATABASE_URL from .env ignored`);
    expect(r.stderr).not.toContain(inDotenv.name);
  });
});

describe('every server touched is named once', () => {
  it('Redis: the cache commands name the server and where REDIS_URL came from', async () => {
    const cwd = project({ REDIS_URL: `redis://127.0.0.1:${services().redis.port}/3` });
    const r = await runDbops(['cache', 'keys', 'no-such-key-*'], { cwd, env: cleanEnv() });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      new RegExp(
        `^→ Redis redis://127\\.0\\.0\\.1:${services().redis.port}/3 \\(REDIS_URL from \\.env\\): standalone, db 3`,
        'm',
      ),
    );
  });

  it('PgBouncer console and PostgreSQL: pool names both', async () => {
    const db = await createTestDatabase();
    try {
      const bouncer = `postgresql://postgres@127.0.0.1:${services().pgbouncer.port}/pgbouncer`;
      const r = await runDbops(['pool', '--json'], {
        cwd: project({}),
        env: cleanEnv({ DATABASE_URL: db.url, PGBOUNCER_ADMIN_URL: bouncer }),
      });
      const lines = r.stderr.split('\n').filter((l) => l.startsWith('→'));
      // Both connect at once: in either order, each once.
      expect(lines.sort()).toEqual(
        [
          `→ postgresql://postgres@127.0.0.1:${db.port}/${db.name} (DATABASE_URL from the environment)`,
          `→ PgBouncer console postgresql://postgres@127.0.0.1:${services().pgbouncer.port}/pgbouncer (PGBOUNCER_ADMIN_URL from the environment)`,
        ].sort(),
      );
    } finally {
      await db.drop();
    }
  });
});

describe('diagnostics never start the embedded server on their own', () => {
  for (const argv of [['pool'], ['locks'], ['slow-queries'], ['doctor'], ['pool', '--json']]) {
    it(`${argv.join(' ')} in a folder with no configuration: exit 2, one-line cause and hint, nothing started`, async () => {
      const cwd = mkdtempSync(join(tmpdir(), 'dbops-noconf-'));
      const r = await runDbops(argv, { cwd, env: cleanEnv() });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`no database configured: ${argv[0]} does not start the embedded development database`);
      expect(r.stderr).toContain('hint: set DATABASE_URL (or pass --database-url)');
      expect(existsSync(join(cwd, '.dbops', 'pg', 'data'))).toBe(false);
    });
  }
});
