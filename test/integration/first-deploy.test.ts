/**
 * The first deploy: `migrate up --with-schema` on an EMPTY database applies the whole history (as
 * `prisma migrate deploy` would: P3005 was what a ledger in `public` caused), on plain PostgreSQL
 * 15, through PgBouncer in transaction mode and on the embedded PostgreSQL 18; and its rehearsal
 * fails exactly where the real run fails, and commits nothing even when a script has BEGIN/COMMIT.
 */
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MigrationRunner, type MigrationRunnerOptions, type RunResult, runResultOf } from '../../src/index.js';
import { mig, migrationFolder, prismaMigrationsWith, withClient } from '../helpers/migrations.js';
import { createTestDatabase, services, type TestDatabase } from '../helpers/services.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const INIT = '20231201000000_init';
const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

async function emptyDb(server: 'pg' | 'pg15' = 'pg'): Promise<TestDatabase> {
  const db = await createTestDatabase({ empty: true, server });
  cleanups.push(() => db.drop());
  return db;
}

/** The example app's history plus `extra` migration folders (name → migration.sql). */
function schemaHistory(extra: Record<string, string> = {}): string {
  const dir = prismaMigrationsWith(extra);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** What Prisma writes for an enum change: its own BEGIN/COMMIT around the swap. */
const ALTER_ENUM = `-- AlterEnum
BEGIN;
CREATE TYPE "OrderStatus_new" AS ENUM ('PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED', 'CANCELLED');
ALTER TABLE "Order" ALTER COLUMN "status" DROP DEFAULT;
ALTER TABLE "Order" ALTER COLUMN "status" TYPE "OrderStatus_new" USING ("status"::text::"OrderStatus_new");
ALTER TYPE "OrderStatus" RENAME TO "OrderStatus_old";
ALTER TYPE "OrderStatus_new" RENAME TO "OrderStatus";
DROP TYPE "OrderStatus_old";
ALTER TABLE "Order" ALTER COLUMN "status" SET DEFAULT 'PENDING';
COMMIT;

-- CreateTable
CREATE TABLE "Tag" ("id" SERIAL PRIMARY KEY, "name" TEXT NOT NULL);
`;

const HISTORY = {
  '20240101000000_roles': ALTER_ENUM,
  '20240102000000_tag_index': '-- CreateIndex\nCREATE INDEX CONCURRENTLY "Tag_name_idx" ON "Tag"("name");\n',
  '20240103000000_tag_note': 'ALTER TABLE "Tag" ADD COLUMN "note" TEXT;\n',
};

/** One data migration between the schema migrations: it needs the Tag table. */
function dataMigrations(): string {
  const dir = migrationFolder({
    '20240102120000_seed_tags.ts': mig(`{
      async up({ sql }) { await sql\`INSERT INTO "Tag" (name) VALUES ('first')\`; },
      async validate({ sql }) { return (await sql\`SELECT count(*)::int AS n FROM "Tag"\`).rows[0].n === 1; },
    }`),
  });
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function runner(
  url: string,
  prismaDir: string,
  dataDir: string,
  extra: Partial<MigrationRunnerOptions> = {},
): MigrationRunner {
  const r = new MigrationRunner({
    connectionString: url,
    migrationsDir: dataDir,
    prismaMigrationsDir: prismaDir,
    cwd: ROOT,
    prismaClient: false,
    lockTimeoutMs: 20_000,
    identity: { user: 'tester', host: 'test-host', dbopsVersion: '0.0.0-test' },
    ...extra,
  });
  cleanups.push(() => r.close());
  return r;
}

async function objects(url: string): Promise<string[]> {
  return withClient(url, async (c) => {
    const { rows } = await c.query<{ o: string }>(
      `SELECT n.nspname || '.' || c.relname AS o FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relkind IN ('r', 'p') ORDER BY 1`,
    );
    return rows.map((r) => r.o);
  });
}

const TARGETS: { name: string; server: 'pg' | 'pg15'; bouncer: boolean }[] = [
  { name: 'plain PostgreSQL 15', server: 'pg15', bouncer: false },
  { name: 'PgBouncer (transaction pooling) in front of PostgreSQL 18', server: 'pg', bouncer: true },
  { name: 'the embedded PostgreSQL 18', server: 'pg', bouncer: false },
];

describe('the first deploy on an empty database', () => {
  for (const target of TARGETS) {
    it(`applies the whole history, data migrations interleaved: ${target.name}`, async () => {
      if (target.server === 'pg15' && !services().pg15) return;
      const db = await emptyDb(target.server);
      const url = target.bouncer ? db.bouncerUrl : db.url;
      const prismaDir = schemaHistory(HISTORY);
      const dataDir = dataMigrations();
      const rehearsal = await runner(url, prismaDir, dataDir).up({ withSchema: true, dryRun: true });
      expect(rehearsal.outcomes.map((o) => `${o.name}:${o.status}`)).toEqual([
        `${INIT}:rehearsed`,
        '20240101000000_roles:rehearsed',
        '20240102000000_tag_index:rehearsed',
        '20240102120000_seed_tags:rehearsed',
        '20240103000000_tag_note:rehearsed',
      ]);
      // the rehearsal committed nothing (the enum script's own COMMIT included)
      expect(await objects(db.url)).toEqual([]);

      const result = await runner(url, prismaDir, dataDir).up({ withSchema: true });
      expect(result.outcomes.map((o) => `${o.kind}:${o.name}:${o.status}`)).toEqual([
        `schema:${INIT}:applied`,
        'schema:20240101000000_roles:applied',
        'schema:20240102000000_tag_index:applied',
        'data:20240102120000_seed_tags:applied',
        'schema:20240103000000_tag_note:applied',
      ]);
      // dbops' ledger is in its own schema; the application's schema has only the application's tables
      expect((await objects(db.url)).filter((o) => !o.startsWith('public.'))).toEqual(['dbops.data_migrations']);
      expect(await objects(db.url)).toContain('public._prisma_migrations');
      await withClient(db.url, async (c) => {
        const rows = await c.query(
          `SELECT migration_name, applied_steps_count, logs, finished_at IS NOT NULL AS done FROM _prisma_migrations ORDER BY started_at`,
        );
        expect(rows.rows.map((r) => [r.migration_name, r.applied_steps_count, r.logs, r.done])).toEqual(
          [INIT, ...Object.keys(HISTORY)].map((n) => [n, 1, null, true]),
        );
        expect((await c.query(`SELECT indexname FROM pg_indexes WHERE indexname = 'Tag_name_idx'`)).rowCount).toBe(1);
        expect((await c.query(`SELECT enum_range(NULL::"OrderStatus")::text AS r`)).rows[0].r).toBe(
          '{PENDING,CONFIRMED,SHIPPED,DELIVERED,CANCELLED}',
        );
      });
      const again = await runner(url, prismaDir, dataDir).up({ withSchema: true });
      expect(again.outcomes).toEqual([]);
      const status = await runner(url, prismaDir, dataDir).status();
      expect(status.entries.every((e) => e.state === 'applied')).toBe(true);
    });
  }
});

/** The run's failure: the migration, the step, and what the result says about each migration. */
async function failure(
  run: Promise<RunResult>,
): Promise<{ migration: string | undefined; message: string; outcomes: string[] }> {
  const error = (await run.then(
    () => undefined,
    (e: unknown) => e,
  )) as { migration?: string; message: string } | undefined;
  if (!error) throw new Error('expected the run to fail');
  return {
    migration: error.migration,
    message: error.message,
    outcomes: (runResultOf(error)?.outcomes ?? []).map((o) => `${o.name}:${o.status}`),
  };
}

describe('the rehearsal fails exactly where the real run fails', () => {
  it('a schema that already has tables but no _prisma_migrations: both stop at the first schema migration (P3005)', async () => {
    const db = await emptyDb();
    await withClient(db.url, (c) => c.query('CREATE TABLE leftover (id int)'));
    const prismaDir = schemaHistory();
    const dry = await failure(runner(db.url, prismaDir, dataMigrations()).up({ withSchema: true, dryRun: true }));
    const real = await failure(runner(db.url, prismaDir, dataMigrations()).up({ withSchema: true }));
    expect(dry.migration).toBe(INIT);
    expect(real.migration).toBe(INIT);
    expect(dry.message).toMatch(
      /rehearsal: schema migration 20231201000000_init would fail: The database schema is not empty/,
    );
    expect(real.message).toMatch(/schema migration 20231201000000_init failed: The database schema is not empty/);
    expect(await objects(db.url)).toEqual(['public.leftover']);
  });

  it('a script that fails, and a CONCURRENTLY index in a script of several statements: same migration, same error, nothing left by the rehearsal', async () => {
    for (const broken of [
      'CREATE TABLE "Half" (id int);\nINSERT INTO "NoSuchTable" VALUES (1);\n',
      'CREATE TABLE "Half" (id int);\nCREATE INDEX CONCURRENTLY "Half_id" ON "Half"(id);\n',
    ]) {
      const prismaDir = schemaHistory({
        ...HISTORY,
        '20240104000000_broken': broken,
        '20240105000000_after': 'CREATE TABLE "After" (id int);\n',
      });
      const dryDb = await emptyDb();
      const realDb = await emptyDb();
      const dry = await failure(runner(dryDb.url, prismaDir, dataMigrations()).up({ withSchema: true, dryRun: true }));
      const real = await failure(runner(realDb.url, prismaDir, dataMigrations()).up({ withSchema: true }));
      expect(dry.migration).toBe('20240104000000_broken');
      expect(real.migration).toBe('20240104000000_broken');
      expect(dry.outcomes).toEqual(real.outcomes.map((o) => o.replace(':applied', ':rehearsed')));
      const cause = (m: string) => m.replace(/^.*(would fail|failed): /, '').replace(/ \(rolled back\)$/, '');
      expect(cause(dry.message)).toBe(cause(real.message));
      expect(await objects(dryDb.url)).toEqual([]);
      // the real run stopped there, as Prisma does: the failed migration recorded as failed, nothing half-applied
      const rows = await withClient(realDb.url, (c) =>
        c.query(`SELECT migration_name, finished_at FROM _prisma_migrations ORDER BY started_at`),
      );
      expect(rows.rows.at(-1)).toMatchObject({ migration_name: '20240104000000_broken', finished_at: null });
      expect(await objects(realDb.url)).not.toContain('public.Half');
    }
  });
});

describe('a first run that fails', () => {
  it('leaves no ledger behind: neither a table nor dbops’ schema', async () => {
    const db = await emptyDb();
    const prismaDir = schemaHistory();
    const dataDir = migrationFolder({
      '20240101000000_broken.ts': mig(`{ async up({ sql }) { await sql\`SELECT * FROM "NoSuchTable"\`; } }`),
    });
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    await expect(runner(db.url, prismaDir, dataDir).up({ withSchema: true })).rejects.toThrow(
      /20240101000000_broken failed at up/,
    );
    const schemas = await withClient(db.url, (c) => c.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'dbops'`));
    expect(schemas.rowCount).toBe(0);
    expect((await objects(db.url)).filter((o) => !o.startsWith('public.'))).toEqual([]);
  });
});
