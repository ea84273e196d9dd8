/**
 * MigrationRunner against a real PostgreSQL: ledger, all-or-nothing, rehearsals, drift, selection,
 * broken modules, Prisma bound to the migration transaction, and schema interleaving.
 */
import { cpSync, mkdtempSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MigrationRunner, type MigrationRunnerOptions, runResultOf } from '../../src/index.js';
import {
  AUDIT_DDL,
  auditCounts,
  auditMig,
  mig,
  migrationFolder,
  tableHash,
  withClient,
} from '../helpers/migrations.js';
import { createTestDatabase, type TestDatabase } from '../helpers/services.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const dbs: TestDatabase[] = [];

async function freshDb(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  dbs.push(db);
  await withClient(db.url, (c) => c.query(AUDIT_DDL));
  return db;
}

function runner(db: TestDatabase, dir: string, extra: Partial<MigrationRunnerOptions> = {}): MigrationRunner {
  return new MigrationRunner({
    connectionString: db.url,
    migrationsDir: dir,
    prismaMigrationsDir: join(ROOT, 'prisma', 'migrations'),
    cwd: ROOT,
    identity: { user: 'tester', host: 'test-host', dbopsVersion: '0.0.0-test', ciJob: 'job-42' },
    ...extra,
  });
}

async function using<T>(r: MigrationRunner, fn: (r: MigrationRunner) => Promise<T>): Promise<T> {
  try {
    return await fn(r);
  } finally {
    await r.close();
  }
}

async function ledgerNames(db: TestDatabase): Promise<string[]> {
  return withClient(db.url, async (c) => {
    const { rows: t } = await c.query<{ t: string | null }>(`SELECT to_regclass('dbops.data_migrations')::text AS t`);
    if (!t[0]?.t) return [];
    const { rows } = await c.query<{ name: string }>('SELECT name FROM dbops.data_migrations ORDER BY name');
    return rows.map((r) => r.name);
  });
}

afterAll(async () => {
  for (const db of dbs) await db.drop().catch(() => {});
});

