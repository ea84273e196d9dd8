import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  applySchemaMigrations,
  listSchemaMigrations,
  readAppliedSchemaMigrations,
} from '../../src/db/prisma-migrations.js';
import { withClient } from '../helpers/migrations.js';
import { prismaCli } from '../helpers/prisma-cli.js';
import { createTestDatabase } from '../helpers/services.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const MIGRATIONS = join(ROOT, 'prisma', 'migrations');
const INIT = '20231201000000_init';
const MODEL_TABLES = ['Comment', 'Like', 'Order', 'OrderItem', 'Post', 'Product', 'User'];

// ---- helpers ----------------------------------------------------------------------------------------

async function tablesOf(url: string): Promise<string[]> {
  return withClient(url, async (c) => {
    const r = await c.query<{ t: string }>(
      `SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`,
    );
    return r.rows.map((row) => row.t);
  });
}

/** A temporary copy of prisma/migrations plus extra migration folders. */
function migrationsWith(extra: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'dbops-se-migrations-'));
  cpSync(MIGRATIONS, dir, { recursive: true });
  for (const [name, sql] of Object.entries(extra)) {
    mkdirSync(join(dir, name));
    writeFileSync(join(dir, name, 'migration.sql'), sql);
  }
  return dir;
}

const tempDirs: string[] = [];
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

const prisma = (args: string[], databaseUrl: string) => prismaCli(ROOT, args, databaseUrl);

const CREDENTIALS_IN_URL = /[a-z]+:\/\/[^\s/@:]+:[^\s/@]+@/i;

function passwordOf(url: string): string {
  return decodeURIComponent(new URL(url).password);
}

// ---- tests ------------------------------------------------------------------------------------------

