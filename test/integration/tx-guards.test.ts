/**
 * Server-side guards that could end a dbops session behind its back, each set low on a real
 * PostgreSQL (and PgBouncer): harmless where dbops can make it so, a clear error naming the guard
 * where it cannot; a lost lock stops the work at once and records nothing; a statement that leaves
 * the migration's transaction is caught by the server's own transaction status.
 */
import { resolve } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MigrationRunner, type MigrationRunnerOptions } from '../../src/index.js';
import { readBackfillProgress } from '../../src/migrations/backfill.js';
import { lockKey } from '../../src/migrations/lock.js';
import { resolveIdentity } from '../../src/migrations/session.js';
import { PgSession } from '../../src/migrations/session-pg.js';
import { counterHistogram } from '../helpers/counters.js';
import { AUDIT_DDL, auditCounts, mig, migrationFolder, withClient } from '../helpers/migrations.js';
import { appliedNames } from '../helpers/reliability.js';
import { type PgBouncerServer, startPgBouncer } from '../helpers/servers.js';
import { createTestDatabase, services, type TestDatabase } from '../helpers/services.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const dbs: TestDatabase[] = [];
const bouncers: PgBouncerServer[] = [];

afterAll(async () => {
  for (const b of bouncers) await b.stop().catch(() => {});
  for (const db of dbs) await db.drop().catch(() => {});
});

/** A database with `audit` and a 2,000-row `items` table, the guards given set on it. */
async function guardedDb(guards: Record<string, string> = {}, server: 'pg' | 'pg15' = 'pg'): Promise<TestDatabase> {
  const db = await createTestDatabase({ server });
  dbs.push(db);
  await withClient(db.url, async (c) => {
    await c.query(AUDIT_DDL);
    await c.query('CREATE TABLE items (id int PRIMARY KEY, counter int NOT NULL DEFAULT 0)');
    await c.query('INSERT INTO items (id) SELECT g FROM generate_series(1, 2000) g');
    for (const [name, value] of Object.entries(guards))
      await c.query(`ALTER DATABASE ${db.name} SET ${name} = '${value}'`);
  });
  return db;
}

function runner(url: string, dir: string, extra: Partial<MigrationRunnerOptions> = {}): MigrationRunner {
  return new MigrationRunner({
    connectionString: url,
    migrationsDir: dir,
    prismaMigrationsDir: false,
    cwd: ROOT,
    identity: { user: 'tester', host: 'test-host', dbopsVersion: '0.0.0-test' },
    // 1,000 rows a second: the backfill below takes about 2 s, longer than every guard set here.
    backfill: { maxRowsPerSecond: 1000, batchSize: 100 },
    ...extra,
  });
}

async function up(url: string, dir: string, extra: Partial<MigrationRunnerOptions> = {}) {
  const r = runner(url, dir, extra);
  try {
    return await r.up();
  } finally {
    await r.close();
  }
}

/** A transaction: false migration: one side effect no rollback undoes, then a ~2 s backfill. */
const BACKFILL = mig(`{
  transaction: false,
  async up({ sql, backfill }) {
    await sql\`INSERT INTO audit (name) VALUES ('bf')\`;
    await backfill({ table: 'items', set: 'counter = counter + 1' });
  },
  async validate({ sql }) {
    const { rows } = await sql\`SELECT count(*)::int AS n FROM items WHERE counter = 0\`;
    return rows[0].n === 0;
  },
}`);

async function expectBackfilledOnce(db: TestDatabase, dir: string): Promise<void> {
  await withClient(db.url, async (c) => {
    expect(await auditCounts(c)).toEqual({ bf: 1 });
    expect(await counterHistogram(c, 'items')).toEqual({ 1: 2000 });
  });
  expect(await appliedNames(db.url, dir)).toEqual(['20240101000000_bf']);
}

