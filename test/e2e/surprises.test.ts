/**
 * The smaller surprises of issue 13, each as a user meets it: the built CLI on the harness' real
 * Redis and PostgreSQL. Each test fails without its fix.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, cleanEnv, ROOT, runDbops } from '../helpers/cli.js';
import { auditMig, withClient } from '../helpers/migrations.js';
import { createTestDatabase, redisNamespace, redisUrl, type TestDatabase } from '../helpers/services.js';

/** Run dbops through bash, so an argument can hold bytes that are not UTF-8 ($'\xff'). */
function viaBash(script: string, env: Record<string, string>): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('bash', ['-c', `"${process.execPath}" "${BIN}" ${script}`], { env, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('cache patterns', () => {
  let client: Redis;
  let ns: string;
  beforeAll(async () => {
    client = new Redis(redisUrl());
    ns = redisNamespace();
  });
  afterAll(async () => {
    await client?.quit();
  });

  it("a pattern with bytes that are not UTF-8 is refused (nothing deleted); --hex deletes exactly the server's match", async () => {
    const raw = Buffer.concat([Buffer.from(`${ns}bin:`), Buffer.from([0xff]), Buffer.from('1')]);
    const replacement = Buffer.from(`${ns}bin:\uFFFD1`, 'utf8');
    await client.set(raw, 'x');
    await client.set(replacement, 'y');
    const env = cleanEnv({ REDIS_URL: redisUrl() });
    const refused = viaBash(`cache flush $'${ns}bin:\\xff*' --yes`, env);
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toContain('the pattern is not valid UTF-8');
    const hex = Buffer.concat([Buffer.from(`${ns}bin:`), Buffer.from([0xff]), Buffer.from('*')]).toString('hex');
    expect(refused.stderr).toContain(`--hex ${hex}`);
    expect(await client.exists(raw)).toBe(1);
    expect(await client.exists(replacement)).toBe(1);

    const flushed = await runDbops(['cache', 'flush', '--hex', hex, '--yes', '--json'], { env });
    expect(flushed.code, flushed.stderr).toBe(0);
    expect(JSON.parse(flushed.stdout)).toMatchObject({ removed: 1 });
    expect(await client.exists(raw)).toBe(0);
    expect(await client.exists(replacement)).toBe(1);
  });

  it('a pattern that already starts with CACHE_KEY_PREFIX is refused, naming the effective pattern', async () => {
    await client.set(`${ns}user:1`, '1');
    const prefix = ns.slice(0, -1);
    const r = await runDbops(['cache', 'flush', `${ns}user:1*`, '--yes'], {
      env: cleanEnv({ REDIS_URL: redisUrl(), CACHE_KEY_PREFIX: prefix }),
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `already starts with the key prefix '${ns}' (CACHE_KEY_PREFIX from the environment): dbops would match '${ns}${ns}user:1*'`,
    );
    expect(r.stderr).toContain("hint: drop the prefix from the pattern ('user:1*')");
    expect(await client.exists(`${ns}user:1`)).toBe(1);
    // Without the prefix in the pattern it matches, and the effective pattern is said.
    const keys = await runDbops(['cache', 'keys', 'user:1*'], {
      env: cleanEnv({ REDIS_URL: redisUrl(), CACHE_KEY_PREFIX: prefix }),
    });
    expect(keys.code, keys.stderr).toBe(0);
    expect(keys.stderr).toContain(`matching '${ns}user:1*'`);
  });

  it("'*' under the prefix 'app:' is refused with the right text", async () => {
    const r = await runDbops(['cache', 'flush', '*', '--yes'], {
      env: cleanEnv({ REDIS_URL: redisUrl(), CACHE_KEY_PREFIX: 'app:' }),
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      "pattern '*' matches every key under the prefix 'app:' ('app:*'): refusing without --all",
    );
    expect(r.stderr).not.toContain('app::');
  });

  it("a pattern that starts with '-' goes after --, and the error says so", async () => {
    await client.set(`-${ns}tmp:1`, '1');
    const env = cleanEnv({ REDIS_URL: redisUrl() });
    const wrong = await runDbops(['cache', 'keys', `-${ns}tmp:*`], { env });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('goes after --');
    const right = await runDbops(['cache', 'keys', '--json', '--', `-${ns}tmp:*`], { env });
    expect(right.code, right.stderr).toBe(0);
    expect(JSON.parse(right.stdout)).toMatchObject({ count: 1 });
  });
});

describe('migrate validate with a name that is no migration', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('exits 2 (usage) with the near names as a hint', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'dbops-validate-'));
    mkdirSync(join(cwd, 'data-migrations'));
    writeFileSync(join(cwd, 'data-migrations', '20250101000000_audit_one.ts'), auditMig('one'));
    const env = cleanEnv({ DATABASE_URL: db.url });
    const typo = await runDbops(['migrate', 'validate', 'audit_on'], { cwd, env });
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain('validate: no data migration named audit_on');
    expect(typo.stderr).toContain('did you mean 20250101000000_audit_one?');
    const none = await runDbops(['migrate', 'validate', 'no_such_name'], { cwd, env });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('hint: dbops migrate status lists the data migrations');
  });
});