describe('migrate up', () => {
  it('applies pending migrations once, in order, and records who, checksum and timing', async () => {
    const db = await freshDb();
    const dir = migrationFolder({
      '20240201000000_b.ts': auditMig('b'),
      '20240101000000_a.ts': auditMig('a'),
    });
    const first = await using(runner(db, dir), (r) => r.up());
    expect(first.outcomes.map((o) => [o.name, o.status, o.validate])).toEqual([
      ['20240101000000_a', 'applied', true],
      ['20240201000000_b', 'applied', true],
    ]);
    const second = await using(runner(db, dir), (r) => r.up());
    expect(second.outcomes).toEqual([]);
    await withClient(db.url, async (c) => {
      expect(await auditCounts(c)).toEqual({ a: 1, b: 1 });
      const { rows } = await c.query('SELECT * FROM dbops.data_migrations ORDER BY name');
      expect(rows[0]).toMatchObject({
        name: '20240101000000_a',
        description: 'audit a',
        transactional: true,
        marked_only: false,
        applied_by: 'tester',
        applied_host: 'test-host',
        ci_job: 'job-42',
        dbops_version: '0.0.0-test',
        db_user: 'postgres',
      });
      expect(rows[0].checksum).toMatch(/^[0-9a-f]{64}$/);
      expect(rows[0].finished_at.getTime()).toBeGreaterThanOrEqual(rows[0].started_at.getTime());
    });
  });

  it('rolls back a migration whose validate returns false: data and ledger untouched, earlier ones stay', async () => {
    const db = await freshDb();
    const dir = migrationFolder({
      '20240101000000_ok.ts': auditMig('ok'),
      '20240102000000_bad.ts': mig(`{
        async up({ sql }) {
          await sql\`INSERT INTO audit (name) VALUES ('bad')\`;
          await sql\`UPDATE "User" SET "name" = 'changed'\`;
        },
        validate: () => false,
      }`),
      '20240103000000_later.ts': auditMig('later'),
    });
    const before = await withClient(db.url, (c) => tableHash(c, 'User'));
    const error = await using(runner(db, dir), (r) => r.up()).catch((e: unknown) => e);
    expect(error).toMatchObject({ exitCode: 1, details: { migration: '20240102000000_bad', step: 'validate' } });
    expect((error as Error).message).toMatch(
      /20240102000000_bad failed at validate: validate\(\) returned false \(rolled back\)/,
    );
    expect(runResultOf(error)?.outcomes.map((o) => [o.name, o.status])).toEqual([
      ['20240101000000_ok', 'applied'],
      ['20240102000000_bad', 'failed'],
    ]);
    await withClient(db.url, async (c) => {
      expect(await auditCounts(c)).toEqual({ ok: 1 });
      expect(await tableHash(c, 'User')).toBe(before);
    });
    expect(await ledgerNames(db)).toEqual(['20240101000000_ok']);
  });

  it('rolls back a migration whose up throws, naming the step and the cause', async () => {
    const db = await freshDb();
    const dir = migrationFolder({
      '20240101000000_boom.ts': mig(`{
        async up({ sql }) {
          await sql\`INSERT INTO audit (name) VALUES ('boom')\`;
          await sql\`SELECT * FROM no_such_table\`;
        },
      }`),
    });
    const error = await using(runner(db, dir), (r) => r.up()).catch((e: unknown) => e);
    expect((error as Error).message).toMatch(
      /20240101000000_boom failed at up: relation "no_such_table" does not exist/,
    );
    expect(error).toMatchObject({ details: { step: 'up', sqlstate: '42P01' } });
    await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({}));
    expect(await ledgerNames(db)).toEqual([]);
  });

  it('--dry-run runs up and validate for real, reports them, and leaves tables and ledger byte-for-byte unchanged', async () => {
    const db = await freshDb();
    await withClient(db.url, (c) =>
      c.query(
        `INSERT INTO "User" (id, email, "updatedAt") VALUES ('u1', 'a@x', now()), ('u2', 'b@x', now()), ('u3', 'c@x', now())`,
      ),
    );
    const dir = migrationFolder({
      '20240101000000_first.ts': auditMig('first'),
      '20240102000000_roles.ts': mig(`{
        async up({ sql }) { await sql\`UPDATE "User" SET role = \${'USER'} WHERE role IS NULL\`; },
        async validate({ sql }) {
          const { rows } = await sql\`SELECT count(*)::int AS n FROM "User" WHERE role IS NULL\`;
          return rows[0].n === 0;
        },
      }`),
    });
    // one migration applied for real first, so the ledger exists and has content to compare
    await using(runner(db, dir), (r) => r.up({ step: 1 }));
    const snapshot = () =>
      withClient(db.url, async (c) => [
        await tableHash(c, 'User'),
        await tableHash(c, 'audit'),
        await tableHash(c, 'dbops.data_migrations'),
      ]);
    const before = await snapshot();
    const r = await using(runner(db, dir), (x) => x.up({ dryRun: true }));
    expect(r.dryRun).toBe(true);
    const roles = r.outcomes.find((o) => o.name === '20240102000000_roles');
    expect(roles).toMatchObject({ status: 'rehearsed', validate: true, rowsAffected: 3 });
    expect(roles?.statementLog?.some((s) => s.command === 'UPDATE' && s.rowCount === 3)).toBe(true);
    expect(await snapshot()).toEqual(before);
    expect(await ledgerNames(db)).toEqual(['20240101000000_first']);
  });

  it('--dry-run on a database without a ledger does not create it', async () => {
    const db = await freshDb();
    const dir = migrationFolder({ '20240101000000_a.ts': auditMig('a') });
    const r = await using(runner(db, dir), (x) => x.up({ dryRun: true }));
    expect(r.outcomes[0]?.status).toBe('rehearsed');
    await withClient(db.url, async (c) => {
      expect(await tableHash(c, 'dbops.data_migrations')).toBe('absent');
      expect(await auditCounts(c)).toEqual({});
    });
  });

  it('--to and --step select what runs', async () => {
    const db = await freshDb();
    const dir = migrationFolder({
      '20240101000000_a.ts': auditMig('a'),
      '20240102000000_b.ts': auditMig('b'),
      '20240103000000_c.ts': auditMig('c'),
      '20240104000000_d.ts': auditMig('d'),
    });
    await using(runner(db, dir), (r) => r.up({ step: 1 }));
    expect(await ledgerNames(db)).toEqual(['20240101000000_a']);
    await using(runner(db, dir), (r) => r.up({ to: '20240103000000_c' }));
    expect(await ledgerNames(db)).toEqual(['20240101000000_a', '20240102000000_b', '20240103000000_c']);
    await expect(using(runner(db, dir), (r) => r.up({ to: '20240109000000_nope' }))).rejects.toMatchObject({
      exitCode: 2,
    });
    await using(runner(db, dir), (r) => r.up());
    expect(await ledgerNames(db)).toHaveLength(4);
  });
});

