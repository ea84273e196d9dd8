/**
 * A read-only transaction with a statement timeout around diagnostic queries. A stand-in for the
 * shared `src/db/readonly.ts` (feat/slow) until the lead folds the two together: same signature.
 */
import type { Client } from 'pg';

/** Run `fn` inside BEGIN READ ONLY with SET LOCAL statement_timeout; always ends the transaction. */
export async function withReadOnly<T>(client: Client, timeoutMs: number, fn: (client: Client) => Promise<T>): Promise<T> {
  await client.query('BEGIN READ ONLY');
  try {
    // SET cannot take a bind parameter; the value is a whole number we computed ourselves.
    await client.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.floor(timeoutMs))}`);
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}
