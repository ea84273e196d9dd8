/**
 * A database that dbops 0.1.0 migrated (its ledger and backfill checkpoints in `public`), made by
 * the real 0.1.0 code: the current dbops moves them into its own schema on the first command that
 * writes, also when 8 processes start at once, also while a 0.1.0 runner holds the lock; nothing is
 * lost or applied twice; a 0.1.0 runner that starts afterwards stops instead of starting over; and
 * Prisma sees none of it.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, runDbops, type StartedProcess, startDbops } from '../helpers/cli.js';
import { dbops010, type OldDbops } from '../helpers/dbops-010.js';
import { AUDIT_DDL, auditCounts, withClient } from '../helpers/migrations.js';
import { prismaProject, prismaVerdict } from '../helpers/prisma-cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/services.js';

const ROOT = join(import.meta.dirname, '..', '..');
const cleanups: (() => Promise<void> | void)[] = [];
const started: StartedProcess[] = [];
afterAll(async () => {
  for (const p of started) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  for (const fn of cleanups.reverse()) await fn();
});

let old: OldDbops | undefined;
let unavailable = '';
beforeAll(async () => {
  const found = await dbops010();
  if ('unavailable' in found) unavailable = found.unavailable;
  else old = found;
}, 120_000);

/** Migration modules both versions load: plain objects, no import. */
const audit = (name: string) =>
  `export default { description: 'audit ${name}', async up({ sql }) { await sql\`INSERT INTO audit (name) VALUES (\${${JSON.stringify(name)}})\`; } };\n`;
const BACKFILL = `export default {
  description: 'mark every bf row done, in batches',
  transaction: false,
  async up(ctx) { await ctx.backfill({ table: 'bf', where: 'NOT done', set: 'done = true', batchSize: 4 }); },
};\n`;
/** Announces itself in $DBOPS_TEST_READY, then holds the lock until $DBOPS_TEST_GO exists. */
const HOLD = `import { existsSync, writeFileSync } from 'node:fs';
export default {
  description: 'held open by the test',
  async up({ sql }) {
    await sql\`INSERT INTO audit (name) VALUES ('held')\`;
    writeFileSync(process.env.DBOPS_TEST_READY, 'ready');
    while (!existsSync(process.env.DBOPS_TEST_GO)) await new Promise((r) => setTimeout(r, 50));
  },
};\n`;

interface App {
  dir: string;
  data: string;
  db: TestDatabase;
  env: Record<string, string>;
  add(file: string, source: string): void;
}

