/**
 * Waiting for the read replicas to replay a commit before the cache is invalidated: otherwise a
 * reader that misses the cache refills it from a replica that still has the old row.
 *
 * The primary's `pg_current_wal_lsn()`, read after the commit, is at or past the commit record;
 * each replica is polled with `pg_last_wal_replay_lsn()` until it has replayed that far, up to a
 * bound. A replica's connection is opened once per wait and closed after it.
 */
import type { ClientBase } from 'pg';
import { messageOf } from '../errors.js';
import { sleep } from '../util/sleep.js';

/** A configured replica: a name for messages (host:port, never a password) and a way to connect. */
export interface ReplicaTarget {
  name: string;
  connect(): Promise<ClientBase & { end(): Promise<void> }>;
}

export interface ReplicaWaitEntry {
  name: string;
  caughtUp: boolean;
  /** From the start of the wait until this replica had replayed the position (or the bound). */
  waitedMs: number;
  /** Bytes still to replay when the wait ended (0 when caught up; null when unknown). */
  lagBytes: number | null;
  error?: string;
}

export interface ReplicaWait {
  /** The primary's WAL position waited for. */
  lsn: string;
  caughtUp: boolean;
  waitedMs: number;
  replicas: ReplicaWaitEntry[];
}

const POLL_MS = 20;
const since = (t0: number) => Math.round((performance.now() - t0) * 10) / 10;

/** Waits until every replica replayed the primary's current WAL position, at most `boundMs`. Never throws: the result says who is late. */
export async function waitForReplicas(
  primary: ClientBase,
  replicas: ReplicaTarget[],
  boundMs: number,
  signal?: AbortSignal,
): Promise<ReplicaWait> {
  const { rows } = await primary.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  const lsn = rows[0]?.lsn as string;
  const started = performance.now();
  const deadline = started + boundMs;
  const entries = await Promise.all(replicas.map((r) => waitForOne(r, lsn, started, deadline, signal)));
  return { lsn, caughtUp: entries.every((e) => e.caughtUp), waitedMs: since(started), replicas: entries };
}

async function waitForOne(
  replica: ReplicaTarget,
  lsn: string,
  started: number,
  deadline: number,
  signal?: AbortSignal,
): Promise<ReplicaWaitEntry> {
  let client: Awaited<ReturnType<ReplicaTarget['connect']>> | undefined;
  let lagBytes: number | null = null;
  try {
    client = await replica.connect();
    for (;;) {
      const { rows } = await client.query<{ replay: string | null; lag: string | null }>(
        'SELECT pg_last_wal_replay_lsn()::text AS replay, pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn())::text AS lag',
        [lsn],
      );
      const r = rows[0];
      if (!r || r.replay === null) {
        return {
          name: replica.name,
          caughtUp: false,
          waitedMs: since(started),
          lagBytes: null,
          error: 'not a streaming replica (pg_last_wal_replay_lsn() is null)',
        };
      }
      lagBytes = Math.max(0, Number(r.lag));
      if (lagBytes <= 0) return { name: replica.name, caughtUp: true, waitedMs: since(started), lagBytes: 0 };
      if (performance.now() >= deadline || signal?.aborted) break;
      await sleep(Math.min(POLL_MS, Math.max(1, deadline - performance.now())), signal);
    }
    return { name: replica.name, caughtUp: false, waitedMs: since(started), lagBytes };
  } catch (error) {
    return { name: replica.name, caughtUp: false, waitedMs: since(started), lagBytes, error: messageOf(error) };
  } finally {
    await client?.end().catch(() => {});
  }
}