describe('migrate down and mark-applied', () => {
  it('reverts newest first (--step, --to), each with its ledger row', async () => {
    const db = await freshDb();
    const dir = migrationFolder({
      '20240101000000_a.ts': auditMig('a'),
      '20240102000000_b.ts': auditMig('b'),
      '20240103000000_c.ts': auditMig('c'),
      '20240104000000_d.ts': auditMig('d'),
    });
    await using(runner(db, dir), (r) => r.up());
    const one = await using(runner(db, dir), (r) => r.down());
    expect(one.outcomes.map((o) => [o.name, o.status])).toEqual([['20240104000000_d', 'reverted']]);
    const rehearsal = await using(runner(db, dir), (r) => r.down({ to: '20240101000000_a', dryRun: true }));
    expect(rehearsal.outcomes.map((o) => o.status)).toEqual(['rehearsed', 'rehearsed']);
    expect(await ledgerNames(db)).toHaveLength(3);
    await using(runner(db, dir), (r) => r.down({ to: '20240101000000_a' }));
    expect(await ledgerNames(db)).toEqual(['20240101000000_a']);
    await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({ a: 1 }));
  });

  it('refuses to revert a migration without down(), before running anything', async () => {
    const db = await freshDb();
    const dir = migrationFolder({
      '20240101000000_a.ts': mig(`{ async up({ sql }) { await sql\`INSERT INTO audit (name) VALUES ('a')\`; } }`),
      '20240102000000_b.ts': auditMig('b'),
    });
    await using(runner(db, dir), (r) => r.up());
    await expect(using(runner(db, dir), (r) => r.down({ step: 2 }))).rejects.toThrow(
      /cannot revert 20240101000000_a: it has no down\(\)/,
    );
    expect(await ledgerNames(db)).toHaveLength(2);
  });

  it('mark-applied records without running; up then skips it', async () => {
    const db = await freshDb();
    const dir = migrationFolder({ '20240101000000_a.ts': auditMig('a'), '20240102000000_b.ts': auditMig('b') });
    const marked = await using(runner(db, dir), (r) => r.markApplied('20240101000000_a'));
    expect(marked.outcomes[0]?.status).toBe('marked');
    await using(runner(db, dir), (r) => r.up());
    await withClient(db.url, async (c) => {
      expect(await auditCounts(c)).toEqual({ b: 1 });
      const { rows } = await c.query('SELECT name, marked_only FROM dbops.data_migrations ORDER BY name');
      expect(rows).toEqual([
        { name: '20240101000000_a', marked_only: true },
        { name: '20240102000000_b', marked_only: false },
      ]);
    });
    await expect(using(runner(db, dir), (r) => r.markApplied('20240109000000_x'))).rejects.toThrow(
      /no such data migration/,
    );
  });
});

describe('drift: status and validate', () => {
  it('reports changed, missing and out-of-order, and validate re-runs validate() read-only', async () => {
    const db = await freshDb();
    const dir = migrationFolder({
      '20240101000000_a.ts': auditMig('a'),
      '20240103000000_c.ts': auditMig('c'),
      '20240104000000_d.ts': auditMig('d'),
    });
    await using(runner(db, dir), (r) => r.up());
    const clean = await using(runner(db, dir), (r) => r.validate());
    expect(clean.ok).toBe(true);
    expect(clean.checked.map((k) => k.verdict)).toEqual([true, true, true]);

    writeFileSync(join(dir, '20240101000000_a.ts'), `${auditMig('a')}\n// edited after it was applied\n`);
    unlinkSync(join(dir, '20240104000000_d.ts'));
    writeFileSync(join(dir, '20240102000000_b.ts'), auditMig('b'));
    // a CRLF copy of an applied file is not drift (line endings are normalised)
    writeFileSync(join(dir, '20240103000000_c.ts'), auditMig('c').replace(/\n/g, '\r\n'));
    const status = await using(runner(db, dir), (r) => r.status());
    const byName = Object.fromEntries(status.entries.map((e) => [e.name, e.state]));
    expect(byName).toMatchObject({
      '20231201000000_init': 'applied',
      '20240101000000_a': 'changed',
      '20240102000000_b': 'out-of-order',
      '20240103000000_c': 'applied',
      '20240104000000_d': 'missing',
    });
    expect(status.entries[0]?.kind).toBe('schema');
    const applied = status.entries.find((e) => e.name === '20240103000000_c');
    expect(applied?.appliedBy).toBe('tester@test-host (job-42)');

    // a validate() that now fails, and one that tries to write (read-only transaction)
    await withClient(db.url, (c) => c.query(`DELETE FROM audit WHERE name = 'c'`));
    const v = await using(runner(db, dir), (r) => r.validate());
    expect(v.ok).toBe(false);
    expect(v.findings.map((f) => [f.name, f.kind]).sort()).toEqual(
      [
        ['20240101000000_a', 'changed'],
        ['20240102000000_b', 'out-of-order'],
        ['20240103000000_c', 'validate-false'],
        ['20240104000000_d', 'missing'],
      ].sort(),
    );
  });

  it('validate() runs in a READ ONLY transaction', async () => {
    const db = await freshDb();
    const dir = migrationFolder({
      '20240101000000_w.ts': mig(`{
        async up() {},
        async validate({ sql }) { await sql\`INSERT INTO audit (name) VALUES ('from-validate')\`; return true; },
      }`),
    });
    await using(runner(db, dir), (r) => r.up());
    await withClient(db.url, (c) => c.query('DELETE FROM audit'));
    const v = await using(runner(db, dir), (r) => r.validate(['20240101000000_w']));
    expect(v.findings.map((f) => f.kind)).toEqual(['validate-error']);
    expect(v.findings.find((f) => f.kind === 'validate-error')?.message).toMatch(/read-only transaction/);
    await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({}));
  });
});

