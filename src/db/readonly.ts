/**
 * Run diagnostic reads inside `BEGIN READ ONLY` with a transaction-local statement timeout.
 * A read-only transaction guarantees a diagnostic can never write, and `SET LOCAL` keeps the
 * timeout from leaking into the session (important behind PgBouncer in transaction mode,
 * where the next transaction may run on another client's server connection).
 */
import type { ClientBase } from 'pg';

/**
 * `BEGIN READ ONLY; SET LOCAL statement_timeout = timeoutMs; fn(client); COMMIT` — ROLLBACK when
 * `fn` throws (the error of `fn` is rethrown unchanged; a failing ROLLBACK is ignored).
 * `timeoutMs` ≤ 0 means no statement timeout.
 */
export async function withReadOnly<T>(
  client: ClientBase,
  timeoutMs: number,
  fn: (c: ClientBase) => Promise<T>,
): Promise<T> {
  // SET does not take bind parameters; the value is an integer we computed, never user text. One
  // simple-protocol round trip for both statements: on-call reports are latency-bound.
  const ms = Number.isFinite(timeoutMs) && timeoutMs > 0 ? Math.floor(timeoutMs) : 0;
  await client.query(`BEGIN READ ONLY; SET LOCAL statement_timeout = ${ms}`);
  try {
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}
