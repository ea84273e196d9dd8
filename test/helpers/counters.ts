import type { ClientBase } from 'pg';

/**
 * How many rows of `table` have each value of its `counter` column: a backfill that changed every
 * row exactly once gives `{ 1: n }`; a row done twice or skipped shows up as 2 or 0.
 */
export async function counterHistogram(client: ClientBase, table: string): Promise<Record<number, number>> {
  const r = await client.query<{ c: number; n: string }>(
    `SELECT counter AS c, count(*) AS n FROM ${table} GROUP BY counter`,
  );
  return Object.fromEntries(r.rows.map((x) => [x.c, Number(x.n)]));
}
