import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, ROOT, runDbops, startDbops } from '../helpers/cli.js';
import { counterHistogram } from '../helpers/counters.js';
import { createTestDatabase, type TestDatabase } from '../helpers/services.js';

let db: TestDatabase;
let client: pg.Client;
const dirs: string[] = [];

const COUNTER_MIGRATION = `
export default {
  description: 'count every row once',
  transaction: false,
  async up(ctx) {
    await ctx.backfill({ table: 'bf_cli', set: 'counter = counter + 1' });
  },
  async validate(ctx) {
    const r = await ctx.sql.query('SELECT count(*)::int AS n FROM bf_cli WHERE counter <> 1');
    return r.rows[0].n === 0;
  },
};
`;

function migrationsDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'dbops-bf-cli-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

function env(dir: string): Record<string, string> {
  return cleanEnv({ DATABASE_URL: db.url, DBOPS_MIGRATIONS_DIR: dir, DBOPS_PRISMA_MIGRATIONS_DIR: join(dir, 'none') });
}

function spawnDbops(args: string[], e: Record<string, string>): ReturnType<typeof startDbops> {
  return startDbops(args, { env: e });
}

async function rowsDone(migration: string): Promise<number> {
  const r = await client
    .query<{ n: string }>('SELECT rows_done AS n FROM dbops.backfill_checkpoints WHERE migration = $1', [migration])
    .catch(() => ({ rows: [] as Array<{ n: string }> }));
  return Number(r.rows[0]?.n ?? 0);
}

async function waitForRows(migration: string, atLeast: number): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if ((await rowsDone(migration)) >= atLeast) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`backfill ${migration} never reached ${atLeast} rows`);
}

const counters = () => counterHistogram(client, 'bf_cli');

beforeAll(async () => {
  db = await createTestDatabase();
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
});

