/**
 * The backfill engine on a real PostgreSQL: keyset walk, checkpoints in the batch transaction,
 * resume, interruption, failing batches, concurrent writers, throttling, progress rows.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode, InterruptedError, OperationError, UsageError } from '../../src/errors.js';
import {
  ensureCheckpointTable,
  readBackfillProgress,
  resetBackfill,
  runBackfill,
} from '../../src/migrations/backfill.js';
import type { BackfillBatchEvent, BackfillSpec } from '../../src/migrations/backfill-types.js';
import { counterHistogram } from '../helpers/counters.js';
import { createTestDatabase, type TestDatabase, uniqueName } from '../helpers/services.js';

let db: TestDatabase;
let client: pg.Client;

async function connect(url = db.url): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

/** A table of n rows with ids 10, 20, ... 10n (gaps let a test insert rows "behind" the cursor). */
async function makeTable(n: number, extra = ''): Promise<string> {
  const name = uniqueName('bf');
  await client.query(
    `CREATE TABLE ${name} (id bigint PRIMARY KEY, val int NOT NULL, done boolean NOT NULL DEFAULT false, counter int NOT NULL DEFAULT 0${extra})`,
  );
  await client.query(`INSERT INTO ${name} (id, val) SELECT g * 10, g FROM generate_series(1, $1::int) g`, [n]);
  await client.query(`ANALYZE ${name}`);
  return name;
}

const counters = (table: string) => counterHistogram(client, table);

beforeAll(async () => {
  db = await createTestDatabase();
  client = await connect();
});

afterAll(async () => {
  await client?.end();
  await db?.drop();
});

