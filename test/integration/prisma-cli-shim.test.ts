/**
 * The official Prisma CLI, offline, through dbops' engine shim (scripts/prisma-engine-shim.mjs):
 * one test per command an offline team runs, each in a throwaway copy of the example application
 * and on an empty database of its own (real PostgreSQL).
 */
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { prismaCli as prisma } from '../helpers/prisma-cli.js';
import { createTestDatabase, pgUrl, type TestDatabase } from '../helpers/services.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const INIT = '20231201000000_init';
const TAG_MODEL = 'model Tag {\n  id   Int    @id @default(autoincrement())\n  name String\n}\n';

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

/** A copy of the example application (prisma.config.ts, prisma/), with dbops' node_modules linked in. */
function project(): string {
  const dir = mkdtempSync(join(tmpdir(), 'dbops-prisma-cli-'));
  cpSync(join(ROOT, 'prisma'), join(dir, 'prisma'), { recursive: true });
  cpSync(join(ROOT, 'prisma.config.ts'), join(dir, 'prisma.config.ts'));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function database(): Promise<TestDatabase> {
  const db = await createTestDatabase({ empty: true });
  cleanups.push(() => db.drop());
  return db;
}

async function query<R extends pg.QueryResultRow>(url: string, sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}

async function tables(url: string): Promise<string[]> {
  const rows = await query<{ t: string }>(
    url,
    `SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`,
  );
  return rows.map((r) => r.t);
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

describe('the official Prisma CLI offline, through the engine shim', () => {
  it('validate: accepts the schema, rejects a broken one with P1012', async () => {
    const dir = project();
    const ok = await prisma(dir, ['validate']);
    expect(ok.stdout).toContain('The schema at prisma/schema.prisma is valid');
    expect(ok.code).toBe(0);

    writeFileSync(
      join(dir, 'prisma', 'schema.prisma'),
      `${readFileSync(join(dir, 'prisma', 'schema.prisma'), 'utf8')}\nmodel Broken {\n  id Int @id\n  user Nope\n}\n`,
    );
    const bad = await prisma(dir, ['validate']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('P1012');
    expect(bad.stderr).toContain('Nope');
  });

  it('format: rewrites an unformatted schema the way Prisma formats it', async () => {
    const dir = project();
    const file = join(dir, 'prisma', 'schema.prisma');
    writeFileSync(
      file,
      `${readFileSync(file, 'utf8')}\nmodel Tag {\nid Int @id @default(autoincrement())\nname String\n}\n`,
    );
    const run = await prisma(dir, ['format']);
    expect(run.stdout).toMatch(/Formatted prisma\/schema\.prisma in \d+ms/);
    expect(run.code).toBe(0);
    expect(readFileSync(file, 'utf8')).toContain(TAG_MODEL);
  });

  it('generate: writes the client into the generator output', async () => {
    const dir = project();
    const run = await prisma(dir, ['generate']);
    expect(run.stdout).toMatch(/Generated Prisma Client \(7\.\d+\.\d+\) to \.\/src\/generated\/prisma/);
    expect(run.code).toBe(0);
    expect(readFileSync(join(dir, 'src', 'generated', 'prisma', 'client.ts'), 'utf8')).toContain('PrismaClient');
  });

  it('migrate deploy: applies the history to an empty database with the checksums Prisma records', async () => {
    const dir = project();
    const db = await database();
    const run = await prisma(dir, ['migrate', 'deploy'], db.url);
    expect(run.stdout).toContain('All migrations have been successfully applied.');
    expect(run.code).toBe(0);
    expect(await tables(db.url)).toEqual([
      'Comment',
      'Like',
      'Order',
      'OrderItem',
      'Post',
      'Product',
      'User',
      '_prisma_migrations',
    ]);
    const rows = await query<{ migration_name: string; checksum: string; finished_at: Date | null }>(
      db.url,
      `SELECT migration_name, checksum, finished_at FROM "_prisma_migrations"`,
    );
    expect(rows.map((r) => [r.migration_name, r.checksum])).toEqual([
      [INIT, sha256(join(dir, 'prisma', 'migrations', INIT, 'migration.sql'))],
    ]);
    expect(rows[0]?.finished_at).toBeInstanceOf(Date);
  });

  it('migrate status: pending (exit 1), then up to date (exit 0)', async () => {
    const dir = project();
    const db = await database();
    const before = await prisma(dir, ['migrate', 'status'], db.url);
    expect(before.stdout).toContain(`Following migration have not yet been applied:\n${INIT}`);
    expect(before.code).toBe(1);
    expect((await prisma(dir, ['migrate', 'deploy'], db.url)).code).toBe(0);
    const after = await prisma(dir, ['migrate', 'status'], db.url);
    expect(after.stdout).toContain('Database schema is up to date!');
    expect(after.code).toBe(0);
  });

  it("errors keep Prisma's code, name the adapter's cause, and never carry the password", async () => {
    const dir = project();
    const db = await database();
    const wrong = new URL(db.url);
    wrong.username = 'dbops_nobody';
    wrong.password = 'Shim-Pw-Must-Not-Leak-71';
    const denied = await prisma(dir, ['migrate', 'status'], wrong.toString());
    expect(denied.code).toBe(1);
    expect(`${denied.stdout}${denied.stderr}`).not.toContain('Shim-Pw-Must-Not-Leak-71');
    expect(denied.stderr).toMatch(/P1000|authentication|dbops_nobody/);

    const closed = new URL(db.url);
    closed.port = '9';
    closed.password = 'Shim-Pw-Must-Not-Leak-72';
    const refused = await prisma(
      dir,
      ['migrate', 'diff', '--from-config-datasource', '--to-schema', 'prisma/schema.prisma'],
      closed.toString(),
    );
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("Can't reach database server at `127.0.0.1:9`");
    expect(refused.stderr).not.toContain('External error id#');
    expect(`${refused.stdout}${refused.stderr}`).not.toContain('Shim-Pw-Must-Not-Leak-72');
  });

  it('migrate resolve: --rolled-back a failed migration, --applied a baseline, without running its script', async () => {
    const dir = project();
    const db = await database();
    const failing = '20240101000000_failing';
    mkdirSync(join(dir, 'prisma', 'migrations', failing));
    writeFileSync(
      join(dir, 'prisma', 'migrations', failing, 'migration.sql'),
      'CREATE TABLE "Half" (id int);\nSELECT * FROM "NoSuchTable";\n',
    );
    const deploy = await prisma(dir, ['migrate', 'deploy'], db.url);
    expect(deploy.code).toBe(1);
    expect(`${deploy.stdout}${deploy.stderr}`).toContain('NoSuchTable');

    const rolledBack = await prisma(dir, ['migrate', 'resolve', '--rolled-back', failing], db.url);
    expect(rolledBack.stdout).toContain(`Migration ${failing} marked as rolled back.`);
    expect(rolledBack.code).toBe(0);

    // the fixed script was applied by hand; record it as applied without running it
    writeFileSync(join(dir, 'prisma', 'migrations', failing, 'migration.sql'), 'CREATE TABLE "Whole" (id int);\n');
    const applied = await prisma(dir, ['migrate', 'resolve', '--applied', failing], db.url);
    expect(applied.stdout).toContain(`Migration ${failing} marked as applied.`);
    expect(applied.code).toBe(0);
    expect(await tables(db.url)).not.toContain('Whole');
    const rows = await query<{ checksum: string; rolled_back_at: Date | null; finished_at: Date | null }>(
      db.url,
      `SELECT checksum, rolled_back_at, finished_at FROM "_prisma_migrations" WHERE migration_name = '${failing}' ORDER BY started_at`,
    );
    expect(rows).toHaveLength(2);
    expect(rows[0]?.rolled_back_at).toBeInstanceOf(Date);
    expect(rows[1]).toMatchObject({
      checksum: sha256(join(dir, 'prisma', 'migrations', failing, 'migration.sql')),
      rolled_back_at: null,
    });
    expect((await prisma(dir, ['migrate', 'status'], db.url)).stdout).toContain('Database schema is up to date!');
  });

  it('migrate diff: every --from/--to form, --script, -o and --exit-code', async () => {
    const dir = project();
    const schema = 'prisma/schema.prisma';

    // no database at all: schema files and empty need none (the native engine needs none either)
    const script = await prisma(dir, ['migrate', 'diff', '--from-empty', '--to-schema', schema, '--script']);
    expect(script.code).toBe(0);
    expect(script.stdout).toContain('CREATE TABLE "User" (');
    expect(script.stdout).toContain('ALTER TABLE "OrderItem" ADD CONSTRAINT "OrderItem_productId_fkey"');
    const out = join(dir, 'diff.sql');
    const toFile = await prisma(dir, ['migrate', 'diff', '--from-empty', '--to-schema', schema, '--script', '-o', out]);
    expect(toFile.code).toBe(0);
    expect(toFile.stdout).not.toContain('CREATE TABLE');
    expect(readFileSync(out, 'utf8')).toBe(script.stdout.replace(/\n$/, ''));

    const summary = await prisma(dir, ['migrate', 'diff', '--from-empty', '--to-schema', schema, '--exit-code']);
    expect(summary.stdout).toContain('[+] Added tables');
    expect(summary.code).toBe(2);
    const same = await prisma(dir, ['migrate', 'diff', '--from-schema', schema, '--to-schema', schema, '--exit-code']);
    expect(same.stdout).toContain('No difference detected.');
    expect(same.code).toBe(0);
    const drop = await prisma(dir, ['migrate', 'diff', '--from-schema', schema, '--to-empty', '--script']);
    expect(drop.stdout).toContain('DROP TABLE "public"."User";');

    // migrations need a shadow database (a temporary one on the server, dropped afterwards)
    const db = await database();
    const shadowsBefore = await query(
      pgUrl(),
      `SELECT datname FROM pg_database WHERE datname LIKE 'prisma_migrate_shadow_db_%'`,
    );
    const fromMigrations = await prisma(
      dir,
      ['migrate', 'diff', '--from-migrations', 'prisma/migrations', '--to-schema', schema, '--exit-code'],
      db.url,
    );
    expect(fromMigrations.stdout).toContain('No difference detected.');
    expect(fromMigrations.code).toBe(0);
    const toMigrations = await prisma(
      dir,
      ['migrate', 'diff', '--from-empty', '--to-migrations', 'prisma/migrations', '--script'],
      db.url,
    );
    expect(toMigrations.stdout).toContain('CREATE TABLE "public"."Post" (');
    const shadowsAfter = await query(
      pgUrl(),
      `SELECT datname FROM pg_database WHERE datname LIKE 'prisma_migrate_shadow_db_%'`,
    );
    expect(shadowsAfter.length).toBeLessThanOrEqual(shadowsBefore.length);

    // the configured database, before and after deploy
    const pending = await prisma(
      dir,
      ['migrate', 'diff', '--from-config-datasource', '--to-schema', schema, '--script', '--exit-code'],
      db.url,
    );
    expect(pending.stdout).toContain('CREATE TABLE "Order" (');
    expect(pending.code).toBe(2);
    expect((await prisma(dir, ['migrate', 'deploy'], db.url)).code).toBe(0);
    const clean = await prisma(
      dir,
      ['migrate', 'diff', '--from-config-datasource', '--to-schema', schema, '--exit-code'],
      db.url,
    );
    expect(clean.stdout).toContain('No difference detected.');
    expect(clean.code).toBe(0);
    const reverse = await prisma(
      dir,
      ['migrate', 'diff', '--from-migrations', 'prisma/migrations', '--to-config-datasource', '--exit-code'],
      db.url,
    );
    expect(reverse.code).toBe(0);
  });

  it('migrate dev --create-only: writes the next migration and applies nothing', async () => {
    const dir = project();
    const db = await database();
    expect((await prisma(dir, ['migrate', 'deploy'], db.url)).code).toBe(0);
    const file = join(dir, 'prisma', 'schema.prisma');
    writeFileSync(file, `${readFileSync(file, 'utf8')}\n${TAG_MODEL}`);
    const run = await prisma(dir, ['migrate', 'dev', '--create-only', '--name', 'add_tag'], db.url);
    expect(run.code).toBe(0);
    const created = readdirSync(join(dir, 'prisma', 'migrations')).filter((d) => d.endsWith('_add_tag'));
    expect(created).toHaveLength(1);
    const sql = readFileSync(join(dir, 'prisma', 'migrations', created[0] as string, 'migration.sql'), 'utf8');
    expect(sql).toContain('CREATE TABLE "Tag" (');
    expect(await tables(db.url)).not.toContain('Tag');
    // and it is exactly what migrate deploy then applies
    expect((await prisma(dir, ['migrate', 'deploy'], db.url)).code).toBe(0);
    expect(await tables(db.url)).toContain('Tag');
  });

  it('db execute: a script from a file or stdin, run whole (a ";" inside a string or a DO body is no separator)', async () => {
    const dir = project();
    const db = await database();
    const file = join(dir, 'script.sql');
    writeFileSync(
      file,
      `CREATE TABLE t (note text);\nINSERT INTO t VALUES ('semi;colon');\nDO $$ BEGIN INSERT INTO t VALUES ('from;do'); END $$;\n`,
    );
    const run = await prisma(dir, ['db', 'execute', '--file', file], db.url);
    expect(run.stdout).toContain('Script executed successfully.');
    expect(run.code).toBe(0);
    const fromStdin = await prisma(dir, ['db', 'execute', '--stdin'], db.url, `INSERT INTO t VALUES ('stdin');`);
    expect(fromStdin.code).toBe(0);
    expect((await query<{ note: string }>(db.url, 'SELECT note FROM t ORDER BY note')).map((r) => r.note)).toEqual([
      'from;do',
      'semi;colon',
      'stdin',
    ]);
  });

  it('db pull: writes the database tables into the schema (and --print prints it)', async () => {
    const dir = project();
    const db = await database();
    expect((await prisma(dir, ['migrate', 'deploy'], db.url)).code).toBe(0);
    await query(db.url, 'CREATE TABLE "Pulled" (id serial PRIMARY KEY, label text NOT NULL)');
    const printed = await prisma(dir, ['db', 'pull', '--print'], db.url);
    expect(printed.code).toBe(0);
    expect(printed.stdout).toMatch(
      /model Pulled \{\n\s+id\s+Int\s+@id @default\(autoincrement\(\)\)\n\s+label\s+String\n\}/,
    );
    const run = await prisma(dir, ['db', 'pull'], db.url);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/Introspected 8 models and wrote them into prisma\/schema\.prisma/);
    const schema = readFileSync(join(dir, 'prisma', 'schema.prisma'), 'utf8');
    expect(schema).toContain('model Pulled {');
    expect(schema).toContain('model OrderItem {');
    expect(existsSync(join(dir, 'prisma', 'schema.prisma'))).toBe(true);
  });
});