afterAll(async () => {
  await client?.end();
  await db?.drop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('dbops migrate with a backfill', () => {
  it('SIGKILL mid-backfill, then migrate up resumes: every row once, recorded once', async () => {
    await client.query('CREATE TABLE bf_cli (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0)');
    await client.query('INSERT INTO bf_cli (id) SELECT g FROM generate_series(1, 20000) g');
    const name = '20240401000000_count_rows';
    const dir = migrationsDir({ [`${name}.js`]: COUNTER_MIGRATION });
    const args = ['migrate', 'up', '--batch-size', '500', '--max-rows-per-second', '5000'];
    const first = spawnDbops(args, env(dir));
    await waitForRows(name, 2000);
    first.child.kill('SIGKILL');
    expect((await first.done).signal).toBe('SIGKILL');
    const mid = await rowsDone(name);
    expect(mid).toBeGreaterThan(0);
    expect(mid).toBeLessThan(20_000);

    // status shows the unfinished backfill with its percentage and checkpoint, the migration pending.
    const status = await runDbops(['migrate', 'status', '--json'], { env: env(dir) });
    const st = JSON.parse(status.stdout) as {
      backfills: Array<{ migration: string; rowsDone: number; percent: number; lastKey: unknown; finished: boolean }>;
    };
    const bf = st.backfills.find((b) => b.migration === name);
    expect(bf).toMatchObject({ rowsDone: mid, finished: false });
    expect(bf?.percent).toBeCloseTo((mid / 20_000) * 100, 0);
    expect(String(bf?.lastKey)).toBe(String(mid));
    const table = await runDbops(['migrate', 'status'], { env: env(dir) });
    expect(table.stdout).toMatch(/1 unfinished backfill\(s\)/);
    expect(table.stdout).toMatch(new RegExp(`${name}.*bf_cli.*unfinished`));

    const second = await runDbops([...args.slice(0, 2), '--json'], { env: env(dir) });
    expect(second.stderr).not.toMatch(/error/i);
    expect(second.code).toBe(0);
    const doc = JSON.parse(second.stdout) as {
      outcomes: Array<{
        name: string;
        status: string;
        validate: boolean;
        backfill: { rows: number; resumedFrom: string };
      }>;
    };
    const outcome = doc.outcomes.find((o) => o.name === name);
    expect(outcome).toMatchObject({ status: 'applied', validate: true });
    expect(outcome?.backfill.resumedFrom).not.toBeNull();
    expect(outcome?.backfill.rows).toBeLessThan(20_000);
    expect(await rowsDone(name)).toBe(20_000);
    expect(await counters()).toEqual({ 1: 20_000 });

    // Applied once: a third run has nothing to do and changes nothing.
    const third = await runDbops(['migrate', 'up'], { env: env(dir) });
    expect(third.code).toBe(0);
    expect(await counters()).toEqual({ 1: 20_000 });
  });

  it('SIGINT finishes the batch, exits 130 with how to resume; migrate up again completes', async () => {
    await client.query('DROP TABLE IF EXISTS bf_cli');
    await client.query('CREATE TABLE bf_cli (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0)');
    await client.query('INSERT INTO bf_cli (id) SELECT g FROM generate_series(1, 10000) g');
    const name = '20240402000000_count_rows_again';
    const dir = migrationsDir({ [`${name}.js`]: COUNTER_MIGRATION });
    const args = ['migrate', 'up', '--batch-size', '250', '--max-rows-per-second', '2500'];
    const run = spawnDbops(args, env(dir));
    await waitForRows(name, 500);
    run.child.kill('SIGINT');
    const exit = await run.done;
    expect(exit.code).toBe(130);
    expect(exit.stderr).toMatch(/interrupted/);
    expect(exit.stderr).toMatch(/resume/);
    const done = await rowsDone(name);
    expect(await counters()).toEqual({ 0: 10_000 - done, 1: done });

    const again = await runDbops(args, { env: env(dir) });
    expect(again.code).toBe(0);
    expect(await counters()).toEqual({ 1: 10_000 });
  });

  it('a backfill whose validate fails is shown as not recorded, and down undoes it', async () => {
    await client.query('DROP TABLE IF EXISTS bf_cli');
    await client.query('CREATE TABLE bf_cli (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0)');
    await client.query('INSERT INTO bf_cli (id) SELECT g FROM generate_series(1, 3000) g');
    const name = '20240403000000_count_then_fail';
    const failing = `
export default {
  transaction: false,
  async up(ctx) { await ctx.backfill({ table: 'bf_cli', set: 'counter = counter + 1' }); },
  async validate() { return false; },
  async down(ctx) { await ctx.sql.query('UPDATE bf_cli SET counter = 0'); },
};
`;
    const dir = migrationsDir({ [`${name}.js`]: failing });
    const up = await runDbops(['migrate', 'up'], { env: env(dir) });
    expect(up.code).toBe(1);
    expect(up.stderr).toMatch(/validate/);
    expect(await counters()).toEqual({ 1: 3000 });

    const status = await runDbops(['migrate', 'status'], { env: env(dir) });
    expect(status.stdout).toMatch(/1 backfill\(s\) ran every batch but were not recorded \(validate failed\)/);
    expect(status.stdout).toMatch(new RegExp(`${name}\\s+│\\s*pending`));

    const down = await runDbops(['migrate', 'down', '--yes', '--json'], { env: env(dir) });
    expect(down.code, down.stderr).toBe(0);
    expect(JSON.parse(down.stdout).outcomes[0]).toMatchObject({ name, status: 'reverted' });
    expect(await counters()).toEqual({ 0: 3000 });
    const after = await runDbops(['migrate', 'status', '--json'], { env: env(dir) });
    expect(JSON.parse(after.stdout).backfills).toEqual([]);
  });

  it('runs the example migration (Order.total): up with validate, down, up again', async () => {
    // A database of its own: `down` reverts the newest applied migration.
    await client.end();
    await db.drop();
    db = await createTestDatabase();
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query(`INSERT INTO "User" (id, email, "updatedAt") VALUES ('u1', 'u1@example.com', now())`);
    await client.query(`INSERT INTO "Product" (id, name, price, "updatedAt") VALUES ('p1', 'a', 1.25, now())`);
    await client.query(
      `INSERT INTO "Order" (id, "userId", "updatedAt") SELECT 'o' || lpad(g::text, 6, '0'), 'u1', now() FROM generate_series(1, 3000) g`,
    );
    await client.query(
      `INSERT INTO "OrderItem" (id, "orderId", "productId", quantity, price) SELECT 'i' || g, 'o' || lpad(g::text, 6, '0'), 'p1', g % 3 + 1, 1.25 FROM generate_series(1, 2900) g`,
    );
    const name = '20240301000000_backfill_order_totals';
    const dir = migrationsDir({});
    copyFileSync(join(ROOT, 'data-migrations', `${name}.ts`), join(dir, `${name}.ts`));
    const up = await runDbops(['migrate', 'up'], { env: env(dir) });
    expect(up.code, up.stderr).toBe(0);
    const check = async () =>
      (
        await client.query<{ missing: string; wrong: string }>(
          `SELECT count(*) FILTER (WHERE total IS NULL) AS missing, count(*) FILTER (WHERE total <> COALESCE((SELECT sum(quantity * price) FROM "OrderItem" i WHERE i."orderId" = o.id), 0)) AS wrong FROM "Order" o`,
        )
      ).rows[0];
    expect(await check()).toEqual({ missing: '0', wrong: '0' });
    const status = await runDbops(['migrate', 'status', '--json'], { env: env(dir) });
    expect(status.stdout).toContain(name);

    const down = await runDbops(['migrate', 'down', '--yes'], { env: env(dir) });
    expect(down.code, down.stderr).toBe(0);
    expect(await check()).toEqual({ missing: '3000', wrong: '0' });
    const upAgain = await runDbops(['migrate', 'up'], { env: env(dir) });
    expect(upAgain.code, upAgain.stderr).toBe(0);
    expect(await check()).toEqual({ missing: '0', wrong: '0' });
  });
});
