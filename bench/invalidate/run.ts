/**
 * invalidate: a data migration that changes 200,000 of 2,000,000 users whose rows are cached as
 * `user:<id>` (2,000,000 keys), measured four ways in the same run, each on a fresh copy of the
 * database and a fresh redis-server, while a separate process PINGs Redis about every millisecond:
 *
 *   update   the bare UPDATE through psql (the physical reference)
 *   bare     `dbops migrate up` of the same UPDATE, no invalidation (the reference of the goal)
 *   precise  `dbops migrate up` of the UPDATE ... RETURNING id + invalidate('user:{id}', rows)
 *   flush    the bare migration, then `dbops cache flush 'user:*' --yes` (what teams do today)
 *
 * Reported: total time (median of the rounds), keys removed, keys wrongly removed (cached users the
 * migration did not change), Redis PING p99 and max during the run. Goal: precise ≤ 1.10 × bare,
 * 0 wrongly removed. BENCH_USERS / BENCH_CHANGED / BENCH_ROUNDS scale it (default 2,000,000 /
 * 200,000 / 3).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { scratchDir, startPostgres, startRedis } from '../../test/helpers/servers.js';
import { fmt, median, printTable } from '../lib/measure.js';
import { type Probe, sh, startProber } from '../lib/proc.js';

const USERS = Number(process.env.BENCH_USERS ?? 2_000_000);
const CHANGED = Number(process.env.BENCH_CHANGED ?? 200_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const bin = fileURLToPath(new URL('../../bin/dbops.js', import.meta.url));
const define = fileURLToPath(new URL('../../src/migrations/define.ts', import.meta.url));

const UPDATE = `UPDATE users SET name = 'changed', updated_at = now() WHERE id <= ${CHANGED}`;

function migrationDir(root: string, name: string, body: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, '20250101000000_change_users.ts'),
    `import { defineDataMigration } from ${JSON.stringify(define)};\nexport default defineDataMigration({\n  async up({ sql, invalidate }) {\n${body}\n  },\n});\n`,
  );
  return dir;
}

type Method = 'update' | 'bare' | 'precise' | 'flush';

interface Row {
  method: Method;
  totalMs: number;
  migrationMs: number;
  removed: number;
  wronglyRemoved: number;
  probe: Probe;
}

async function main(): Promise<void> {
  const root = scratchDir('bench-invalidate');
  const server = await startPostgres(15);
  const admin = new pg.Client({ connectionString: server.url() });
  await admin.connect();
  try {
    await admin.query('CREATE DATABASE base');
    const base = new pg.Client({ connectionString: server.url('base') });
    await base.connect();
    await base.query(
      'CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, name text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())',
    );
    await base.query(
      `INSERT INTO users (id, email, name) SELECT g, 'user' || g || '@example.com', 'user ' || g FROM generate_series(1, $1) g`,
      [USERS],
    );
    await base.query('VACUUM ANALYZE users');
    await base.end();
    const dirs = {
      bare: migrationDir(root, 'bare', `    await sql\`${UPDATE}\`;`),
      precise: migrationDir(
        root,
        'precise',
        `    const { rows } = await sql\`${UPDATE} RETURNING id\`;\n    invalidate('user:{id}', rows);`,
      ),
    };
    const rows: Row[] = [];
    let copy = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const method of ['update', 'bare', 'precise', 'flush'] as Method[]) {
        const db = `r${copy++}`;
        await admin.query(`CREATE DATABASE ${db} TEMPLATE base`);
        const redis = await startRedis(['--enable-debug-command', 'yes']);
        const client = new Redis(redis.url);
        try {
          // user:0 .. user:<USERS-1>; the migration changes ids 1..CHANGED.
          await client.call('DEBUG', 'POPULATE', String(USERS), 'user', '64');
          const env = {
            ...process.env,
            NO_COLOR: '1',
            DATABASE_URL: server.url(db),
            REDIS_URL: redis.url,
            DBOPS_PRISMA_MIGRATIONS_DIR: join(root, 'none'),
          };
          const stop = await startProber(redis.port);
          const t0 = performance.now();
          let migrationMs = 0;
          if (method === 'update') {
            const r = await sh('psql', [server.url(db), '-qc', UPDATE], { env });
            if (r.code !== 0) throw new Error(r.stderr);
            migrationMs = performance.now() - t0;
          } else {
            const dir = method === 'precise' ? dirs.precise : dirs.bare;
            const r = await sh(bin, ['migrate', 'up'], { env: { ...env, DBOPS_MIGRATIONS_DIR: dir }, cwd: root });
            if (r.code !== 0) throw new Error(`${method}: dbops exited ${r.code}: ${r.stderr}`);
            migrationMs = performance.now() - t0;
            if (method === 'flush') {
              const f = await sh(bin, ['cache', 'flush', 'user:*', '--yes'], { env, cwd: root });
              if (f.code !== 0) throw new Error(`flush: dbops exited ${f.code}: ${f.stderr}`);
            }
          }
          const totalMs = performance.now() - t0;
          const probe = await stop();
          const left = Number(await client.dbsize());
          // Keys of users the migration did not change: user:0 and user:<CHANGED+1>..user:<USERS-1>.
          let untouchedLeft = 0;
          const pipeline = client.pipeline();
          for (let id = CHANGED + 1; id < USERS; id += Math.max(1, Math.floor((USERS - CHANGED) / 1000)))
            pipeline.exists(`user:${id}`);
          const sampled = ((await pipeline.exec()) ?? []).map(([, v]) => Number(v));
          untouchedLeft = sampled.filter((v) => v === 1).length;
          const removed = USERS - left;
          const changedLeft = await client.exists(
            ...Array.from({ length: Math.min(CHANGED, 1000) }, (_, i) => `user:${i + 1}`),
          );
          if (method === 'precise' && changedLeft !== 0)
            throw new Error(`precise: ${changedLeft} changed users still cached`);
          const wronglyRemoved = method === 'update' || method === 'bare' ? 0 : Math.max(0, removed - CHANGED);
          if (method === 'precise' && untouchedLeft !== sampled.length)
            throw new Error('precise: an untouched key was removed');
          rows.push({ method, totalMs, migrationMs, removed, wronglyRemoved, probe });
          process.stderr.write(`round ${round + 1} ${method}: ${fmt(totalMs, 0)} ms, removed ${removed}\n`);
        } finally {
          client.disconnect();
          await redis.stop();
          await admin.query(`DROP DATABASE ${db}`);
        }
      }
    }
    const by = (m: Method) => rows.filter((r) => r.method === m);
    const bare = median(by('bare').map((r) => r.totalMs));
    const labels: Record<Method, string> = {
      update: 'bare UPDATE (psql)',
      bare: 'dbops migrate up, no invalidation',
      precise: 'dbops migrate up + precise invalidation',
      flush: "dbops migrate up + cache flush 'user:*'",
    };
    const table = (['update', 'bare', 'precise', 'flush'] as Method[]).map((m) => {
      const rs = by(m);
      const total = median(rs.map((r) => r.totalMs));
      return {
        method: labels[m],
        'total ms': fmt(total, 0),
        'x bare migration': fmt(total / bare, 2),
        'keys removed': median(rs.map((r) => r.removed)),
        'wrongly removed': median(rs.map((r) => r.wronglyRemoved)),
        'PING p99 ms': fmt(median(rs.map((r) => r.probe.p99)), 2),
        'PING max ms': fmt(Math.max(...rs.map((r) => r.probe.max)), 1),
      };
    });
    console.log(
      `\n${USERS.toLocaleString('en-US')} users cached as user:<id>, ${CHANGED.toLocaleString('en-US')} changed; median of ${ROUNDS} round(s), PostgreSQL 15, redis-server 7`,
    );
    printTable(table);
  } finally {
    await admin.end();
    await server.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