describe('connection strings a person gets wrong', () => {
  let db: TestDatabase;
  let role: string;
  beforeAll(async () => {
    db = await createTestDatabase();
    role = `r_${db.name}`;
    await withClient(db.url, (c) => c.query(`CREATE ROLE ${role} LOGIN PASSWORD 'the-right-one'`));
  });
  afterAll(async () => {
    await withClient(db.url, (c) => c.query(`DROP ROLE IF EXISTS ${role}`)).catch(() => {});
    await db?.drop();
  });

  it('a wrong password: exit 5, the hint names the user and where the password came from, never the password', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'dbops-pw-'));
    writeFileSync(join(cwd, '.env'), `DATABASE_URL=postgresql://${role}:not-the-one@127.0.0.1:${db.port}/${db.name}\n`);
    const r = await runDbops(['locks'], { cwd, env: cleanEnv() });
    expect(r.code).toBe(5);
    expect(r.stderr).toContain(
      `hint: the server refused user "${role}" with the password from DATABASE_URL in ${join(cwd, '.env')}: check that password`,
    );
    expect(r.stdout + r.stderr).not.toContain('not-the-one');
  });

  it('an unencoded "@" in the password: exit 2, says the password needs percent-encoding, connects nowhere', async () => {
    const url = `postgresql://${role}:p@ss?w@127.0.0.1:${db.port}/${db.name}`;
    const r = await runDbops(['locks'], { env: cleanEnv({ DATABASE_URL: url }) });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'has an unencoded "@" in the password, so the URL parser reads a piece of it as the host',
    );
    expect(r.stderr).toContain('@ as %40');
    expect(r.stderr).not.toMatch(/ENOTFOUND|p@ss/);
  });
});

describe('migrate create templates', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  /** A project folder whose `dbops` import resolves to this package, as after npm install. */
  function projectWithDbops(): string {
    const cwd = mkdtempSync(join(tmpdir(), 'dbops-create-'));
    mkdirSync(join(cwd, 'node_modules'));
    symlinkSync(ROOT, join(cwd, 'node_modules', 'dbops'));
    return cwd;
  }

  for (const variant of [[], ['--no-transaction']]) {
    it(`an unedited template${variant.length ? ' (--no-transaction)' : ''} fails with "edit me" (rehearsal and up) and changes nothing`, async () => {
      const cwd = projectWithDbops();
      const env = cleanEnv({ DATABASE_URL: db.url });
      const created = await runDbops(['migrate', 'create', 'fill_things', ...variant], { cwd, env });
      expect(created.code, created.stderr).toBe(0);
      const path = /created (\S+)/.exec(created.stdout)?.[1] ?? '';
      const source = readFileSync(path, 'utf8');
      // both templates can be undone
      expect(source).toMatch(/async down\(/);
      // A transaction: false migration is not rehearsed (its batches commit), so only up runs it.
      const runs = variant.length
        ? [['migrate', 'up']]
        : [
            ['migrate', 'up', '--dry-run'],
            ['migrate', 'up'],
          ];
      for (const argv of runs) {
        const r = await runDbops(argv, { cwd, env });
        expect(r.code, r.stderr).not.toBe(0);
        expect(r.stdout + r.stderr).toMatch(
          /_fill_things failed at up: this migration is still the template of dbops migrate create: write up\(\), validate\(\) and down\(\), then delete this line/,
        );
        expect(r.stdout + r.stderr).not.toMatch(/TableName/);
      }
      const status = await runDbops(['migrate', 'status', '--json'], { cwd, env });
      const doc = JSON.parse(status.stdout) as { entries: Array<{ name: string; state: string }> };
      expect(doc.entries.find((e) => e.name.endsWith('_fill_things'))?.state).toBe('pending');
    });
  }
});