describe('loading', () => {
  it('reports every broken module with its path and cause before anything runs', async () => {
    const db = await freshDb();
    const dir = migrationFolder({
      '20240101000000_good.ts': auditMig('good'),
      '20240102000000_syntax.ts': 'export default {{{ nope',
      '20240103000000_nodefault.ts': 'export const x = 1;\n',
      '20240104000000_noup.ts': mig('{ description: "x", up: undefined as never }').replace(
        'defineDataMigration(',
        '(',
      ),
      '20240105000000_dup.ts': auditMig('dup'),
      '20240105000000_dup.js': 'export default { up() {} };\n',
      'not_a_migration.ts': 'export default {};\n',
    });
    const error = (await using(runner(db, dir), (r) => r.up()).catch((e: unknown) => e)) as {
      problems: { path: string; cause: string }[];
    };
    const causes = Object.fromEntries(error.problems.map((p) => [p.path.split('/').pop(), p.cause]));
    expect(Object.keys(causes).sort()).toEqual(
      [
        '20240102000000_syntax.ts',
        '20240103000000_nodefault.ts',
        '20240104000000_noup.ts',
        '20240105000000_dup.ts',
        'not_a_migration.ts',
      ].sort(),
    );
    expect(causes['20240103000000_nodefault.ts']).toMatch(/no default export/);
    expect(causes['20240104000000_noup.ts']).toMatch(/no up\(\)/);
    expect(causes['20240105000000_dup.ts']).toMatch(/duplicate migration name 20240105000000_dup/);
    expect(causes['not_a_migration.ts']).toMatch(/14-digit UTC timestamp/);
    await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({}));
    expect(await ledgerNames(db)).toEqual([]);
  });

  it('accepts a class in the original design shape', async () => {
    const db = await freshDb();
    const dir = migrationFolder({
      '20240101000000_klass.ts': `export default class AddThing {
        name = 'add_thing';
        description = 'a class migration';
        private readonly label = 'klass';
        async up(ctx: { sql: (s: TemplateStringsArray, ...v: unknown[]) => Promise<unknown> }) {
          await ctx.sql\`INSERT INTO audit (name) VALUES (\${this.label})\`;
        }
        async validate() { return true; }
        async down() {}
      }\n`,
    });
    const r = await using(runner(db, dir), (x) => x.up());
    expect(r.outcomes[0]).toMatchObject({ status: 'applied', validate: true });
    await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({ klass: 1 }));
  });
});

describe('the transaction timeout', () => {
  it('abandons the transaction of an up() that overruns it: statements it still issues never commit', async () => {
    const db = await freshDb();
    const dir = migrationFolder({
      '20240101000000_overrun.ts': mig(`{
        async up({ sql }) {
          // keeps issuing 50 ms statements back to back well past the 1 s timeout, ignoring it
          for (let i = 0; i < 60; i++) {
            try { await sql\`INSERT INTO audit (name) SELECT \${'overrun-' + i} FROM pg_sleep(0.05)\`; } catch {}
          }
        },
      }`),
    });
    await expect(using(runner(db, dir, { transactionTimeoutMs: 1000 }), (r) => r.up())).rejects.toThrow(
      /transaction timeout/,
    );
    // Give the abandoned up() time to try its remaining statements.
    await new Promise((r) => setTimeout(r, 3500));
    await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({}));
    expect(await ledgerNames(db)).toEqual([]);
  });
});

