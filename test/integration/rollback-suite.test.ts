/**
 * Rollback suite (docs/reliability.md): 30 ways a migration can fail or try to escape its
 * transaction, each checked by hashing `pg_dump --data-only` and `--schema-only` before and after
 * (Debian's pg_dump 15, so on PostgreSQL 15). Figure: dumps changed (must be 0).
 */
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MigrationRunner } from '../../src/index.js';
import { mig, migrationFolder, withClient } from '../helpers/migrations.js';
import { appliedNames, dumpHashes, writeFigures } from '../helpers/reliability.js';
import { createTestDatabase, services, type TestDatabase } from '../helpers/services.js';

const ROOT = resolve(import.meta.dirname, '..', '..');

/** Applied first, so the ledger exists; every case's folder carries it (already applied: skipped). */
const PRIMER = {
  '20230101000000_primer.ts': mig(
    `{ async up({ sql }) { await sql\`INSERT INTO audit (name) VALUES ('primer')\`; }, async down({ sql }) { await sql\`DELETE FROM audit WHERE name = 'primer'\`; } }`,
  ),
};

/** A migration whose down() fails: applied in setup, its revert is a case. */
const BAD_DOWN = {
  '20230102000000_bad_down.ts': mig(`{
    async up({ sql }) { await sql\`INSERT INTO audit (name) VALUES ('bad_down')\`; },
    async down({ sql }) { await sql\`DELETE FROM audit\`; await sql\`DROP TABLE items\`; throw new Error('down failed on purpose'); },
  }`),
};

type Run = 'up' | 'down' | 'dry-run';
interface Case {
  name: string;
  up?: string;
  validate?: string;
  run?: Run;
  /** What the error must say (a dry-run that succeeds: null). */
  error: RegExp | null;
  transactionTimeoutMs?: number;
}

const w = `await sql\`INSERT INTO audit (name) VALUES ('x')\`; await sql\`UPDATE items SET counter = counter + 1\`;`;
const CASES: Case[] = [
  { name: 'up throws', up: `${w} throw new Error('boom');`, error: /failed at up: boom \(rolled back\)/ },
  {
    name: 'validate returns false',
    up: w,
    validate: 'return false;',
    error: /failed at validate: validate\(\) returned false/,
  },
  { name: 'validate throws', up: w, validate: "throw new Error('no');", error: /failed at validate: no/ },
  { name: 'SQL syntax error after writes', up: `${w} await sql\`SELEC 1\`;`, error: /syntax error/ },
  {
    name: 'unique violation after writes',
    up: `${w} await sql\`INSERT INTO items (id) VALUES (1)\`;`,
    error: /duplicate key/,
  },
  {
    name: 'CREATE TABLE, then validate false',
    up: `${w} await sql\`CREATE TABLE made (id int)\`;`,
    validate: 'return false;',
    error: /returned false/,
  },
  {
    name: 'ALTER TABLE ADD COLUMN, then throw',
    up: `await sql\`ALTER TABLE items ADD COLUMN note text DEFAULT 'n'\`; throw new Error('after alter');`,
    error: /after alter/,
  },
  {
    name: 'CREATE INDEX, then throw',
    up: `await sql\`CREATE INDEX items_counter ON items (counter)\`; throw new Error('after index');`,
    error: /after index/,
  },
  {
    name: 'DROP TABLE, then validate false',
    up: 'await sql`DROP TABLE items`;',
    validate: 'return false;',
    error: /returned false/,
  },
  {
    name: 'TRUNCATE, then throw',
    up: `await sql\`TRUNCATE audit\`; throw new Error('after truncate');`,
    error: /after truncate/,
  },
  {
    name: 'function and trigger, then throw',
    up: `await sql\`CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.counter := NEW.counter + 100; RETURN NEW; END; $$\`;
         await sql\`CREATE TRIGGER bump BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION bump()\`; ${w} throw new Error('after trigger');`,
    error: /after trigger/,
  },
  {
    name: 'DO block, then throw',
    up: `await sql\`DO $$ BEGIN INSERT INTO audit (name) VALUES ('do'); END $$\`; throw new Error('after do');`,
    error: /after do/,
  },
  {
    name: 'SAVEPOINT and ROLLBACK TO, then throw',
    up: `await sql\`SAVEPOINT s\`; ${w} await sql\`ROLLBACK TO SAVEPOINT s\`; ${w} throw new Error('after savepoint');`,
    error: /after savepoint/,
  },
  {
    name: 'session SET and sequence use, then throw',
    up: `await sql\`SET search_path TO pg_catalog\`; await sql\`SELECT nextval('public.audit_id_seq')\`; throw new Error('after set');`,
    error: /after set/,
  },
  {
    name: 'the transaction timeout, with statements still queued',
    up: `${w} await new Promise((r) => setTimeout(r, 1500)); await sql\`INSERT INTO audit (name) VALUES ('late')\`;`,
    transactionTimeoutMs: 1000,
    error: /transaction timeout/,
  },
  {
    name: "ctx.sql: `UPDATE ... 'a -- b' ...; COMMIT`",
    up: `${w} await sql.query("UPDATE audit SET name = 'a -- b' WHERE name = 'x'; COMMIT");`,
    validate: 'return false;',
    error: /transaction control is not allowed.*: COMMIT/,
  },
  {
    name: 'ctx.sql: COMMIT AND CHAIN',
    up: `${w} await sql.query('COMMIT AND CHAIN');`,
    error: /transaction control.*COMMIT AND CHAIN/,
  },
  { name: 'ctx.sql: END', up: `${w} await sql.query('END');`, error: /transaction control.*END/ },
  {
    name: 'ctx.sql: ROLLBACK, then writes',
    up: `${w} await sql.query('ROLLBACK'); ${w}`,
    error: /transaction control.*ROLLBACK/,
  },
  { name: 'ctx.sql: ABORT', up: `${w} await sql.query('abort');`, error: /transaction control.*abort/ },
  {
    name: 'ctx.sql: PREPARE TRANSACTION',
    up: `${w} await sql.query("PREPARE TRANSACTION 'dbops_escape'");`,
    error: /transaction control.*PREPARE TRANSACTION/,
  },
  { name: 'ctx.sql: BEGIN inside', up: `${w} await sql\`BEGIN\`;`, error: /transaction control.*BEGIN/ },
  {
    name: 'ctx.sql.raw: COMMIT spliced into a template',
    up: `${w} await sql\`SELECT 1; \${sql.raw('COMMIT')}\`;`,
    error: /transaction control.*COMMIT/,
  },
  {
    name: "ctx.prisma: $executeRawUnsafe('COMMIT')",
    up: `${w} await prisma.$executeRawUnsafe('COMMIT');`,
    error: /ctx.prisma: transaction control.*COMMIT/,
  },
  {
    name: "ctx.prisma: $queryRawUnsafe('END')",
    up: `${w} await prisma.$queryRawUnsafe('END');`,
    error: /ctx.prisma: transaction control.*END/,
  },
  {
    name: 'ctx.prisma: $transaction with a raw COMMIT inside',
    up: `${w} await prisma.$transaction(async (tx) => { await tx.user.create({ data: { id: 'r1', email: 'r1@x' } }); await tx.$executeRawUnsafe('COMMIT'); });`,
    error: /transaction control.*COMMIT/,
  },
  {
    name: 'ctx.prisma: $transaction that throws, then validate false',
    up: `${w} await prisma.$transaction(async (tx) => { await tx.user.create({ data: { id: 'r2', email: 'r2@x' } }); throw new Error('inner'); }).catch(() => {}); await prisma.user.create({ data: { id: 'r3', email: 'r3@x' } });`,
    validate: 'return false;',
    error: /returned false/,
  },
  { name: 'rehearsal (--dry-run) of a migration that succeeds', up: w, run: 'dry-run', error: null },
  {
    name: 'rehearsal (--dry-run) whose validate is false',
    up: w,
    validate: 'return false;',
    run: 'dry-run',
    error: /returned false/,
  },
  { name: 'down() that fails after deleting and dropping', run: 'down', error: /down failed on purpose/ },
];