describe('runBackfill', () => {
  it('changes every matching row exactly once, batch by batch, and records a finished checkpoint', async () => {
    const table = await makeTable(2345);
    await client.query(`UPDATE ${table} SET done = true WHERE id % 70 = 0`);
    const events: BackfillBatchEvent[] = [];
    const r = await runBackfill(
      client,
      'm_basic',
      { table, where: 'NOT done', set: 'done = true, counter = counter + 1' },
      {
        batchSize: 500,
        targetBatchMs: 0,
        onProgress: (e) => {
          events.push(e as BackfillBatchEvent);
        },
      },
    );
    const skipped = Math.floor(23450 / 70);
    expect(r.rows).toBe(2345 - skipped);
    expect(r.batches).toBe(5);
    expect(r.resumedFrom).toBeNull();
    expect(r.estimate).toBe('count');
    expect(r.estimatedTotal).toBe(2345 - skipped);
    expect(await counters(table)).toEqual({ 0: skipped, 1: 2345 - skipped });
    expect(events.map((e) => e.lastKey)).toEqual(['5000', '10000', '15000', '20000', '23450']);
    expect(events.at(-1)?.rowsDone).toBe(2345 - skipped);
    const progress = (await readBackfillProgress(client)).find((p) => p.migration === 'm_basic');
    expect(progress).toMatchObject({
      table,
      finished: true,
      percent: 100,
      rowsDone: 2345 - skipped,
      lastKey: '23450',
      batches: 5,
    });
    // A finished backfill is never walked again.
    const again = await runBackfill(
      client,
      'm_basic',
      { table, where: 'NOT done', set: 'done = true, counter = counter + 1' },
      {},
    );
    expect(again).toMatchObject({ alreadyFinished: true, batches: 0, rows: 0 });
    expect(await counters(table)).toEqual({ 0: skipped, 1: 2345 - skipped });
  });

  it('finds the primary key of the example schema (text ids) and backfills User.role', async () => {
    await client.query(
      `INSERT INTO "User" (id, email, "updatedAt") SELECT 'c' || lpad(g::text, 8, '0') || md5(g::text), 'u' || g || '@example.com', now() FROM generate_series(1, 1200) g`,
    );
    await client.query(`UPDATE "User" SET role = 'ADMIN' WHERE email LIKE 'u1%'`);
    const r = await runBackfill(
      client,
      'm_roles',
      { table: 'User', where: 'role IS NULL', set: `role = 'USER'` },
      { batchSize: 250, targetBatchMs: 0 },
    );
    const admins = Number((await client.query(`SELECT count(*) AS n FROM "User" WHERE role = 'ADMIN'`)).rows[0].n);
    expect(r.rows).toBe(1200 - admins);
    expect(r.batches).toBe(5);
    expect(Number((await client.query(`SELECT count(*) AS n FROM "User" WHERE role IS NULL`)).rows[0].n)).toBe(0);
  });

  it('walks uuid keys and passes each batch to a run() function inside the batch transaction', async () => {
    const table = uniqueName('bf_uuid');
    await client.query(
      `CREATE TABLE ${table} (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), n int NOT NULL, twice int)`,
    );
    await client.query(`INSERT INTO ${table} (n) SELECT g FROM generate_series(1, 1000) g`);
    const seen: unknown[] = [];
    const r = await runBackfill(
      client,
      'm_uuid',
      {
        table,
        where: 'twice IS NULL AND n % 2 = 0',
        run: async (keys, tx) => {
          seen.push(...keys);
          const u = await tx.query(`UPDATE ${table} SET twice = n * 2 WHERE id = ANY($1::uuid[])`, [keys]);
          return u.rowCount ?? 0;
        },
      },
      { batchSize: 300, targetBatchMs: 0 },
    );
    expect(r.rows).toBe(500);
    expect(new Set(seen).size).toBe(500);
    expect(r.batches).toBe(4);
    const bad = await client.query(
      `SELECT count(*) AS n FROM ${table} WHERE (n % 2 = 0) <> (twice IS NOT NULL) OR twice <> n * 2`,
    );
    expect(Number(bad.rows[0].n)).toBe(0);
  });

  it('refuses composite primary keys, non-unique keys and unknown tables with a clear message', async () => {
    const t = uniqueName('bf_comp');
    await client.query(`CREATE TABLE ${t} (a int, b int, v int, PRIMARY KEY (a, b))`);
    await expect(runBackfill(client, 'm_comp', { table: t, set: 'v = 1' })).rejects.toThrow(
      /composite primary key \(a, b\)/,
    );
    await expect(runBackfill(client, 'm_comp', { table: t, key: 'v', set: 'v = 1' })).rejects.toThrow(
      /must be NOT NULL with a unique index/,
    );
    await expect(runBackfill(client, 'm_none', { table: 'NoSuchTable', set: 'v = 1' })).rejects.toBeInstanceOf(
      UsageError,
    );
    await expect(runBackfill(client, 'm_none', { table: t, set: 'v = 1', run: async () => 0 })).rejects.toThrow(
      /exactly one of "set"/,
    );
  });

  it('stops at a failing batch, names its key range, and applies nothing from it on', async () => {
    const table = await makeTable(1000, ', CHECK (counter < 2)');
    await client.query(`UPDATE ${table} SET counter = 1 WHERE id = 5000`);
    const run = runBackfill(
      client,
      'm_fail',
      { table, set: 'counter = counter + 1' },
      { batchSize: 100, targetBatchMs: 0 },
    );
    const error = await run.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OperationError);
    const e = error as OperationError;
    expect(e.message).toContain('id in (4000, 5000]');
    expect(e.message).toMatch(/check constraint/);
    expect(e.hint).toMatch(/checkpoint at id = 4000/);
    expect(e.details).toMatchObject({ fromKey: '4000', toKey: '5000', sqlstate: '23514' });
    const done = await client.query(
      `SELECT count(*) FILTER (WHERE counter = 1 AND id <= 4000) AS before, count(*) FILTER (WHERE counter = 0 AND id > 4000) AS after FROM ${table}`,
    );
    expect(Number(done.rows[0].before)).toBe(400);
    expect(Number(done.rows[0].after)).toBe(599); // every row after 4000 but the bad one (still 1)
    const p = (await readBackfillProgress(client)).find((x) => x.migration === 'm_fail');
    expect(p).toMatchObject({ finished: false, lastKey: '4000', rowsDone: 400, batches: 4 });
    expect(p?.percent).toBeCloseTo(40, 0);
  });

  it('stops after the current batch when the signal aborts, and resumes exactly where it stopped', async () => {
    const table = await makeTable(3000);
    const ac = new AbortController();
    const first = await runBackfill(
      client,
      'm_abort',
      { table, set: 'counter = counter + 1' },
      {
        batchSize: 400,
        targetBatchMs: 0,
        signal: ac.signal,
        onProgress: (e) => {
          if (e.batches === 3) ac.abort('SIGINT');
        },
      },
    ).catch((e: unknown) => e);
    expect(first).toBeInstanceOf(InterruptedError);
    expect((first as InterruptedError).exitCode).toBe(ExitCode.Interrupted);
    expect((first as InterruptedError).message).toContain('checkpoint at id = 12000');
    expect((first as InterruptedError).hint).toMatch(/run the same command again/);
    expect(await counters(table)).toEqual({ 0: 1800, 1: 1200 });
    const r = await runBackfill(
      client,
      'm_abort',
      { table, set: 'counter = counter + 1' },
      { batchSize: 400, targetBatchMs: 0 },
    );
    expect(r.resumedFrom).toBe('12000');
    expect(r.rows).toBe(1800);
    expect(r.rowsDone).toBe(3000);
    expect(await counters(table)).toEqual({ 1: 3000 });
  });

  it('handles concurrent writers as documented: where re-checked per batch, rows behind the cursor left for validate', async () => {
    const table = await makeTable(2000);
    const other = await connect();
    let blocker: Promise<unknown> | undefined;
    try {
      const r = await runBackfill(
        client,
        'm_conc',
        { table, where: 'NOT done', set: 'done = true, counter = counter + 1' },
        {
          batchSize: 200,
          targetBatchMs: 0,
          onProgress: async (e) => {
            if (e.batches !== 2) return;
            // cursor is at id 4000 now
            await other.query(`INSERT INTO ${table} (id, val) VALUES (1005, -1), (15005, -2)`); // behind and ahead of the cursor
            await other.query(`UPDATE ${table} SET done = true, val = -3 WHERE id = 9000`); // ahead, no longer matching
            // A writer holding a row of the next batch: the batch waits for it, then re-checks the condition.
            await other.query('BEGIN');
            await other.query(`UPDATE ${table} SET done = true, val = -4 WHERE id = 4010`);
            blocker = new Promise((resolve) => setTimeout(resolve, 300)).then(() => other.query('COMMIT'));
          },
        },
      );
      await blocker;
      const rows = await client.query<{ id: string; counter: number; done: boolean }>(
        `SELECT id, counter, done FROM ${table} WHERE val < 0 ORDER BY id`,
      );
      expect(rows.rows).toEqual([
        { id: '1005', counter: 0, done: false }, // inserted behind the cursor: not visited
        { id: '4010', counter: 0, done: true }, // updated by the other session while locked: left alone
        { id: '9000', counter: 0, done: true }, // no longer matching when its batch came: left alone
        { id: '15005', counter: 1, done: true }, // inserted ahead of the cursor: backfilled
      ]);
      expect(r.rows).toBe(2000 - 2 + 1);
      // What a validate() would report: the one row inserted behind the cursor.
      const left = await client.query(`SELECT count(*) AS n FROM ${table} WHERE NOT done`);
      expect(Number(left.rows[0].n)).toBe(1);
    } finally {
      await other.end();
    }
  });

  it('holds maxRowsPerSecond and pauseMs (by the engine’s own clock)', async () => {
    const table = await makeTable(1500);
    const limited = await runBackfill(
      client,
      'm_rate',
      { table, where: 'NOT done', set: 'done = true' },
      { batchSize: 5000, maxRowsPerSecond: 1000 },
    );
    expect(limited.rows).toBe(1500);
    // Batches never exceed one second of the limit, and the engine slept so the rate stays under it.
    expect(limited.batches).toBeGreaterThanOrEqual(2);
    expect((limited.rows / limited.durationMs) * 1000).toBeLessThanOrEqual(1000);
    expect(limited.throttledMs).toBeGreaterThan(0);

    const table2 = await makeTable(1000);
    const paused = await runBackfill(
      client,
      'm_pause',
      { table: table2, set: 'counter = counter + 1' },
      { batchSize: 250, targetBatchMs: 0, pauseMs: 50 },
    );
    expect(paused.batches).toBe(4);
    expect(paused.throttledMs).toBeGreaterThanOrEqual(4 * 50 - 5);
  });

  it('adapts the batch size toward targetBatchMs', async () => {
    const table = await makeTable(20_000);
    const sizes: number[] = [];
    await runBackfill(
      client,
      'm_adapt',
      { table, set: 'counter = counter + 1' },
      {
        batchSize: 100,
        targetBatchMs: 10_000,
        onProgress: (e) => {
          sizes.push((e as BackfillBatchEvent).batchSize);
        },
      },
    );
    // Fast batches against a large target: the size grows (x1.5 per batch at most).
    expect(sizes[0]).toBe(150);
    expect(sizes[1]).toBe(225);
    expect(Math.max(...sizes)).toBeGreaterThan(1000);
    expect(await counters(table)).toEqual({ 1: 20_000 });
  });

  it('works through PgBouncer in transaction mode (each batch is one transaction)', async () => {
    const table = await makeTable(1000);
    const bouncer = await connect(db.bouncerUrl);
    try {
      const r = await runBackfill(
        bouncer,
        'm_bouncer',
        { table, set: 'counter = counter + 1' },
        { batchSize: 300, targetBatchMs: 0 },
      );
      expect(r.rows).toBe(1000);
    } finally {
      await bouncer.end();
    }
    expect(await counters(table)).toEqual({ 1: 1000 });
  });

  it('treats other SQL under the same name as another backfill: restarts a finished one, refuses to continue a half-done one', async () => {
    const table = await makeTable(1000);
    await runBackfill(client, 'm_spec', { table, set: 'counter = counter + 1' }, { batchSize: 300, targetBatchMs: 0 });
    // e.g. `down` after `up`: a new walk from the start
    const down = await runBackfill(
      client,
      'm_spec',
      { table, set: 'counter = counter - 1' },
      { batchSize: 300, targetBatchMs: 0 },
    );
    expect(down).toMatchObject({ alreadyFinished: false, resumedFrom: null, rows: 1000 });
    expect(await counters(table)).toEqual({ 0: 1000 });
    const ac = new AbortController();
    await runBackfill(
      client,
      'm_spec2',
      { table, set: 'counter = counter + 1' },
      {
        batchSize: 300,
        targetBatchMs: 0,
        signal: ac.signal,
        onProgress: () => ac.abort(),
      },
    ).catch(() => {});
    await expect(runBackfill(client, 'm_spec2', { table, set: 'counter = counter + 2' }, {})).rejects.toThrow(
      /is unfinished .* its spec .* has changed/,
    );
  });

  it('runs the example migration data-migrations/20240301000000_backfill_order_totals: up, validate, down, up', async () => {
    const { default: migration } = await import('../../data-migrations/20240301000000_backfill_order_totals.js');
    const name = '20240301000000_backfill_order_totals';
    const logs: string[] = [];
    const ctx = {
      sql: { query: (text: string, values?: unknown[]) => client.query(text, values) as never },
      backfill: (spec: BackfillSpec) => runBackfill(client, name, spec, { batchSize: 70, targetBatchMs: 0 }),
      log: { info: (m: string) => logs.push(m) },
    };
    await client.query(`INSERT INTO "User" (id, email, "updatedAt") VALUES ('u_orders', 'orders@example.com', now())`);
    await client.query(
      `INSERT INTO "Product" (id, name, price, "updatedAt") VALUES ('p1', 'a', 2.50, now()), ('p2', 'b', 10.00, now())`,
    );
    await client.query(
      `INSERT INTO "Order" (id, "userId", "updatedAt") SELECT 'o' || lpad(g::text, 5, '0'), 'u_orders', now() FROM generate_series(1, 500) g`,
    );
    await client.query(
      `INSERT INTO "OrderItem" (id, "orderId", "productId", quantity, price)
       SELECT 'i' || g || '_' || p, 'o' || lpad(g::text, 5, '0'), 'p' || p, g % 4 + 1, CASE p WHEN 1 THEN 2.50 ELSE 10.00 END
         FROM generate_series(1, 450) g, generate_series(1, 2) p`,
    );
    expect(await migration.validate(ctx)).toBe(false);
    expect(logs.pop()).toBe('order totals: 500 missing, 500 different from their items');
    await migration.up(ctx);
    expect(logs.pop()).toBe('filled 500 order totals in 8 batches');
    expect(await migration.validate(ctx)).toBe(true);
    const o1 = await client.query(`SELECT total::text FROM "Order" WHERE id IN ('o00001', 'o00500') ORDER BY id`);
    expect(o1.rows).toEqual([{ total: '25.00' }, { total: '0.00' }]);
    await migration.down(ctx);
    expect(Number((await client.query(`SELECT count(*) AS n FROM "Order" WHERE total IS NOT NULL`)).rows[0].n)).toBe(0);
    await migration.up(ctx);
    expect(await migration.validate(ctx)).toBe(true);
  });

  it('creates the checkpoint table safely when several sessions race, and resetBackfill forgets a migration', async () => {
    const fresh = await createTestDatabase();
    const clients = await Promise.all(Array.from({ length: 6 }, () => connect(fresh.url)));
    try {
      await Promise.all(clients.map((c) => ensureCheckpointTable(c)));
      const c0 = clients[0] as pg.Client;
      expect(await readBackfillProgress(c0)).toEqual([]);
      await c0.query('CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)');
      await c0.query('INSERT INTO t SELECT g FROM generate_series(1, 10) g');
      await runBackfill(c0, 'm_reset', { table: 't', set: 'v = v + 1' }, {});
      expect(await resetBackfill(c0, 'm_reset')).toBe(1);
      expect(await readBackfillProgress(c0)).toEqual([]);
      await runBackfill(c0, 'm_reset', { table: 't', set: 'v = v + 1' }, {});
      expect((await c0.query('SELECT DISTINCT v FROM t')).rows).toEqual([{ v: 2 }]);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
      await fresh.drop();
    }
  });
});