describe('server guards that dbops makes harmless', () => {
  it.each((services().pg15 ? ['pg', 'pg15'] : ['pg']) as Array<'pg' | 'pg15'>)(
    'idle_in_transaction_session_timeout = 1s (%s): the lock transaction of a 2 s backfill is kept, applied once',
    async (server) => {
      const db = await guardedDb({ idle_in_transaction_session_timeout: '1s' }, server);
      const dir = migrationFolder({ '20240101000000_bf.ts': BACKFILL });
      await up(db.url, dir);
      await expectBackfilledOnce(db, dir);
    },
  );

  it('transaction_timeout = 1s (PostgreSQL 17+): a 1.5 s migration transaction and a 2 s backfill both apply', async (t) => {
    if (services().pg.version < 17) t.skip();
    const db = await guardedDb({ transaction_timeout: '1s' });
    const dir = migrationFolder({
      '20240101000000_bf.ts': BACKFILL,
      '20240102000000_slow.ts': mig(`{
        async up({ sql }) {
          for (let i = 0; i < 3; i++) await sql\`SELECT pg_sleep(0.5)\`;
          await sql\`INSERT INTO audit (name) VALUES ('slow')\`;
        },
      }`),
    });
    await up(db.url, dir);
    await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({ bf: 1, slow: 1 }));
    expect(await appliedNames(db.url, dir)).toEqual(['20240101000000_bf', '20240102000000_slow']);
  });

  it('statement_timeout = 500ms: a migration transaction runs under --transaction-timeout instead', async () => {
    const db = await guardedDb({ statement_timeout: '500ms' });
    const dir = migrationFolder({
      '20240101000000_long.ts': mig(
        `{ async up({ sql }) { await sql\`SELECT pg_sleep(0.8)\`; await sql\`INSERT INTO audit (name) VALUES ('long')\`; } }`,
      ),
    });
    await up(db.url, dir);
    await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({ long: 1 }));
  });

  it('idle_session_timeout = 1s: connections that sat idle meanwhile are kept or opened again', async () => {
    const db = await guardedDb({ idle_session_timeout: '1s' });
    const noTx = (name: string) =>
      mig(`{ transaction: false, async up({ sql }) { await sql\`INSERT INTO audit (name) VALUES ('${name}')\`; } }`);
    const dir = migrationFolder({
      '20240101000000_a.ts': noTx('a'),
      // the second connection sits idle for 1.5 s while this one runs on the first
      '20240102000000_b.ts': mig(
        `{ async up({ sql }) { await sql\`SELECT pg_sleep(1.5)\`; await sql\`INSERT INTO audit (name) VALUES ('b')\`; } }`,
      ),
      '20240103000000_c.ts': noTx('c'),
      // and here the first one idles while nothing is sent on it
      '20240104000000_d.ts': mig(
        `{ transaction: false, async up({ sql }) { await new Promise((r) => setTimeout(r, 1500)); await sql\`INSERT INTO audit (name) VALUES ('d')\`; } }`,
      ),
      '20240105000000_e.ts': mig(`{ async up({ sql }) { await sql\`INSERT INTO audit (name) VALUES ('e')\`; } }`),
    });
    await up(db.url, dir);
    await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({ a: 1, b: 1, c: 1, d: 1, e: 1 }));
  });

  it("PgBouncer's idle_transaction_timeout = 1 s: a 2 s backfill and a migration idle 1.5 s between statements apply once", async () => {
    const db = await guardedDb();
    const bouncer = await startPgBouncer(services().pg.port, { idle_transaction_timeout: 1 });
    bouncers.push(bouncer);
    const dir = migrationFolder({
      '20240101000000_bf.ts': BACKFILL,
      '20240102000000_idle.ts': mig(`{
        async up({ sql }) {
          await sql\`INSERT INTO audit (name) VALUES ('idle')\`;
          await new Promise((r) => setTimeout(r, 1500));
          await sql\`UPDATE audit SET name = 'idle' WHERE name = 'idle'\`;
        },
      }`),
    });
    await up(bouncer.url(db.name), dir);
    await withClient(db.url, async (c) => {
      expect(await auditCounts(c)).toEqual({ bf: 1, idle: 1 });
      expect(await counterHistogram(c, 'items')).toEqual({ 1: 2000 });
    });
  });
});

