/**
 * SIGKILL between a migration's commit and its cache invalidation, then a rerun: every owed key is
 * invalidated, none skipped, none that was not owed removed. Real `dbops migrate up` processes,
 * real signals; DBOPS_TEST_PAUSE_BEFORE_INVALIDATION_MS widens the window so the kill can be aimed
 * (before the drain, during it, or after it), at a random point drawn from a seeded generator.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDbops, startDbops } from '../helpers/cli.js';
import { DEFINE_PATH, migrationFolder, withClient } from '../helpers/migrations.js';
import { mulberry32 } from '../helpers/reliability.js';
import { createTestDatabase, redisNamespace, redisUrl, type TestDatabase } from '../helpers/services.js';
import { cleanEnvFor } from '../helpers/suite-env.js';

const KILLS = 10;
const PER = 500;
const PAUSE_MS = 150;
const SEED = Number(process.env.DBOPS_KILL_SEED ?? 14);

/** Migration i renames the users of its own id range and invalidates exactly their keys. */
function migrationSource(i: number): string {
  return `import { defineDataMigration } from ${JSON.stringify(DEFINE_PATH)};
export default defineDataMigration({
  async up({ sql, invalidate }) {
    const { rows } = await sql\`UPDATE users SET name = 'v${i}' WHERE id > ${i * PER} AND id <= ${(i + 1) * PER} RETURNING id\`;
    invalidate('user:{id}', rows);
  },
});
`;
}

let db: TestDatabase;
let redis: Redis;
const ns = redisNamespace().replace(/:$/, '');

beforeAll(async () => {
  db = await createTestDatabase({ empty: true });
  await withClient(db.url, async (c) => {
    await c.query('CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL)');
    await c.query(`INSERT INTO users SELECT g, 'old' FROM generate_series(1, $1) g`, [KILLS * PER]);
  });
  redis = new Redis(redisUrl());
  const pipeline = redis.pipeline();
  for (let id = 1; id <= KILLS * PER; id++) pipeline.set(`${ns}:user:${id}`, 'old');
  pipeline.set(`${ns}:product:1`, 'not owed');
  await pipeline.exec();
});

afterAll(async () => {
  const keys = await redis.keys(`${ns}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  await db?.drop().catch(() => {});
});

async function present(from: number, to: number): Promise<number> {
  const keys = Array.from({ length: to - from + 1 }, (_, k) => `${ns}:user:${from + k}`);
  return redis.exists(...keys);
}

describe('SIGKILL between the commit and the invalidation', () => {
  it(`${KILLS} kills at random points, each followed by a plain rerun: every owed key invalidated, nothing else`, async () => {
    const random = mulberry32(SEED);
    const dir = migrationFolder({});
    const env = cleanEnvFor(db.url, dir, {
      REDIS_URL: redisUrl(),
      CACHE_KEY_PREFIX: ns,
      DBOPS_PRISMA_MIGRATIONS_DIR: join(dir, 'none'),
    });
    const landed: string[] = [];
    for (let i = 0; i < KILLS; i++) {
      writeFileSync(join(dir, `2025010100${String(i).padStart(4, '0')}_rename_${i}.ts`), migrationSource(i));
      const run = startDbops(['migrate', 'up'], {
        env: { ...env, DBOPS_TEST_PAUSE_BEFORE_INVALIDATION_MS: String(PAUSE_MS) },
      });
      for (let waited = 0; !run.output().includes('test pause before invalidation'); waited += 10) {
        if (waited > 30_000) throw new Error(`no pause announced: ${run.output()}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      // From inside the pause, through the drain (a few ms once the cache is warm), to after the exit.
      const delay = Math.round(random() * (PAUSE_MS + 80));
      await new Promise((r) => setTimeout(r, delay));
      run.child.kill('SIGKILL');
      const killed = await run.done;
      const owedAfterKill = await withClient(
        db.url,
        async (c) =>
          (await c.query('SELECT count(*)::int AS n FROM dbops.cache_invalidations WHERE done_at IS NULL')).rows[0].n,
      );
      landed.push(
        `${delay} ms: ${killed.signal === 'SIGKILL' ? 'killed' : `exited ${killed.code}`}, ${owedAfterKill} owed`,
      );
      // The migration committed before the pause, whatever the kill hit.
      await withClient(db.url, async (c) => {
        expect((await c.query(`SELECT count(*)::int AS n FROM users WHERE name = $1`, [`v${i}`])).rows[0].n).toBe(PER);
      });
      // The rerun: alternately the next migrate up (nothing pending: it drains first) and cache drain.
      const rerun = await runDbops(i % 2 === 0 ? ['migrate', 'up'] : ['cache', 'drain'], { env });
      expect(rerun.code, rerun.stderr).toBe(0);
      expect(await present(i * PER + 1, (i + 1) * PER)).toBe(0);
      if (i + 1 < KILLS) expect(await present((i + 1) * PER + 1, KILLS * PER)).toBe((KILLS - i - 1) * PER);
      expect(await redis.get(`${ns}:product:1`)).toBe('not owed');
      const { rows } = await withClient(db.url, (c) =>
        c.query<{ owed: number; done: number }>(
          'SELECT count(*) FILTER (WHERE done_at IS NULL)::int AS owed, count(*) FILTER (WHERE done_at IS NOT NULL)::int AS done FROM dbops.cache_invalidations',
        ),
      );
      expect(rows[0]).toEqual({ owed: 0, done: i + 1 });
    }
    // The kills landed both before the invalidation was carried out and after.
    process.stderr.write(`invalidation kills: ${landed.join('; ')}\n`);
    expect(landed.some((l) => l.endsWith(' 1 owed'))).toBe(true);
    expect(landed.some((l) => l.endsWith(' 0 owed'))).toBe(true);
  });

  it('migrate status --json shows what is owed, and what was invalidated and when', async () => {
    const dir = migrationFolder({});
    const env = cleanEnvFor(db.url, dir, {
      REDIS_URL: redisUrl(),
      CACHE_KEY_PREFIX: ns,
      DBOPS_PRISMA_MIGRATIONS_DIR: join(dir, 'none'),
    });
    const status = await runDbops(['migrate', 'status', '--json'], { env });
    expect(status.code, status.stderr).toBe(0);
    const doc = JSON.parse(status.stdout);
    expect(doc.invalidations.owed).toEqual([]);
    expect(doc.invalidations.done.length).toBeGreaterThan(0);
    expect(doc.invalidations.done[0]).toMatchObject({
      keys: PER,
      doneAt: expect.any(String),
      attempts: expect.any(Number),
    });
  });
});