describe('Prisma schema migrations, applied as prisma migrate deploy applies them', () => {
  it('lists migration folders with the checksum Prisma stores', async () => {
    const list = await listSchemaMigrations(MIGRATIONS);
    expect(list.map((m) => m.name)).toEqual([INIT]);
    const file = readFileSync(join(MIGRATIONS, INIT, 'migration.sql'));
    expect(list[0]?.checksum).toBe(createHash('sha256').update(file).digest('hex'));
    expect(list[0]?.dir).toBe(join(MIGRATIONS, INIT));
  });

  it('applies every migration to an empty database, records it like Prisma, and applies nothing twice', async () => {
    const db = await createTestDatabase({ empty: true });
    try {
      expect(await withClient(db.url, (c) => readAppliedSchemaMigrations(c))).toEqual([]);

      const started = performance.now();
      expect(await applySchemaMigrations({ connectionString: db.url, migrationsDir: MIGRATIONS })).toEqual({
        applied: [INIT],
      });
      const elapsed = performance.now() - started;
      expect(elapsed).toBeLessThan(10_000);

      expect(await tablesOf(db.url)).toEqual([...MODEL_TABLES, '_prisma_migrations'].sort());
      const [onDisk] = await listSchemaMigrations(MIGRATIONS);
      const applied = await withClient(db.url, (c) => readAppliedSchemaMigrations(c));
      expect(applied).toHaveLength(1);
      expect(applied[0]).toMatchObject({ name: INIT, checksum: onDisk?.checksum, rolledBackAt: null, logs: null });
      expect(applied[0]?.finishedAt).toBeInstanceOf(Date);
      expect(applied[0]?.startedAt.getTime()).toBeLessThanOrEqual(applied[0]?.finishedAt?.getTime() ?? 0);
      const steps = await withClient(db.url, (c) =>
        c.query(`SELECT applied_steps_count AS n FROM "_prisma_migrations"`),
      );
      expect(steps.rows[0]?.n).toBe(1);

      expect(await applySchemaMigrations({ connectionString: db.url, migrationsDir: MIGRATIONS })).toEqual({
        applied: [],
      });
      expect(await withClient(db.url, (c) => readAppliedSchemaMigrations(c))).toHaveLength(1);
    } finally {
      await db.drop();
    }
  });

  it('applies only the named, oldest pending migrations, in order', async () => {
    const dir = migrationsWith({
      '20240101000000_a': `CREATE TABLE "A" (id int, note text DEFAULT 'semi;colon');\nDO $$ BEGIN PERFORM 1; END $$;\n`,
      '20240102000000_b': `CREATE TABLE "B" (id int);\n`,
      '20240103000000_c': `CREATE TABLE "C" (id int);\n`,
    });
    tempDirs.push(dir);
    const db = await createTestDatabase({ empty: true });
    try {
      await expect(
        applySchemaMigrations({ connectionString: db.url, migrationsDir: dir, names: ['20240101000000_a'] }),
      ).rejects.toThrow(/oldest first.*next pending are 20231201000000_init/);
      await expect(
        applySchemaMigrations({ connectionString: db.url, migrationsDir: dir, names: ['nope'] }),
      ).rejects.toThrow(/migration nope: no such folder/);
      expect(await applySchemaMigrations({ connectionString: db.url, migrationsDir: dir, names: [INIT] })).toEqual({
        applied: [INIT],
      });
      expect(
        await applySchemaMigrations({
          connectionString: db.url,
          migrationsDir: dir,
          names: ['20240101000000_a', '20240102000000_b'],
        }),
      ).toEqual({
        applied: ['20240101000000_a', '20240102000000_b'],
      });
      await expect(
        applySchemaMigrations({ connectionString: db.url, migrationsDir: dir, names: ['20240101000000_a'] }),
      ).rejects.toThrow(/already applied/);
      expect(await tablesOf(db.url)).not.toContain('C');
      expect(await applySchemaMigrations({ connectionString: db.url, migrationsDir: dir, names: [] })).toEqual({
        applied: [],
      });
      expect(await applySchemaMigrations({ connectionString: db.url, migrationsDir: dir })).toEqual({
        applied: ['20240103000000_c'],
      });
      const applied = await withClient(db.url, (c) => readAppliedSchemaMigrations(c));
      expect(applied.map((a) => a.name)).toEqual([INIT, '20240101000000_a', '20240102000000_b', '20240103000000_c']);
      // the ';' inside a string literal did not split the script
      const note = await withClient(db.url, (c) =>
        c.query(
          `SELECT column_default AS d FROM information_schema.columns WHERE table_name = 'A' AND column_name = 'note'`,
        ),
      );
      expect(note.rows[0]?.d).toContain('semi;colon');
    } finally {
      await db.drop();
    }
  });

  it('a failing migration throws naming it, rolls its script back and leaves a failed row, as Prisma does', async () => {
    const broken = '20240201000000_broken';
    const dir = migrationsWith({ [broken]: `CREATE TABLE "Half" (id int);\nINSERT INTO "NoSuchTable" VALUES (1);\n` });
    tempDirs.push(dir);
    const db = await createTestDatabase({ empty: true });
    try {
      const error = await applySchemaMigrations({ connectionString: db.url, migrationsDir: dir }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(Error);
      const message = (error as Error).message;
      expect(message).toMatch(new RegExp(`^migration ${broken} failed: `));
      expect(message).toContain('NoSuchTable');
      expect(message).not.toMatch(/^\s+\d+: /m); // no Rust span trace
      expect(message).not.toContain(passwordOf(db.url) || '\u0000');
      expect(message).not.toMatch(CREDENTIALS_IN_URL);

      const rows = await withClient(db.url, (c) => readAppliedSchemaMigrations(c));
      expect(rows.map((r) => r.name)).toEqual([INIT, broken]);
      expect(rows[1]).toMatchObject({ finishedAt: null, rolledBackAt: null });
      expect(rows[1]?.logs).toContain('NoSuchTable');
      // the whole script ran as one implicit transaction, like the native engine: nothing half-applied
      expect(await tablesOf(db.url)).not.toContain('Half');

      // further deploys refuse, naming the failed migration (Prisma's P3009)
      await expect(applySchemaMigrations({ connectionString: db.url, migrationsDir: dir })).rejects.toMatchObject({
        code: 'P3009',
        message: expect.stringMatching(
          new RegExp(`failed migrations in the target database[^]*\\\`${broken}\\\` migration started at`),
        ),
      });
    } finally {
      await db.drop();
    }
  });

  it('never puts a password in an error message', async () => {
    const db = await createTestDatabase({ empty: true });
    try {
      const wrong = new URL(db.url);
      wrong.username = 'dbops_nobody';
      wrong.password = 'Wrong-Pw-Should-Not-Leak-93';
      const error = await applySchemaMigrations({ connectionString: wrong.toString(), migrationsDir: MIGRATIONS }).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(error).toBeInstanceOf(Error);
      expect(error?.message).toMatch(/refused the login: password authentication failed/);
      expect(error?.message).not.toContain('Wrong-Pw-Should-Not-Leak-93');
      expect(error?.message).not.toMatch(CREDENTIALS_IN_URL);
    } finally {
      await db.drop();
    }
  });

  it('concurrent appliers apply each migration once', async () => {
    const db = await createTestDatabase({ empty: true });
    try {
      const results = await Promise.all(
        [1, 2, 3].map(() => applySchemaMigrations({ connectionString: db.url, migrationsDir: MIGRATIONS })),
      );
      expect(results.flatMap((r) => r.applied)).toEqual([INIT]);
      expect(await withClient(db.url, (c) => readAppliedSchemaMigrations(c))).toHaveLength(1);
    } finally {
      await db.drop();
    }
  });

  it('lets the Node process exit promptly after applying (nothing is left running)', async () => {
    const db = await createTestDatabase({ empty: true });
    try {
      const script = [
        `import { applySchemaMigrations } from ${JSON.stringify(join(ROOT, 'src', 'db', 'prisma-migrations.ts'))};`,
        `await applySchemaMigrations({ connectionString: process.env.T_URL, migrationsDir: ${JSON.stringify(MIGRATIONS)} });`,
        `const done = performance.now();`,
        `process.on('exit', () => process.stdout.write(String(Math.round(performance.now() - done))));`,
      ].join('\n');
      const file = join(mkdtempSync(join(tmpdir(), 'dbops-se-exit-')), 'run.mts');
      tempDirs.push(resolve(file, '..'));
      writeFileSync(file, script);
      const exitDelay = await new Promise<number>((done, reject) => {
        const child = spawn(process.execPath, ['--import', 'jiti/register', file], {
          cwd: ROOT,
          env: { ...process.env, T_URL: db.url },
        });
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
        });
        child.stderr.on('data', (d: Buffer) => {
          err += d.toString();
        });
        child.on('exit', (code) =>
          code === 0 ? done(Number(out)) : reject(new Error(`child exited ${code}: ${err}`)),
        );
      });
      expect(exitDelay).toBeLessThan(1000);
    } finally {
      await db.drop();
    }
  });

  it('the official CLI agrees through the engine shim (migrate status / deploy)', async () => {
    const db = await createTestDatabase({ empty: true });
    try {
      const before = await prisma(['migrate', 'status'], db.url);
      expect(before.code).toBe(1);
      expect(before.stdout).toContain('Following migration have not yet been applied:');
      expect(before.stdout).toContain(INIT);

      await applySchemaMigrations({ connectionString: db.url, migrationsDir: MIGRATIONS });
      const after = await prisma(['migrate', 'status'], db.url);
      expect(after.stdout).toContain('Database schema is up to date!');
      expect(after.code).toBe(0);
      expect(`${after.stdout}${after.stderr}`).not.toContain(passwordOf(db.url) || '\u0000');
    } finally {
      await db.drop();
    }

    const other = await createTestDatabase({ empty: true });
    try {
      const deploy = await prisma(['migrate', 'deploy'], other.url);
      expect(deploy.stdout).toContain('All migrations have been successfully applied.');
      expect(deploy.code).toBe(0);
      const [onDisk] = await listSchemaMigrations(MIGRATIONS);
      const rows = await withClient(other.url, (c) => readAppliedSchemaMigrations(c));
      expect(rows.map((r) => [r.name, r.checksum])).toEqual([[INIT, onDisk?.checksum]]);
      expect(await applySchemaMigrations({ connectionString: other.url, migrationsDir: MIGRATIONS })).toEqual({
        applied: [],
      });
    } finally {
      await other.drop();
    }
  });
});