let db: TestDatabase | undefined;
const changed: string[] = [];
const suiteStarted = performance.now();

beforeAll(async () => {
  if (!services().pg15) return;
  db = await createTestDatabase({ server: 'pg15' });
  await withClient(db.url, async (c) => {
    await c.query('CREATE TABLE audit (id serial PRIMARY KEY, name text NOT NULL)');
    await c.query('CREATE TABLE items (id int PRIMARY KEY, counter int NOT NULL DEFAULT 0)');
    await c.query('INSERT INTO items (id) SELECT g FROM generate_series(1, 100) g');
  });
  await using(migrationFolder({ ...PRIMER, ...BAD_DOWN }), (r) => r.up());
});

afterAll(async () => {
  await db?.drop().catch(() => {});
  if (db)
    writeFigures('rollback', {
      cases: CASES.length,
      changed: changed.length,
      changedCases: changed,
      durationMs: Math.round(performance.now() - suiteStarted),
    });
});

async function using<T>(
  dir: string,
  fn: (r: MigrationRunner) => Promise<T>,
  transactionTimeoutMs?: number,
): Promise<T> {
  const r = new MigrationRunner({
    connectionString: (db as TestDatabase).url,
    migrationsDir: dir,
    prismaMigrationsDir: false,
    cwd: ROOT,
    ...(transactionTimeoutMs ? { transactionTimeoutMs } : {}),
  });
  try {
    return await fn(r);
  } finally {
    await r.close();
  }
}

function folderOf(c: Case): string {
  const body = [
    `async up({ sql, prisma }) { ${c.up ?? ''} }`,
    c.validate ? `async validate({ sql, prisma }) { ${c.validate} }` : '',
    'async down() {}',
  ]
    .filter(Boolean)
    .join(',\n');
  return migrationFolder({ ...PRIMER, ...BAD_DOWN, '20240101000000_case.ts': mig(`{\n${body}\n}`) });
}

describe.skipIf(!services().pg15)(
  'rollback suite: a failed or escaping migration leaves pg_dump byte-for-byte unchanged',
  () => {
    it.each(CASES)('$name', async (c) => {
      if (!db) throw new Error('the PostgreSQL 15 database was not created');
      const dir = folderOf(c);
      const before = await dumpHashes(db.url);
      const run = c.run ?? 'up';
      const outcome = await using(
        dir,
        (r) => (run === 'down' ? r.down({ step: 1 }) : r.up({ dryRun: run === 'dry-run' })),
        c.transactionTimeoutMs,
      ).then(
        () => null,
        (e: unknown) => e as Error,
      );
      // an abandoned step may still be sending statements: give them the time to (fail to) commit
      if (c.transactionTimeoutMs) await new Promise((r) => setTimeout(r, 1000));
      const after = await dumpHashes(db.url);
      if (after.data !== before.data || after.schema !== before.schema) changed.push(c.name);
      if (c.error) expect(outcome?.message).toMatch(c.error);
      else expect(outcome).toBeNull();
      expect(after).toEqual(before);
      expect(await appliedNames(db.url, dir)).toEqual(['20230101000000_primer', '20230102000000_bad_down']);
    });
  },
);
