/**
 * The first deploy as real processes: 8 `dbops migrate up --with-schema` started together on one
 * EMPTY database (directly and through PgBouncer) end with every schema and data migration applied
 * exactly once; and a person watching the output sees each schema migration start, finish in order
 * and take its own time.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanEnv, ROOT, runDbops } from '../helpers/cli.js';
import { mig, migrationFolder, prismaMigrationsWith, withClient } from '../helpers/migrations.js';
import { prismaProject, prismaVerdict } from '../helpers/prisma-cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/services.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

async function emptyDb(): Promise<TestDatabase> {
  const db = await createTestDatabase({ empty: true });
  cleanups.push(() => db.drop());
  return db;
}

/** The example app's history plus `extra` migration folders (name → migration.sql). */
function prismaFolder(extra: Record<string, string> = {}): string {
  const dir = prismaMigrationsWith(extra);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function env(db: string, dataDir: string, prismaDir: string): Record<string, string> {
  return cleanEnv({
    DATABASE_URL: db,
    DBOPS_MIGRATIONS_DIR: dataDir,
    DBOPS_PRISMA_MIGRATIONS_DIR: prismaDir,
    USER: 'e2e-user',
  });
}

describe('8 concurrent first deploys on one empty database', () => {
  // 12 schema migrations, each a table and a row in "deploys"; 3 data migrations between them.
  const schema: Record<string, string> = {
    '20240101000000_deploys': 'CREATE TABLE "deploys" (id SERIAL PRIMARY KEY, what TEXT NOT NULL);\n',
  };
  for (let i = 1; i <= 12; i++) {
    schema[`202402${String(i).padStart(2, '0')}000000_t${i}`] =
      `CREATE TABLE "t${i}" (id INT PRIMARY KEY);\nINSERT INTO "deploys" (what) VALUES ('schema ${i}');\nSELECT pg_sleep(0.02);\n`;
  }
  const data = (n: number) =>
    mig(`{
      async up({ sql }) { await sql\`INSERT INTO "deploys" (what) VALUES (\${'data ${n}'})\`; },
      async validate({ sql }) { return (await sql\`SELECT count(*)::int AS n FROM "deploys" WHERE what = \${'data ${n}'}\`).rows[0].n === 1; },
    }`);

  for (const via of ['direct', 'PgBouncer'] as const) {
    it(`every migration applied exactly once, every process exit 0 (${via})`, async () => {
      const db = await emptyDb();
      const prismaDir = prismaFolder(schema);
      const dataDir = migrationFolder({
        '20240203120000_d1.ts': data(1),
        '20240206120000_d2.ts': data(2),
        '20240210120000_d3.ts': data(3),
      });
      cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
      const url = via === 'direct' ? db.url : db.bouncerUrl;
      const runs = await Promise.all(
        Array.from({ length: 8 }, () =>
          runDbops(['migrate', 'up', '--with-schema', '--lock-timeout', '90s'], {
            env: env(url, dataDir, prismaDir),
            timeoutMs: 120_000,
          }),
        ),
      );
      for (const r of runs) expect(r.code, r.stderr).toBe(0);
      await withClient(db.url, async (c) => {
        const deploys = await c.query<{ what: string; n: number }>(
          `SELECT what, count(*)::int AS n FROM "deploys" GROUP BY what ORDER BY what`,
        );
        expect(deploys.rows).toHaveLength(15);
        expect(deploys.rows.every((r) => r.n === 1)).toBe(true);
        const history = await c.query<{ n: number; names: number; done: number }>(
          `SELECT count(*)::int AS n, count(DISTINCT migration_name)::int AS names, count(finished_at)::int AS done FROM _prisma_migrations`,
        );
        expect(history.rows[0]).toEqual({ n: 14, names: 14, done: 14 });
        const ledger = await c.query<{ name: string }>('SELECT name FROM dbops.data_migrations ORDER BY name');
        expect(ledger.rows.map((r) => r.name)).toEqual(['20240203120000_d1', '20240206120000_d2', '20240210120000_d3']);
      });
      // the work was shared out: 14 schema and 3 data migrations applied in all, the rest found done
      const applied = runs.map((r) => (r.stderr.match(/✔ applied/g) ?? []).length);
      expect(applied.reduce((a, b) => a + b, 0)).toBe(17);
    });
  }
});

describe('the output of a first deploy', () => {
  it('each schema migration: its line when it starts, its ✔ line in order, its own time', async () => {
    const prismaDir = prismaFolder({
      '20240101000000_fast_a': 'CREATE TABLE "a" (id int);\n',
      '20240102000000_slow': 'SELECT pg_sleep(1.5);\nCREATE TABLE "b" (id int);\n',
      '20240103000000_fast_c': 'CREATE TABLE "c" (id int);\n',
    });
    const dataDir = migrationFolder({});
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const names = ['20231201000000_init', '20240101000000_fast_a', '20240102000000_slow', '20240103000000_fast_c'];

    // what a person reads (stderr, not a terminal: plain lines)
    const r = await runDbops(['migrate', 'up', '--with-schema'], {
      env: env((await emptyDb()).url, dataDir, prismaDir),
    });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.split('\n').filter((l) => /^(applying|✔)/.test(l));
    expect(lines.map((l) => l.replace(/ \d+(\.\d)? m?s$/, ''))).toEqual(
      names.flatMap((n) => [`applying schema ${n}`, `✔ applied schema ${n}`]),
    );
    expect(lines[5]).toMatch(/^✔ applied schema 20240102000000_slow \d+\.\d s$/);

    // what a script reads
    const json = await runDbops(['--json', 'migrate', 'up', '--with-schema'], {
      env: env((await emptyDb()).url, dataDir, prismaDir),
    });
    expect(json.code, json.stderr).toBe(0);
    const ms = Object.fromEntries(
      (JSON.parse(json.stdout).outcomes as { name: string; durationMs: number }[]).map((o) => [o.name, o.durationMs]),
    );
    // the slow one took its 1.5 s; the others did not get a share of it (a batch average would be 375 ms each)
    expect(ms['20240102000000_slow']).toBeGreaterThanOrEqual(1500);
    expect(ms['20240101000000_fast_a']).toBeLessThan(ms['20240102000000_slow'] as number);
    expect(ms['20240103000000_fast_c']).toBeLessThan(ms['20240102000000_slow'] as number);
  });
});

describe("dbops' own tables, invisible to Prisma", () => {
  const dataMigrations = () =>
    migrationFolder({
      '20240101000000_seed.ts': mig(
        `{ async up({ sql }) { await sql\`INSERT INTO "Product" (id, name, price, "updatedAt") VALUES ('p1', 'one', 1, now())\`; } }`,
      ),
      '20240102000000_backfill.ts': mig(`{
        transaction: false,
        async up(ctx) { await ctx.backfill({ table: 'Product', where: 'price < 10', set: 'price = price + 10' }); },
      }`),
    });

  it('after dbops ran (ledger and checkpoints written), prisma migrate status/diff/dev --create-only are clean and db pull adds nothing', async () => {
    const db = await emptyDb();
    const dataDir = dataMigrations();
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const up = await runDbops(['migrate', 'up', '--with-schema'], {
      env: env(db.url, dataDir, join(ROOT, 'prisma', 'migrations')),
    });
    expect(up.code, up.stderr).toBe(0);
    await withClient(db.url, async (c) => {
      const tables = await c.query(
        `SELECT table_schema || '.' || table_name AS t FROM information_schema.tables WHERE table_schema = 'dbops' ORDER BY 1`,
      );
      expect(tables.rows.map((r) => r.t)).toEqual(['dbops.backfill_checkpoints', 'dbops.data_migrations']);
    });
    const dir = prismaProject(
      readFileSync(join(ROOT, 'prisma', 'schema.prisma'), 'utf8'),
      join(ROOT, 'prisma', 'migrations'),
    );
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const verdict = await prismaVerdict(dir, db.url);
    expect(verdict.status.stdout).toContain('Database schema is up to date!');
    expect(verdict.diff.code, verdict.diff.stdout + verdict.diff.stderr).toBe(0);
    expect(verdict.diff.stdout).toContain('No difference detected.');
    expect(verdict.dev.code, verdict.dev.stdout + verdict.dev.stderr).toBe(0);
    expect(verdict.dev.stdout + verdict.dev.stderr).not.toMatch(/Drift detected|reset/i);
    expect(verdict.created.every((m) => /This is an empty migration/.test(m.sql))).toBe(true);
    expect(verdict.pull.code).toBe(0);
    expect(verdict.pull.stdout).toContain('model Product {');
    expect(verdict.pull.stdout).not.toMatch(/data_migrations|backfill_checkpoints|dbops/);
  });

  it('DBOPS_SCHEMA chooses the schema; the application’s own schema is refused', async () => {
    const db = await emptyDb();
    const dataDir = dataMigrations();
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const e = env(db.url, dataDir, join(ROOT, 'prisma', 'migrations'));
    const refused = await runDbops(['migrate', 'up', '--with-schema'], { env: { ...e, DBOPS_SCHEMA: 'public' } });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/DBOPS_SCHEMA=public: dbops keeps its tables in a schema of its own/);
    const up = await runDbops(['migrate', 'up', '--with-schema'], { env: { ...e, DBOPS_SCHEMA: 'ops_audit' } });
    expect(up.code, up.stderr).toBe(0);
    await withClient(db.url, async (c) => {
      const tables = await c.query(
        `SELECT table_schema || '.' || table_name AS t FROM information_schema.tables WHERE table_schema IN ('dbops', 'ops_audit') ORDER BY 1`,
      );
      expect(tables.rows.map((r) => r.t)).toEqual(['ops_audit.backfill_checkpoints', 'ops_audit.data_migrations']);
    });
    const status = await runDbops(['migrate', 'status'], { env: { ...e, DBOPS_SCHEMA: 'ops_audit' } });
    expect(status.stdout).toMatch(/20240102000000_backfill\s*│\s*applied/);
  });
});
