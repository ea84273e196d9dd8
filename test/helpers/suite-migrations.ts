/**
 * The migrations the race and kill suites run: transactional ones with a side effect, a
 * `transaction: false` one whose side effect no rollback can undo and whose backfill changes every
 * row of `items` once, and the tables that count it all.
 */
import type pg from 'pg';
import { counterHistogram } from './counters.js';
import { migrationFolder } from './migrations.js';

/** A plain `.mjs` migration module (no TypeScript to compile: 16 processes start faster). */
const mjs = (body: string) => `export default ${body};\n`;

export const ITEMS = 1000;

/** `audit` (transactional side effects), `side` (side effects outside any transaction), `items` (the backfill's rows). */
export async function prepareSuiteDb(c: pg.Client): Promise<void> {
  await c.query('CREATE TABLE audit (id serial PRIMARY KEY, name text NOT NULL)');
  await c.query('CREATE TABLE side (id serial PRIMARY KEY, name text NOT NULL, pid int NOT NULL)');
  await c.query('CREATE TABLE items (id int PRIMARY KEY, counter int NOT NULL DEFAULT 0)');
  await c.query('INSERT INTO items (id) SELECT g FROM generate_series(1, $1::int) g', [ITEMS]);
}

const tx = (name: string, sleep: number) =>
  mjs(`{
  async up({ sql }) {
    await sql\`INSERT INTO audit (name) VALUES ('${name}')\`;
    await sql\`SELECT pg_sleep(${sleep})\`;
  },
  async validate({ sql }) {
    const { rows } = await sql\`SELECT count(*)::int AS n FROM audit WHERE name = '${name}'\`;
    return rows[0].n === 1;
  },
}`);

/**
 * Four migrations. `side`: a non-transactional side effect per up() of the transaction: false ones,
 * counted (race: a second up() is a double application) or made idempotent (kill: a rerun after a
 * SIGKILL runs up() again by design, so only a second *application* would count).
 */
export function suiteFolder(opts: { idempotentSide: boolean }): string {
  const side = (name: string) =>
    opts.idempotentSide
      ? `INSERT INTO side (name, pid) SELECT '${name}', pg_backend_pid() WHERE NOT EXISTS (SELECT 1 FROM side WHERE name = '${name}')`
      : `INSERT INTO side (name, pid) VALUES ('${name}', pg_backend_pid())`;
  return migrationFolder({
    '20240101000000_first.mjs': tx('first', 0.05),
    '20240102000000_backfill.mjs': mjs(`{
  transaction: false,
  async up({ sql, backfill }) {
    await sql.query(${JSON.stringify(side('backfill'))});
    await backfill({ table: 'items', set: 'counter = counter + 1' });
  },
  async validate({ sql }) {
    const { rows } = await sql\`SELECT count(*)::int AS n FROM items WHERE counter <> 1\`;
    return rows[0].n === 0;
  },
}`),
    '20240103000000_middle.mjs': tx('middle', 0.2),
    '20240104000000_no_tx.mjs': mjs(`{
  transaction: false,
  async up({ sql }) {
    await sql.query(${JSON.stringify(side('no_tx'))});
  },
}`),
  });
}

export const SUITE_MIGRATIONS = [
  '20240101000000_first',
  '20240102000000_backfill',
  '20240103000000_middle',
  '20240104000000_no_tx',
];

/** How many times each side effect and each backfill row happened. */
export async function sideEffects(
  c: pg.Client,
): Promise<{ audit: Record<string, number>; side: Record<string, number>; items: Record<number, number> }> {
  const count = async (table: string) =>
    Object.fromEntries(
      (
        await c.query<{ name: string; n: number }>(
          `SELECT name, count(*)::int AS n FROM ${table} GROUP BY name ORDER BY name`,
        )
      ).rows.map((r) => [r.name, r.n]),
    );
  return { audit: await count('audit'), side: await count('side'), items: await counterHistogram(c, 'items') };
}