describe('transaction control inside a migration', () => {
  it('refuses a COMMIT through ctx.sql: nothing commits early, nothing is recorded', async () => {
    const db = await freshDb();
    const dir = migrationFolder({
      '20240101000000_commits.ts': mig(`{
        async up({ sql }) {
          await sql\`INSERT INTO audit (name) VALUES ('before-commit')\`;
          await sql.query('COMMIT');
        },
      }`),
    });
    await expect(using(runner(db, dir), (r) => r.up())).rejects.toThrow(/transaction control is not allowed/);
    await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({}));
    expect(await ledgerNames(db)).toEqual([]);
  });
});

describe('ctx.prisma', () => {
  it('runs Prisma queries inside the migration transaction (a failed validate rolls them back)', async () => {
    const db = await freshDb();
    await withClient(db.url, (c) =>
      c.query(`INSERT INTO "User" (id, email, "updatedAt") VALUES ('p1', 'p1@x', now())`),
    );
    const dir = migrationFolder({
      '20240101000000_prisma_rollback.ts': mig(`{
        async up({ prisma }) {
          await prisma.user.update({ where: { id: 'p1' }, data: { name: 'from-prisma' } });
          // a nested interactive transaction becomes a savepoint, not a commit
          await prisma.$transaction(async (tx) => { await tx.user.update({ where: { id: 'p1' }, data: { role: 'ADMIN' } }); });
        },
        async validate({ prisma, sql }) {
          const u = await prisma.user.findUnique({ where: { id: 'p1' } });
          const { rows } = await sql\`SELECT name, role FROM "User" WHERE id = 'p1'\`;
          return u.name === 'from-prisma' && rows[0].role === 'ADMIN' && false;
        },
      }`),
    });
    await expect(using(runner(db, dir), (r) => r.up())).rejects.toThrow(/failed at validate/);
    await withClient(db.url, async (c) => {
      const { rows } = await c.query(`SELECT name, role FROM "User" WHERE id = 'p1'`);
      expect(rows[0]).toEqual({ name: null, role: null });
    });
  });

  it('the example add_user_roles migration: set-based up, validate through Prisma, down restores', async () => {
    const db = await freshDb();
    await withClient(db.url, (c) =>
      c.query(
        `INSERT INTO "User" (id, email, role, "updatedAt") VALUES ('r1', 'r1@x', NULL, now()), ('r2', 'r2@x', 'ADMIN', now()), ('r3', 'r3@x', NULL, now())`,
      ),
    );
    const example = join(ROOT, 'data-migrations');
    const r = await using(runner(db, example), (x) => x.up());
    expect(r.outcomes[0]).toMatchObject({ name: '20240101000000_add_user_roles', status: 'applied', validate: true });
    const roles = () =>
      withClient(db.url, async (c) => (await c.query('SELECT id, role FROM "User" ORDER BY id')).rows);
    expect(await roles()).toEqual([
      { id: 'r1', role: 'USER' },
      { id: 'r2', role: 'ADMIN' },
      { id: 'r3', role: 'USER' },
    ]);
    // three steps: the folder also holds the later backfill and e-mail examples, which are reverted first.
    await using(runner(db, example), (x) => x.down({ step: 3 }));
    expect(await roles()).toEqual([
      { id: 'r1', role: null },
      { id: 'r2', role: 'ADMIN' },
      { id: 'r3', role: null },
    ]);
  });
});

describe('transaction: false', () => {
  it('never records the migration before validate passes; says so in status', async () => {
    const db = await freshDb();
    const dir = migrationFolder({
      '20240101000000_notx.ts': mig(`{
        transaction: false,
        async up({ sql }) { await sql\`INSERT INTO audit (name) VALUES ('notx')\`; },
        async validate({ sql }) {
          const { rows } = await sql\`SELECT count(*)::int AS n FROM audit WHERE name = 'ready'\`;
          return rows[0].n > 0;
        },
      }`),
    });
    await expect(using(runner(db, dir), (r) => r.up())).rejects.toThrow(/failed at validate.*not recorded/);
    expect(await ledgerNames(db)).toEqual([]);
    await withClient(db.url, (c) => c.query(`DELETE FROM audit; INSERT INTO audit (name) VALUES ('ready')`));
    const ok = await using(runner(db, dir), (r) => r.up());
    expect(ok.outcomes[0]).toMatchObject({ status: 'applied', transactional: false });
    const status = await using(runner(db, dir), (r) => r.status());
    expect(status.entries.find((e) => e.name === '20240101000000_notx')).toMatchObject({
      state: 'applied',
      transactional: false,
    });
  });
});