describe('guards a migration runs under: a clear error naming the guard', () => {
  it("statement_timeout on a transaction: false migration's own statement", async () => {
    const db = await guardedDb({ statement_timeout: '300ms' });
    const dir = migrationFolder({
      '20240101000000_slow.ts': mig(`{ transaction: false, async up({ sql }) { await sql\`SELECT pg_sleep(0.6)\`; } }`),
    });
    const error = (await up(db.url, dir).catch((e: unknown) => e)) as Error & { hint?: string };
    expect(error.message).toMatch(
      /failed at up: the server's statement_timeout: canceling statement due to statement timeout/,
    );
    expect(error.hint).toMatch(/statement_timeout .*ALTER ROLE/);
  });

  it('lock_timeout (it protects the application: respected, and named)', async () => {
    const db = await guardedDb({ lock_timeout: '200ms' });
    const dir = migrationFolder({
      '20240101000000_ddl.ts': mig(`{ async up({ sql }) { await sql\`ALTER TABLE audit ADD COLUMN note text\`; } }`),
    });
    await withClient(db.url, async (holder) => {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE audit IN ROW EXCLUSIVE MODE');
      const error = (await up(db.url, dir).catch((e: unknown) => e)) as Error & { hint?: string };
      await holder.query('ROLLBACK');
      expect(error.message).toMatch(
        /failed at up: the server's lock_timeout: canceling statement due to lock timeout \(rolled back\)/,
      );
      expect(error.hint).toMatch(/lock_timeout/);
    });
    expect(await appliedNames(db.url, dir)).toEqual([]);
  });
});

describe('a lost lock', () => {
  it('stops the backfill at once (no batch commits after the holder is gone), records nothing, says so; a rerun finishes it once', async () => {
    const db = await guardedDb();
    const dir = migrationFolder({ '20240101000000_bf.ts': BACKFILL });
    let batchesAtKill = -1;
    let killed: Promise<void> | undefined;
    const holder = runner(db.url, dir, {
      backfill: { maxRowsPerSecond: 500, batchSize: 50 },
      onEvent: (e) => {
        if (e.type !== 'backfill' || killed) return;
        // as `dbops migrate unlock` does: end the holder's server session, and wait until it is gone
        killed = withClient(db.url, async (c) => {
          await c.query('SELECT pg_terminate_backend($1, 5000)', [await findAnyHolder(c)]);
          batchesAtKill = (await readBackfillProgress(c))[0]?.batches ?? -1;
        });
      },
    });
    const error = (await holder
      .up()
      .catch((e: unknown) => e)
      .finally(() => holder.close())) as Error & { hint?: string };
    await killed;
    expect(error.message).toMatch(
      /failed at up: lost the migration lock: the session was ended by pg_terminate_backend .*administrator command \(not recorded \(transaction: false: committed batches stay\)\)/,
    );
    expect(error.hint).toMatch(/stopped the work at once and recorded nothing/);
    await withClient(db.url, async (c) => {
      const after = (await readBackfillProgress(c))[0];
      expect(batchesAtKill).toBeGreaterThan(0);
      // at most the batch that was already past its lock check when the holder died
      expect((after?.batches ?? 0) - batchesAtKill).toBeLessThanOrEqual(1);
      expect(after?.finished).toBe(false);
    });
    expect(await appliedNames(db.url, dir)).toEqual([]);
    await up(db.url, dir);
    await withClient(db.url, async (c) => expect(await counterHistogram(c, 'items')).toEqual({ 1: 2000 }));
    expect(await appliedNames(db.url, dir)).toEqual(['20240101000000_bf']);
  });
});

/** The backend holding any dbops migration lock (the ledger's location may change; the lock's namespace does not). */
async function findAnyHolder(c: pg.Client): Promise<number> {
  const { rows } = await c.query<{ pid: number }>(
    `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = (1684172656)::oid AND objsubid = 2 LIMIT 1`,
  );
  if (!rows[0]) throw new Error('no holder of a dbops migration lock');
  return rows[0].pid;
}