/** A database from the template with an audit table and a small table to backfill, and an app folder. */
async function app(): Promise<App> {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  await withClient(db.url, async (c) => {
    await c.query(AUDIT_DDL);
    await c.query('CREATE TABLE bf (id int PRIMARY KEY, done boolean NOT NULL DEFAULT false)');
    await c.query('INSERT INTO bf (id) SELECT g FROM generate_series(1, 10) g');
  });
  const dir = mkdtempSync(join(tmpdir(), 'dbops-legacy-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const data = join(dir, 'data-migrations');
  const env = cleanEnv({
    DATABASE_URL: db.url,
    DBOPS_MIGRATIONS_DIR: data,
    DBOPS_PRISMA_MIGRATIONS_DIR: join(ROOT, 'prisma', 'migrations'),
    USER: 'e2e-user',
  });
  mkdirSync(data);
  const a: App = {
    dir,
    data,
    db,
    env,
    add: (file, source) => {
      writeFileSync(join(data, file), source);
    },
  };
  return a;
}

async function oldUp(a: App, env: Record<string, string> = {}): Promise<StartedProcess> {
  const p = (old as OldDbops).start(['migrate', 'up'], { cwd: a.dir, env: { ...a.env, ...env } });
  started.push(p);
  return p;
}

/** What is where: the ledger (and from where), checkpoints, and the objects dbops left in public. */
async function state(url: string) {
  return withClient(url, async (c) => {
    const q = async (sql: string) => (await c.query(sql)).rows;
    const publicObjects = await q(
      `SELECT c.relname AS name, c.relkind::text AS kind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname LIKE '\\_dbops%' AND c.relkind IN ('r', 'c') ORDER BY 1`,
    );
    const hasOurs = (await q(`SELECT to_regclass('dbops.data_migrations') IS NOT NULL AS t`))[0]?.t;
    const ledger = hasOurs
      ? await q('SELECT name, checksum, applied_by, dbops_version, repairs FROM dbops.data_migrations ORDER BY name')
      : [];
    const hasCheckpoints = (await q(`SELECT to_regclass('dbops.backfill_checkpoints') IS NOT NULL AS t`))[0]?.t;
    const checkpoints = hasCheckpoints
      ? await q(
          'SELECT migration, rows_done::int AS rows, finished_at IS NOT NULL AS finished FROM dbops.backfill_checkpoints',
        )
      : [];
    return { publicObjects, ledger, checkpoints, audit: await auditCounts(c) };
  });
}

/** A database migrated by dbops 0.1.0: a, the backfill. */
async function migratedBy010(): Promise<App> {
  const a = await app();
  a.add('20240101000000_a.ts', audit('a'));
  a.add('20240102000000_backfill.ts', BACKFILL);
  const r = await (await oldUp(a)).done;
  expect(r.code, r.stderr).toBe(0);
  const before = await state(a.db.url);
  // the real 0.1.0 layout: both tables in public
  expect(before.publicObjects).toEqual([
    { name: '_dbops_backfill_checkpoints', kind: 'r' },
    { name: '_dbops_data_migrations', kind: 'r' },
  ]);
  return a;
}

describe('a database migrated by dbops 0.1.0', () => {
  it('8 processes at once: one moves ledger and checkpoints into dbops’ schema, all apply the new migration once, nothing lost', async (ctx) => {
    if (!old) return ctx.skip(unavailable);
    const a = await migratedBy010();
    const legacyRows = await withClient(
      a.db.url,
      async (c) =>
        (await c.query('SELECT name, checksum, applied_by, dbops_version FROM _dbops_data_migrations ORDER BY name'))
          .rows,
    );
    a.add('20240103000000_c.ts', audit('c'));
    const runs = await Promise.all(
      Array.from({ length: 8 }, () =>
        runDbops(['migrate', 'up', '--lock-timeout', '60s'], { env: a.env, cwd: a.dir, timeoutMs: 90_000 }),
      ),
    );
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    expect(
      runs.filter((r) =>
        /moved dbops 0\.1\.0's ledger public\._dbops_data_migrations \(2 row\(s\)\) to dbops\.data_migrations/.test(
          r.stderr,
        ),
      ),
    ).toHaveLength(1);
    const after = await state(a.db.url);
    // the old rows, as they were (who applied them, with which version), and the new one
    expect(after.ledger.slice(0, 2).map(({ repairs, ...row }) => row)).toEqual(legacyRows);
    expect(after.ledger.map((r) => r.name)).toEqual([
      '20240101000000_a',
      '20240102000000_backfill',
      '20240103000000_c',
    ]);
    expect(after.checkpoints).toEqual([{ migration: '20240102000000_backfill', rows: 10, finished: true }]);
    expect(after.audit).toEqual({ a: 1, c: 1 });
    // in public, only the composite type that stops a 0.1.0 runner
    expect(after.publicObjects).toEqual([{ name: '_dbops_data_migrations', kind: 'c' }]);
    const status = await runDbops(['migrate', 'validate'], { env: a.env, cwd: a.dir });
    expect(status.code, status.stdout).toBe(0);
  });

  it('status reads a 0.1.0 ledger where it is and says the next command that writes moves it; reading moves nothing', async (ctx) => {
    if (!old) return ctx.skip(unavailable);
    const a = await migratedBy010();
    const status = await runDbops(['migrate', 'status'], { env: a.env, cwd: a.dir });
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/20240101000000_a\s*│\s*applied/);
    expect(status.stdout).toContain('the ledger is still where dbops 0.1.0 kept it (public._dbops_data_migrations)');
    expect((await state(a.db.url)).publicObjects).toHaveLength(2);
  });

  it('a 0.1.0 runner started after the move stops: it applies nothing and starts no new ledger', async (ctx) => {
    if (!old) return ctx.skip(unavailable);
    const a = await migratedBy010();
    expect((await runDbops(['migrate', 'up'], { env: a.env, cwd: a.dir })).code).toBe(0);
    a.add('20240104000000_d.ts', audit('d'));
    const r = await (await oldUp(a)).done;
    expect(r.code).not.toBe(0);
    // PostgreSQL's words for "this is not a table" ("is a composite type" / "cannot open relation")
    expect(r.stderr).toMatch(
      /"_dbops_data_migrations" is a composite type|cannot open relation "_dbops_data_migrations"/,
    );
    const after = await state(a.db.url);
    expect(after.audit).toEqual({ a: 1 });
    expect(after.publicObjects).toEqual([{ name: '_dbops_data_migrations', kind: 'c' }]);
    // the current dbops applies it, once
    expect((await runDbops(['migrate', 'up'], { env: a.env, cwd: a.dir })).code).toBe(0);
    expect((await state(a.db.url)).audit).toEqual({ a: 1, d: 1 });
  });

  it('a 0.1.0 runner holding the lock: current runners wait for it, then move its ledger with its last migration in it', async (ctx) => {
    if (!old) return ctx.skip(unavailable);
    const a = await migratedBy010();
    a.add('20240103000000_held.ts', HOLD);
    const signals = mkdtempSync(join(tmpdir(), 'dbops-legacy-signal-'));
    cleanups.push(() => rmSync(signals, { recursive: true, force: true }));
    const ready = join(signals, 'ready');
    const go = join(signals, 'go');
    const holder = await oldUp(a, { DBOPS_TEST_READY: ready, DBOPS_TEST_GO: go });
    for (let i = 0; !existsSync(ready); i++) {
      if (holder.child.exitCode !== null || i > 1200)
        throw new Error(`the 0.1.0 runner never reached its migration: ${holder.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    a.add('20240105000000_e.ts', audit('e'));
    const current = Array.from({ length: 4 }, () => {
      const p = startDbops(['migrate', 'up', '--lock-timeout', '90s'], { env: a.env, cwd: a.dir });
      started.push(p);
      return p;
    });
    // every current runner is waiting for the lock the 0.1.0 runner holds (it says so after 2 s)
    for (let i = 0; !current.every((p) => /waiting for the migration lock/.test(p.output())); i++) {
      if (i > 1200) throw new Error(`not all runners waited: ${current.map((p) => p.output()).join('\n---\n')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    writeFileSync(go, 'go');
    const held = await holder.done;
    expect(held.code, held.stderr).toBe(0);
    for (const p of current) {
      const r = await p.done;
      expect(r.code, r.stderr).toBe(0);
    }
    const after = await state(a.db.url);
    expect(after.ledger.map((r) => r.name)).toEqual([
      '20240101000000_a',
      '20240102000000_backfill',
      '20240103000000_held',
      '20240105000000_e',
    ]);
    expect(after.audit).toEqual({ a: 1, held: 1, e: 1 });
    expect(after.publicObjects).toEqual([{ name: '_dbops_data_migrations', kind: 'c' }]);
  });

  it('after the move, Prisma sees no drift and pulls nothing of dbops (the composite type included)', async (ctx) => {
    if (!old) return ctx.skip(unavailable);
    const a = await migratedBy010();
    expect((await runDbops(['migrate', 'up'], { env: a.env, cwd: a.dir })).code).toBe(0);
    // the template's extra tables (audit, bf) are the test's, not the app's: drop them for Prisma's eyes
    await withClient(a.db.url, (c) => c.query('DROP TABLE audit, bf'));
    const dir = prismaProject(
      readFileSync(join(ROOT, 'prisma', 'schema.prisma'), 'utf8'),
      join(ROOT, 'prisma', 'migrations'),
    );
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const verdict = await prismaVerdict(dir, a.db.url);
    expect(verdict.diff.code, verdict.diff.stdout + verdict.diff.stderr).toBe(0);
    expect(verdict.status.stdout).toContain('Database schema is up to date!');
    expect(verdict.dev.code, verdict.dev.stdout + verdict.dev.stderr).toBe(0);
    expect(verdict.dev.stdout + verdict.dev.stderr).not.toMatch(/Drift detected|reset/i);
    expect(verdict.created.every((m) => /This is an empty migration/.test(m.sql))).toBe(true);
    expect(verdict.pull.stdout).not.toMatch(/dbops|data_migrations|backfill_checkpoints/);
  });
});
