/**
 * A PostgreSQL 15 primary with a real streaming replica of it (pg_basebackup -R over loopback, its
 * own free port), for the cache-invalidation suites. `setApplyDelay` makes the replica lag on
 * purpose (recovery_min_apply_delay: commits become visible there that much later). Started by
 * the files that need it, not by the global setup: a pair costs a second or two.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { freePort, serverUser, startServer, systemBinaries } from '../../src/db/local-server.js';
import { type PgServer, scratchDir, startPostgres } from './servers.js';

export interface ReplicaPair {
  primary: PgServer;
  /** The replica's URL for a database. */
  replicaUrl(database?: string): string;
  replicaPort: number;
  /** recovery_min_apply_delay on the replica ('0' to catch up). */
  setApplyDelay(delay: string): Promise<void>;
  /** Waits until the replica replayed everything the primary has written so far. */
  catchUp(): Promise<void>;
  stop(): Promise<void>;
}

export async function startReplicaPair(): Promise<ReplicaPair> {
  const binaries = systemBinaries(15);
  if (!binaries) throw new Error('PostgreSQL 15 is not installed (apt-get install postgresql-15)');
  const primary = await startPostgres(15, {
    wal_level: 'replica',
    max_wal_senders: 5,
    wal_keep_size: '64MB',
    synchronous_commit: 'on',
  });
  const dir = scratchDir('replica');
  const dataDir = join(dir, 'data');
  try {
    return await startStandby(primary, binaries, dir, dataDir);
  } catch (error) {
    // A failed start leaves nothing running.
    await primary.stop();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

async function startStandby(
  primary: PgServer,
  binaries: NonNullable<ReturnType<typeof systemBinaries>>,
  dir: string,
  dataDir: string,
): Promise<ReplicaPair> {
  const runAs = serverUser();
  execFileSync(
    join('/usr/lib/postgresql/15/bin', 'pg_basebackup'),
    [
      '-h',
      '127.0.0.1',
      '-p',
      String(primary.port),
      '-U',
      'postgres',
      '-D',
      dataDir,
      '-R',
      '-X',
      'stream',
      '-c',
      'fast',
      '-C',
      '-S',
      'dbops_test_replica',
    ],
    { stdio: 'ignore', ...(runAs ?? {}) },
  );
  const port = await freePort();
  const server = await startServer({
    binaries,
    dataDir,
    port,
    logFile: join(dir, 'postgres.log'),
    settings: { hot_standby: 'on', max_connections: 400, fsync: 'off', hot_standby_feedback: 'on' },
  });
  const replicaUrl = (database = 'postgres') => `postgresql://postgres@127.0.0.1:${port}/${database}`;
  const onReplica = async <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => {
    const c = new pg.Client({ connectionString: replicaUrl() });
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  };
  const pair: ReplicaPair = {
    primary,
    replicaPort: port,
    replicaUrl,
    setApplyDelay: async (delay) => {
      // ALTER SYSTEM is refused on a standby: the setting goes to postgresql.auto.conf (last wins), then a reload.
      appendFileSync(join(dataDir, 'postgresql.auto.conf'), `recovery_min_apply_delay = '${delay}'\n`);
      await onReplica(async (c) => {
        await c.query('SELECT pg_reload_conf()');
        for (let i = 0; i < 200; i++) {
          const { rows } = await c.query<{ v: string }>(`SELECT current_setting('recovery_min_apply_delay') AS v`);
          if (normalise(rows[0]?.v ?? '') === normalise(delay)) return;
          await new Promise((r) => setTimeout(r, 25));
        }
        throw new Error(`recovery_min_apply_delay did not become ${delay}`);
      });
    },
    catchUp: async () => {
      const p = new pg.Client({ connectionString: primary.url() });
      await p.connect();
      const { rows } = await p.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
      await p.end();
      await onReplica(async (c) => {
        for (;;) {
          const r = await c.query<{ ok: boolean }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [
            rows[0]?.lsn,
          ]);
          if (r.rows[0]?.ok) return;
          await new Promise((res) => setTimeout(res, 20));
        }
      });
    },
    stop: async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
      await primary.stop();
    },
  };
  // The replica is connected and streaming before anyone relies on it.
  await pair.catchUp();
  return pair;
}

function normalise(v: string): string {
  if (v === '0' || v === '0ms' || v === '0s') return '0';
  return v.replace(/\s+/g, '');
}
