/**
 * The migration lock: a TRANSACTION-scoped advisory lock (`pg_try_advisory_xact_lock`) taken as
 * the first statement of the transaction that applies a migration (or, for work that cannot run
 * in one transaction, of a "lock transaction" held open beside it).
 *
 * Why this mechanism:
 * - Through PgBouncer in transaction pooling a whole transaction runs on one server connection, so
 *   the lock and everything it protects share a backend; a session lock would not (it would stay
 *   on whatever server connection took it, or be released on another one).
 * - It dies with its transaction: when the holder is SIGKILLed the kernel closes its socket, the
 *   backend (directly, or after PgBouncer drops the server connection) aborts the transaction and
 *   the lock is gone. `client_connection_check_interval` makes a backend busy in a long statement
 *   notice a vanished client within about a second (PostgreSQL 14+).
 * - Waiters poll with the non-blocking `try` variant in short transactions instead of blocking
 *   inside one: a blocked waiter holds a snapshot, which makes `CREATE INDEX CONCURRENTLY` in the
 *   holder wait for it (a deadlock seen in Flyway and golang-migrate).
 * The holder is identified from pg_locks + pg_stat_activity: its transaction sets application_name
 * to `dbops migrate <pid>@<host>`, and xact_start says since when it holds the lock.
 */
import type { ClientBase } from 'pg';
import { InterruptedError, LockError } from '../errors.js';
import { sleep } from '../util/sleep.js';
import type { LockHolder, RunnerIdentity } from './types.js';

const NAMESPACE = 0x64626f70; // "dbop"