describe('schema migrations', () => {
  let prismaDir: string;
  beforeAll(() => {
    prismaDir = mkdtempSync(join(tmpdir(), 'dbops-prisma-'));
    cpSync(join(ROOT, 'prisma', 'migrations'), prismaDir, { recursive: true });
    cpSync(join(ROOT, 'prisma', 'migrations', 'migration_lock.toml'), join(prismaDir, 'migration_lock.toml'));
    const add = join(prismaDir, '20240601000000_add_nickname');
    cpSync(join(ROOT, 'prisma', 'migrations', '20231201000000_init'), add, { recursive: true });
    writeFileSync(join(add, 'migration.sql'), 'ALTER TABLE "User" ADD COLUMN "nickname" TEXT;\n');
  });

  const files = () =>
    migrationFolder({
      '20240501000000_before.ts': auditMig('before'),
      '20240701000000_uses_nickname.ts': mig(`{
        async up({ sql }) {
          await sql\`INSERT INTO audit (name) SELECT 'nick:' || count(*) FROM "User" WHERE nickname IS NULL\`;
        },
      }`),
    });

  it('refuses a data migration while an older Prisma migration is unapplied, naming it', async () => {
    const db = await freshDb();
    const error = await using(runner(db, files(), { prismaMigrationsDir: prismaDir }), (r) => r.up()).catch(
      (e: unknown) => e,
    );
    expect((error as Error).message).toBe(
      'data migration 20240701000000_uses_nickname needs the Prisma schema migration 20240601000000_add_nickname, which is not applied',
    );
    // nothing ran, not even the older data migration
    await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({}));
    // --to the older one is fine
    await using(runner(db, files(), { prismaMigrationsDir: prismaDir }), (r) => r.up({ to: '20240501000000_before' }));
    expect(await ledgerNames(db)).toEqual(['20240501000000_before']);
  });

  it('--with-schema interleaves schema and data migrations in timestamp order, recorded as Prisma does', async () => {
    const db = await freshDb();
    const dir = files();
    const status0 = await using(runner(db, dir, { prismaMigrationsDir: prismaDir }), (r) => r.status());
    expect(status0.entries.map((e) => `${e.kind}:${e.name}:${e.state}`)).toEqual([
      'schema:20231201000000_init:applied',
      'data:20240501000000_before:pending',
      'schema:20240601000000_add_nickname:pending',
      'data:20240701000000_uses_nickname:pending',
    ]);
    const rehearsal = await using(runner(db, dir, { prismaMigrationsDir: prismaDir }), (r) =>
      r.up({ withSchema: true, dryRun: true }),
    );
    expect(rehearsal.outcomes.map((o) => `${o.kind}:${o.status}`)).toEqual([
      'data:rehearsed',
      'schema:rehearsed',
      'data:rehearsed',
    ]);
    const r = await using(runner(db, dir, { prismaMigrationsDir: prismaDir }), (x) => x.up({ withSchema: true }));
    expect(r.outcomes.map((o) => `${o.kind}:${o.name}`)).toEqual([
      'data:20240501000000_before',
      'schema:20240601000000_add_nickname',
      'data:20240701000000_uses_nickname',
    ]);
    await withClient(db.url, async (c) => {
      const { rows } = await c.query(
        `SELECT migration_name, checksum, finished_at FROM _prisma_migrations ORDER BY started_at`,
      );
      expect(rows.map((x) => x.migration_name)).toEqual(['20231201000000_init', '20240601000000_add_nickname']);
      expect(rows[1].checksum).toMatch(/^[0-9a-f]{64}$/);
      expect(rows[1].finished_at).not.toBeNull();
      // order of side effects: "before" ran before the column existed, "uses_nickname" after
      const { rows: audit } = await c.query('SELECT name FROM audit ORDER BY id');
      expect(audit.map((a) => a.name)).toEqual(['before', 'nick:0']);
    });
    const status = await using(runner(db, dir, { prismaMigrationsDir: prismaDir }), (x) => x.status());
    expect(status.entries.every((e) => e.state === 'applied')).toBe(true);
  });
});