describe("the server's transaction status has the last word", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await guardedDb();
  });

  function session(): PgSession {
    return new PgSession({
      connectionString: db.url,
      identity: resolveIdentity({ dbopsVersion: 'test' }),
      lockKey: lockKey('guard-test'),
      lockTimeoutMs: 5000,
      transactionTimeoutMs: 60_000,
    });
  }

  it('a COMMIT that slipped past every parser: the socket closes before what was queued behind it runs; the error lists what was committed', async () => {
    const s = session();
    try {
      const tx = await s.begin({ lock: true, bounded: true });
      await tx.client.query(`INSERT INTO audit (name) VALUES ('before')`);
      const sent = [tx.client.query('COMMIT'), tx.client.query(`INSERT INTO audit (name) VALUES ('after')`)];
      await Promise.allSettled(sent);
      expect(tx.lost.aborted).toBe(true);
      expect(tx.lostError()?.message).toBe(
        "a statement left the migration's transaction: COMMIT left the migration's transaction: committed were INSERT 0 1; dbops closed the connection at once, so nothing after it ran",
      );
      await expect(tx.verify()).rejects.toThrow(/COMMIT left the migration's transaction/);
      await s.rollback(tx);
    } finally {
      await s.close();
    }
    await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({ before: 1 }));
    await withClient(db.url, (c) => c.query('TRUNCATE audit'));
  });

  it('COMMIT AND CHAIN (the connection is in a transaction again): caught before the ledger row, the lock is not held', async () => {
    const s = session();
    try {
      const tx = await s.begin({ lock: true, bounded: true });
      await tx.client.query('COMMIT AND CHAIN');
      await expect(tx.verify()).rejects.toThrow(/no longer holds the migration lock/);
      await s.rollback(tx);
    } finally {
      await s.close();
    }
  });
});

describe('ctx.sql reads SQL with PostgreSQL grammar', () => {
  it("refuses `UPDATE ... 'a -- b' ...; COMMIT` before sending it: nothing committed, nothing recorded", async () => {
    const db = await guardedDb();
    await withClient(db.url, (c) => c.query(`INSERT INTO audit (id, name) VALUES (5001, 'x')`));
    const dir = migrationFolder({
      '20240101000000_sneaky.ts': mig(`{
        async up({ sql }) { await sql.query("UPDATE audit SET name = 'a -- b' WHERE id = 5001; COMMIT"); },
        async validate() { return false; },
      }`),
    });
    const error = (await up(db.url, dir).catch((e: unknown) => e)) as Error & { hint?: string };
    expect(error.message).toMatch(/transaction control is not allowed inside a migration's transaction: COMMIT/);
    // The refusal's own hint (what to use instead) reaches the user, not the generic "fix the migration".
    expect(error.hint).toMatch(/use SAVEPOINT, or defineDataMigration\(\{ transaction: false \}\)/);
    await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({ x: 1 }));
    expect(await appliedNames(db.url, dir)).toEqual([]);
  });

  it('runs honest SQL the old pattern refused: DO ... END $$, CREATE FUNCTION ... END; $$, strings and comments with ; COMMIT', async () => {
    const db = await guardedDb();
    const dir = migrationFolder({
      '20240101000000_honest.ts': mig(`{
        async up({ sql }) {
          await sql\`DO $$ BEGIN IF true THEN INSERT INTO audit (name) VALUES ('do'); END IF; END $$\`;
          await sql\`CREATE FUNCTION audit_note() RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN 'fn'; END; $$\`;
          await sql\`INSERT INTO audit (name) SELECT audit_note()\`;
          await sql.query("INSERT INTO audit (name) VALUES ('; COMMIT') /* ; COMMIT */ -- ; END");
        },
      }`),
    });
    await up(db.url, dir);
    await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({ '; COMMIT': 1, do: 1, fn: 1 }));
  });
});