/** Advisory lock key (two int4) for one ledger table. */
export function lockKey(table: string): [number, number] {
  // FNV-1a, 32-bit, folded into a signed int4; 1 is reserved for ledger creation.
  let h = 0x811c9dc5;
  for (const ch of `migrate:${table}`) {
    h ^= ch.codePointAt(0) ?? 0;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  const key = h | 0;
  return [NAMESPACE, key === 1 ? 2 : key];
}

/** application_name identifying this dbops process (PostgreSQL keeps 63 bytes). */
export function holderApplicationName(identity: Pick<RunnerIdentity, 'pid' | 'host'>): string {
  const name = `dbops migrate ${identity.pid}@${identity.host}`;
  return Buffer.byteLength(name) <= 63
    ? name
    : Buffer.from(name)
        .subarray(0, 63)
        .toString('utf8')
        .replace(/\uFFFD+$/, '');
}

export function parseHolderApplicationName(name: string | null): { pid: number; host: string } | null {
  const m = name ? /^dbops migrate (\d+)@(.+)$/.exec(name) : null;
  return m ? { pid: Number(m[1]), host: m[2] as string } : null;
}

export interface AcquireOptions {
  key: [number, number];
  applicationName: string;
  /** How long to wait for another holder (ms). */
  timeoutMs: number;
  /** Transaction-local settings applied, in order, once the lock is ours (statement_timeout, ...). */
  settings?: Array<[string, string]>;
  signal?: AbortSignal | undefined;
  onWait?: (holder: LockHolder | null, waitedMs: number) => void;
  /** How often onWait is called while waiting (ms). */
  reportEveryMs?: number;
}

/**
 * Which server session holds the lock: its pid and start time (a pid alone may be reused). Work on
 * another connection checks against it that the lock is still ours (`lockStillHeld`).
 */
export interface LockWitness {
  backendPid: number;
  /** backend_start, as text with full precision. */
  backendStart: string;
}

/**
 * Opens a transaction on `client` holding the migration lock; polls until `timeoutMs`, then
 * throws LockError naming the holder. On return the caller owns an open transaction: it must
 * COMMIT or ROLLBACK (either releases the lock).
 */
export async function acquireLockTransaction(client: ClientBase, opts: AcquireOptions): Promise<LockWitness> {
  const started = performance.now();
  let delay = 25;
  let lastReport = 0;
  const settings = opts.settings ?? [];
  const sets = [['application_name', opts.applicationName], ...settings]
    .map((_, i) => `set_config($${3 + i * 2}, $${4 + i * 2}, true)`)
    .join(', ');
  const params: unknown[] = [opts.key[0], opts.key[1], 'application_name', opts.applicationName, ...settings.flat()];
  const text = `SELECT l AS locked, CASE WHEN l THEN concat_ws(',', ${sets}) END AS applied,
    CASE WHEN l THEN pg_backend_pid() END AS pid,
    CASE WHEN l THEN (SELECT backend_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()) END AS since
    FROM pg_try_advisory_xact_lock($1, $2) AS l`;
  for (;;) {
    await client.query('BEGIN');
    let row: { locked: boolean; pid: number | null; since: string | null } | undefined;
    try {
      ({
        rows: [row],
      } = await client.query<{ locked: boolean; pid: number | null; since: string | null }>(text, params));
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    }
    if (row?.locked === true) return { backendPid: row.pid ?? 0, backendStart: row.since ?? '' };
    await client.query('ROLLBACK');
    const waited = performance.now() - started;
    if (waited >= opts.timeoutMs) {
      const holder = await findLockHolder(client, opts.key).catch(() => null);
      throw lockTimeoutError(holder, opts.timeoutMs);
    }
    if (opts.signal?.aborted) {
      throw new InterruptedError('interrupted while waiting for the migration lock', {
        hint: 'nothing was run by this process; run the command again',
      });
    }
    if (opts.onWait && waited - lastReport >= (opts.reportEveryMs ?? 2000)) {
      lastReport = waited;
      opts.onWait(await findLockHolder(client, opts.key).catch(() => null), Math.round(waited));
    }
    const remaining = opts.timeoutMs - waited;
    await sleep(Math.min(remaining, delay * (0.5 + Math.random())), opts.signal);
    delay = Math.min(500, delay * 1.5);
  }
}

export function describeHolder(holder: LockHolder | null): string {
  if (!holder) return 'an unknown session (it finished while we looked)';
  const who =
    holder.host !== null
      ? `dbops pid ${holder.pid} on ${holder.host}`
      : `"${holder.applicationName || 'no application name'}"`;
  const since = holder.since ? ` since ${holder.since.toISOString()}` : '';
  const from = holder.clientAddr ? ` from ${holder.clientAddr}` : '';
  return `${who} (server pid ${holder.backendPid}${from}${since}, application_name "${holder.applicationName ?? ''}")`;
}

function lockTimeoutError(holder: LockHolder | null, timeoutMs: number): LockError {
  return new LockError(
    `the migration lock is held by ${describeHolder(holder)}; gave up after ${Math.round(timeoutMs / 1000)} s`,
    {
      hint: 'another dbops migrate is running; wait for it, raise --lock-timeout, or if it hangs run: dbops migrate unlock',
      details: { holder },
    },
  );
}

/** Whether the session `witness` names still holds the lock, asked from any connection. */
export async function lockStillHeld(
  client: ClientBase,
  key: readonly [number, number],
  witness: LockWitness,
): Promise<boolean> {
  const { rows } = await client.query<{ held: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.pid = $1 AND a.backend_start = $2::timestamptz
        AND l.classid = ($3::int4)::oid AND l.objid = ($4::int4)::oid AND l.objsubid = 2) AS held`,
    [witness.backendPid, witness.backendStart, key[0], key[1]],
  );
  return rows[0]?.held === true;
}

/** The session holding the lock (granted advisory lock with our key), or null. */
export async function findLockHolder(client: ClientBase, key: [number, number]): Promise<LockHolder | null> {
  const { rows } = await client.query<{
    pid: number;
    application_name: string | null;
    client_addr: string | null;
    xact_start: Date | null;
    state: string | null;
  }>(
    `SELECT l.pid, a.application_name, a.client_addr::text AS client_addr, a.xact_start, a.state
       FROM pg_locks l
       LEFT JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.classid = ($1::int4)::oid AND l.objid = ($2::int4)::oid AND l.objsubid = 2
      LIMIT 1`,
    [key[0], key[1]],
  );
  const r = rows[0];
  if (!r) return null;
  const parsed = parseHolderApplicationName(r.application_name);
  return {
    backendPid: r.pid,
    applicationName: r.application_name,
    host: parsed?.host ?? null,
    pid: parsed?.pid ?? null,
    clientAddr: r.client_addr,
    since: r.xact_start,
    state: r.state,
  };
}

/**
 * Ends the holder's server session (its transaction rolls back, the lock goes), only if that
 * backend still holds the migration lock: checked and done in one statement, because behind
 * PgBouncer the same server connection may be serving someone else by the time a person confirms.
 */
export async function terminateHolder(
  client: ClientBase,
  backendPid: number,
  key: readonly [number, number],
): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>(
    `SELECT pg_terminate_backend(l.pid) AS ok
       FROM pg_locks l
      WHERE l.locktype = 'advisory' AND l.granted AND l.pid = $1
        AND l.classid = ($2::int4)::oid AND l.objid = ($3::int4)::oid AND l.objsubid = 2`,
    [backendPid, key[0], key[1]],
  );
  return rows[0]?.ok === true;
}
