/**
 * Backfill throughput on one PostgreSQL 18 (embedded, durable settings: fsync and synchronous_commit on),
 * a 1,000,000-row "User" table of the example schema (cuid-like ids in insertion order), rebuilt
 * before each method:
 *   (a) one raw `UPDATE "User" SET role = 'USER' WHERE role IS NULL` through psql: the reference;
 *   (b) the dbops backfill of the same change (the built engine, default settings, its own process);
 *   (c) the original design's per-row Prisma loop in one transaction, on 20,000 rows, extrapolated.
 * Goals: b >= 0.9x a with no batch over 0.5 s; b >= 50x c; peak RSS of b < 200 MB.
 * BENCH_ROWS (default 1000000) sizes the table; BENCH_BIG=10000000 adds an RSS run on a table that big.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { applySchemaMigrations } from '../../src/db/prisma-migrations.js';
import { startPostgres } from '../../test/helpers/servers.js';
import { fmt, printTable } from '../lib/measure.js';

const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const PRISMA_ROWS = Number(process.env.BENCH_PRISMA_ROWS ?? 20_000);
const BIG = Number(process.env.BENCH_BIG ?? 0);
const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));

const server = await startPostgres('embedded', {
  fsync: 'on',
  synchronous_commit: 'on',
  full_page_writes: 'on',
  shared_buffers: '256MB',
  max_wal_size: '4GB',
});
const url = server.url('bench');

function node(script: string, args: string[]): Record<string, unknown> {
  const r = spawnSync(process.execPath, [here(script), ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${script} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as Record<string, unknown>;
}

async function rebuild(rows: number): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query('DROP TABLE IF EXISTS dbops.backfill_checkpoints');
  await c.query('TRUNCATE "User" CASCADE');
  // cuid-like ids: a time-ordered prefix, like the ids Prisma's cuid() generates in insertion order.
  await c.query(
    `INSERT INTO "User" (id, email, "updatedAt")
     SELECT 'c' || lpad(to_hex(g), 8, '0') || substr(md5(g::text), 1, 16), 'user' || g || '@example.com', now()
       FROM generate_series(1, $1::int) g`,
    [rows],
  );
  await c.end();
  // VACUUM cannot run in a transaction block; CHECKPOINT so no method pays for the load's WAL.
  const v = new pg.Client({ connectionString: url });
  await v.connect();
  await v.query('VACUUM ANALYZE "User"');
  await v.query('CHECKPOINT');
  await v.end();
}

try {
  await server.createDatabase('bench');
  await applySchemaMigrations({ connectionString: url, migrationsDir: 'prisma/migrations' });

  // (a) raw UPDATE through psql
  await rebuild(ROWS);
  const t0 = performance.now();
  const psql = spawnSync(
    'psql',
    [url, '-v', 'ON_ERROR_STOP=1', '-qc', `UPDATE "User" SET role = 'USER' WHERE role IS NULL`],
    { encoding: 'utf8' },
  );
  const rawMs = performance.now() - t0;
  if (psql.status !== 0) throw new Error(`psql failed: ${psql.stderr}`);
  const rawRps = (ROWS / rawMs) * 1000;

  // (b) dbops backfill
  await rebuild(ROWS);
  const b = node('engine-child.mjs', [url, 'bench_roles', 'User', 'role IS NULL', `role = 'USER'`]);
  const br = b.result as { rows: number; batches: number; durationMs: number; slowestBatchMs: number };
  if (br.rows !== ROWS) throw new Error(`backfill changed ${br.rows} rows, expected ${ROWS}`);
  const bfRps = (br.rows / (b.wallMs as number)) * 1000;

  // (c) per-row Prisma loop, 20,000 rows, extrapolated
  await rebuild(ROWS);
  const c = node('prisma-child.mjs', [url, String(PRISMA_ROWS)]);
  const prismaRps = ((c.rows as number) / (c.wallMs as number)) * 1000;

  printTable([
    {
      method: '(a) raw UPDATE via psql',
      rows: ROWS,
      'time s': fmt(rawMs / 1000, 2),
      'rows/s': fmt(rawRps, 0),
      'longest txn': `${fmt(rawMs / 1000, 2)} s`,
      'peak RSS MB': '-',
    },
    {
      method: '(b) dbops backfill',
      rows: br.rows,
      'time s': fmt((b.wallMs as number) / 1000, 2),
      'rows/s': fmt(bfRps, 0),
      'longest txn': `${fmt(br.slowestBatchMs / 1000, 3)} s (${br.batches} batches, median ${fmt(b.p50BatchMs as number, 0)} ms)`,
      'peak RSS MB': fmt(b.maxRssMb as number, 0),
    },
    {
      method: `(c) Prisma per-row loop (${c.rows} rows, extrapolated)`,
      rows: ROWS,
      'time s': fmt(ROWS / prismaRps, 0),
      'rows/s': fmt(prismaRps, 0),
      'longest txn': `${fmt(ROWS / prismaRps, 0)} s (one transaction)`,
      'peak RSS MB': '-',
    },
  ]);
  const ba = bfRps / rawRps;
  const bc = bfRps / prismaRps;
  const verdict = (ok: boolean) => (ok ? 'MET' : 'NOT MET');
  console.log(`\nb/a = ${fmt(ba, 2)} (goal >= 0.90) ${verdict(ba >= 0.9)}`);
  console.log(
    `longest batch = ${fmt(br.slowestBatchMs, 0)} ms, batches over 500 ms: ${b.batchesOver500ms} (goal none) ${verdict(br.slowestBatchMs <= 500)}`,
  );
  console.log(`b/c = ${fmt(bc, 0)} (goal >= 50) ${verdict(bc >= 50)}`);
  console.log(
    `peak RSS of (b) = ${fmt(b.maxRssMb as number, 0)} MB at ${ROWS} rows (goal < 200) ${verdict((b.maxRssMb as number) < 200)}`,
  );

  if (BIG > 0) {
    await rebuild(BIG);
    const big = node('engine-child.mjs', [url, 'bench_big', 'User', 'role IS NULL', `role = 'USER'`]);
    const bigR = big.result as { rows: number; batches: number; slowestBatchMs: number };
    console.log(
      `peak RSS of (b) = ${fmt(big.maxRssMb as number, 0)} MB at ${bigR.rows} rows (${bigR.batches} batches, ${fmt(((bigR.rows / (big.wallMs as number)) * 1000) as number, 0)} rows/s, longest batch ${fmt(bigR.slowestBatchMs, 0)} ms) (goal < 200) ${verdict((big.maxRssMb as number) < 200)}`,
    );
  } else {
    console.log('10,000,000-row RSS check skipped (set BENCH_BIG=10000000 to run it)');
  }
} finally {
  await server.stop();
}
