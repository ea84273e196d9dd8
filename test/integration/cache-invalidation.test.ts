/**
 * Data migrations' cache invalidation on real servers: a PostgreSQL 15 primary with a real
 * streaming replica (made to lag with recovery_min_apply_delay), the shared redis-server and the
 * 3-primary cluster, and a redis-server of its own that is stopped and restarted on its port.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createInvalidator } from '../../src/cache/invalidate.js';
import { openTarget } from '../../src/cache/target.js';
import { freePort } from '../../src/db/local-server.js';
import { collectReplicas } from '../../src/diagnostics/replicas.js';
import { ExitCode } from '../../src/errors.js';
import { MigrationRunner, type MigrationRunnerOptions } from '../../src/index.js';
import { type InvalidationOptions, Owed, recordOwed } from '../../src/migrations/invalidation.js';
import { runDbops } from '../helpers/cli.js';
import { mig, migrationFolder, withClient } from '../helpers/migrations.js';
import { type ReplicaPair, startReplicaPair } from '../helpers/replica.js';
import { scratchDir, startRedis } from '../helpers/servers.js';
import { createTestDatabase, redisNamespace, redisUrl, services, uniqueName } from '../helpers/services.js';

let pair: ReplicaPair;
const closers: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  pair = await startReplicaPair();
});
afterAll(async () => {
  // Each closer gets 10 s: a hung one must not keep the replica pair running after the file.
  const bounded = (p: Promise<unknown>) => Promise.race([p.catch(() => {}), new Promise((r) => setTimeout(r, 10_000))]);
  for (const c of closers.reverse()) await bounded(c());
  await pair?.stop();
});

/** A database of its own on the primary, with `users(id, name)` rows 1..n named `old`. */
async function usersDb(n: number): Promise<string> {
  const url = await pair.primary.createDatabase(uniqueName('inv'));
  await withClient(url, async (c) => {
    await c.query('CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL)');
    await c.query(`INSERT INTO users SELECT g, 'old' FROM generate_series(1, $1) g`, [n]);
  });
  return url;
}

function cacheOf(url: string): InvalidationOptions['cache'] {
  return async () => {
    const target = await openTarget({ url, timeoutMs: 3000, commandTimeoutMs: 5000 });
    closers.push(() => target.close());
    return createInvalidator(target);
  };
}

function replicaOf(database: string): NonNullable<InvalidationOptions['replicas']> {
  return [
    {
      name: `127.0.0.1:${pair.replicaPort}`,
      connect: async () => {
        const c = new pg.Client({ connectionString: pair.replicaUrl(database) });
        await c.connect();
        return c;
      },
    },
  ];
}

function runner(
  url: string,
  dir: string,
  invalidation: InvalidationOptions,
  extra: Partial<MigrationRunnerOptions> = {},
): MigrationRunner {
  const r = new MigrationRunner({
    connectionString: url,
    migrationsDir: dir,
    prismaMigrationsDir: false,
    prismaClient: false,
    invalidation,
    ...extra,
  });
  closers.push(() => r.close());
  return r;
}

const dbName = (url: string) => new URL(url).pathname.slice(1);

/** Changes every user's name to `new` and invalidates `user:{id}` for the rows it changed. */
const renameAll = mig(`{
  async up({ sql, invalidate }) {
    const { rows } = await sql\`UPDATE users SET name = 'new' RETURNING id\`;
    invalidate('user:{id}', rows);
  },
  async down({ sql, invalidate }) {
    const { rows } = await sql\`UPDATE users SET name = 'old' RETURNING id\`;
    invalidate('user:{id}', rows);
  },
}`);

async function outboxRows(url: string) {
  return withClient(url, async (c) => {
    const { rows } = await c.query<{ id: string; done: boolean; keys: number; patterns: string[] }>(
      `SELECT id, done_at IS NOT NULL AS done, jsonb_array_length(keys) AS keys, patterns FROM dbops.cache_invalidations ORDER BY id`,
    );
    return rows;
  }).catch((error: Error) => (/does not exist/.test(error.message) ? [] : Promise.reject(error)));
}

describe('a reader refilling the cache from a lagging replica', () => {
  /**
   * Cache-aside reader: GET user:<id>; on a miss, read the row from the replica and SET it. Runs
   * until `until()` is true; each observation records when it started and what it returned.
   */
  async function readLoop(url: string, ns: string, n: number, until: () => boolean) {
    const redis = new Redis(redisUrl());
    const replica = new pg.Client({ connectionString: pair.replicaUrl(dbName(url)) });
    await replica.connect();
    const seen: { at: number; id: number; value: string }[] = [];
    try {
      for (let i = 0; !until(); i++) {
        const id = (i % n) + 1;
        const at = performance.now();
        let value = await redis.get(`${ns}user:${id}`);
        if (value === null) {
          const { rows } = await replica.query<{ name: string }>('SELECT name FROM users WHERE id = $1', [id]);
          value = rows[0]?.name ?? 'missing';
          await redis.set(`${ns}user:${id}`, value);
        }
        seen.push({ at, id, value });
      }
    } finally {
      redis.disconnect();
      await replica.end();
    }
    return seen;
  }

  async function scenario(waitForReplica: boolean) {
    const n = 20;
    const url = await usersDb(n);
    await pair.catchUp();
    const ns = redisNamespace().replace(/:$/, '');
    await pair.setApplyDelay('1s');
    const dir = migrationFolder({ '20250101000000_rename.ts': renameAll });
    let doneAt: number | undefined;
    let stopAt = Number.POSITIVE_INFINITY;
    const reading = readLoop(url, `${ns}:`, n, () => performance.now() > stopAt);
    try {
      const r = runner(url, dir, {
        keyPrefix: ns,
        cache: cacheOf(redisUrl()),
        replicas: waitForReplica ? replicaOf(dbName(url)) : [],
        replicaWaitMs: 20_000,
      });
      const result = await r.up();
      doneAt = performance.now();
      stopAt = doneAt + 1500;
      const seen = await reading;
      return { result, seen, doneAt };
    } finally {
      stopAt = 0;
      await reading.catch(() => {});
      await pair.setApplyDelay('0');
    }
  }

  it('never sees the old row once dbops reports the invalidation done (after the replica replayed the commit)', async () => {
    const { result, seen, doneAt } = await scenario(true);
    const inv = result.outcomes[0]?.invalidation;
    expect(inv).toMatchObject({ done: true, keys: 20, keysRemoved: expect.any(Number) });
    // It waited for the replica's replay: about the apply delay.
    expect(inv?.replicaWaitMs).toBeGreaterThan(500);
    expect(inv?.replicas.map((r) => r.caughtUp)).toEqual([true]);
    const after = seen.filter((s) => s.at > doneAt);
    expect(after.length).toBeGreaterThan(50);
    expect(after.filter((s) => s.value !== 'new')).toEqual([]);
    // Before the commit was replayed the reader did see the old rows (the replica lagged for real).
    expect(seen.some((s) => s.value === 'old')).toBe(true);
  });

  it('without the replica wait the same reader serves old rows after the invalidation (the property above can fail)', async () => {
    const { seen, doneAt } = await scenario(false);
    const stale = seen.filter((s) => s.at > doneAt && s.value === 'old');
    expect(stale.length).toBeGreaterThan(0);
  });

  it('a replica that does not catch up in time: exit 6, the data stays committed and recorded, the outbox keeps the keys; drain finishes later', async () => {
    const url = await usersDb(5);
    await pair.catchUp();
    const ns = redisNamespace().replace(/:$/, '');
    const redis = new Redis(redisUrl());
    closers.push(async () => redis.disconnect());
    for (let id = 1; id <= 5; id++) await redis.set(`${ns}:user:${id}`, 'old');
    await pair.setApplyDelay('3s');
    try {
      const dir = migrationFolder({ '20250101000000_rename.ts': renameAll });
      const opts = { keyPrefix: ns, cache: cacheOf(redisUrl()), replicas: replicaOf(dbName(url)), replicaWaitMs: 300 };
      const error = await runner(url, dir, opts)
        .up()
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(error).toMatchObject({ exitCode: ExitCode.Owed, code: 'INVALIDATION_OWED' });
      expect((error as Error).message).toMatch(/did not replay the commit/);
      expect((error as Error).message).toContain(`127.0.0.1:${pair.replicaPort}`);
      // Committed and recorded; keys untouched; one row owed.
      await withClient(url, async (c) => {
        expect((await c.query(`SELECT count(*)::int AS n FROM users WHERE name = 'new'`)).rows[0].n).toBe(5);
        expect((await c.query('SELECT name FROM dbops.data_migrations')).rows.map((r) => r.name)).toEqual([
          '20250101000000_rename',
        ]);
      });
      expect(await redis.exists(...[1, 2, 3, 4, 5].map((id) => `${ns}:user:${id}`))).toBe(5);
      expect((await outboxRows(url)).map((r) => r.done)).toEqual([false]);
      const status = await runner(url, dir, opts).status();
      expect(status.invalidations.owed).toMatchObject([{ migration: '20250101000000_rename', keys: 5, attempts: 1 }]);
      expect(status.invalidations.owed[0]?.lastError).toMatch(/did not replay/);
      // Later, with a bound long enough: drained exactly once.
      const drained = await runner(url, dir, { ...opts, replicaWaitMs: 20_000 }).drain();
      expect(drained).toMatchObject({ rows: 1, keys: 5, keysRemoved: 5 });
      expect(drained.replicaWait?.caughtUp).toBe(true);
      expect(await redis.exists(...[1, 2, 3, 4, 5].map((id) => `${ns}:user:${id}`))).toBe(0);
      expect((await outboxRows(url)).map((r) => r.done)).toEqual([true]);
      const after = await runner(url, dir, opts).status();
      expect(after.invalidations.owed).toEqual([]);
      expect(after.invalidations.done[0]).toMatchObject({ keys: 5, keysRemoved: 5 });
      expect(after.invalidations.done[0]?.replicaWaitMs).toBeGreaterThan(0);
    } finally {
      await pair.setApplyDelay('0');
    }
  });
});

describe('outbox semantics on the shared Redis', () => {
  it('a rolled-back migration invalidates nothing: keys stay, no outbox row', async () => {
    const url = await usersDb(10);
    const ns = redisNamespace().replace(/:$/, '');
    const redis = new Redis(redisUrl());
    closers.push(async () => redis.disconnect());
    for (let id = 1; id <= 10; id++) await redis.set(`${ns}:user:${id}`, 'old');
    const dir = migrationFolder({
      '20250101000000_fails.ts': mig(`{
        invalidates: ['user:*'],
        async up({ sql, invalidate }) {
          const { rows } = await sql\`UPDATE users SET name = 'new' RETURNING id\`;
          invalidate('user:{id}', rows);
        },
        async validate() { return false; },
      }`),
    });
    const error = await runner(url, dir, { keyPrefix: ns, cache: cacheOf(redisUrl()) })
      .up()
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toMatchObject({ exitCode: ExitCode.Failed });
    expect(await redis.exists(...Array.from({ length: 10 }, (_, i) => `${ns}:user:${i + 1}`))).toBe(10);
    expect(await outboxRows(url)).toEqual([]);
    await withClient(url, async (c) => {
      expect((await c.query(`SELECT count(*)::int AS n FROM users WHERE name = 'old'`)).rows[0].n).toBe(10);
    });
  });

  it('CACHE_KEY_PREFIX, precise keys and a pattern: exactly the owed keys go, others stay; down invalidates the same way', async () => {
    const url = await usersDb(50);
    const ns = redisNamespace().replace(/:$/, '');
    const redis = new Redis(redisUrl());
    closers.push(async () => redis.disconnect());
    for (let id = 1; id <= 50; id++) await redis.set(`${ns}:user:${id}`, 'old');
    await redis.set(`${ns}:stats:users`, '50');
    await redis.set(`${ns}:list:a`, 'x');
    await redis.set(`${ns}:list:b`, 'x');
    await redis.set(`${ns}:product:1`, 'keep');
    await redis.set(`user:1`, 'outside the prefix');
    closers.push(() => redis.del('user:1'));
    const dir = migrationFolder({
      '20250101000000_some.ts': mig(`{
        invalidates: ['list:*'],
        async up({ sql, invalidate }) {
          const { rows } = await sql\`UPDATE users SET name = 'new' WHERE id <= 30 RETURNING id\`;
          invalidate('user:{id}', rows);
          invalidate(['stats:users']);
        },
        async down({ sql, invalidate }) {
          const { rows } = await sql\`UPDATE users SET name = 'old' WHERE id <= 30 RETURNING id\`;
          invalidate('user:{id}', rows.map((r) => r.id));
        },
      }`),
    });
    const opts = { keyPrefix: ns, cache: cacheOf(redisUrl()) };
    const dry = await runner(url, dir, opts).up({ dryRun: true });
    expect(dry.outcomes[0]?.invalidation).toMatchObject({ keys: 31, matching: [{ pattern: `${ns}:list:*`, keys: 2 }] });
    expect(await redis.exists(`${ns}:list:a`, `${ns}:user:1`)).toBe(2);

    const result = await runner(url, dir, opts).up();
    expect(result.outcomes[0]?.invalidation).toMatchObject({
      done: true,
      keys: 31,
      keysRemoved: 33,
      patterns: [`${ns}:list:*`],
    });
    const left = new Set(await redis.keys(`${ns}:*`));
    for (let id = 1; id <= 30; id++) expect(left.has(`${ns}:user:${id}`)).toBe(false);
    for (let id = 31; id <= 50; id++) expect(left.has(`${ns}:user:${id}`)).toBe(true);
    expect([...left].filter((k) => !k.includes(':user:')).sort()).toEqual([`${ns}:product:1`]);
    expect(await redis.get('user:1')).toBe('outside the prefix');

    for (let id = 1; id <= 30; id++) await redis.set(`${ns}:user:${id}`, 'new');
    const down = await runner(url, dir, opts).down();
    expect(down.outcomes[0]?.invalidation).toMatchObject({ done: true, keys: 30, keysRemoved: 30 });
    expect(await redis.exists(...Array.from({ length: 30 }, (_, i) => `${ns}:user:${i + 1}`))).toBe(0);
    expect((await outboxRows(url)).map((r) => r.done)).toEqual([true, true]);
  });

  it('a backfill invalidates each batch after that batch commits', async () => {
    const url = await usersDb(250);
    const ns = redisNamespace().replace(/:$/, '');
    const redis = new Redis(redisUrl());
    closers.push(async () => redis.disconnect());
    for (let id = 1; id <= 250; id++) await redis.set(`${ns}:user:${id}`, 'old');
    const dir = migrationFolder({
      '20250101000000_backfill.ts': mig(`{
        transaction: false,
        async up({ backfill }) {
          await backfill({ table: 'users', set: "name = 'new'", where: "name = 'old'", batchSize: 100, invalidate: 'user:{id}' });
        },
      }`),
    });
    const result = await runner(
      url,
      dir,
      { keyPrefix: ns, cache: cacheOf(redisUrl()) },
      { backfill: { batchSize: 100, targetBatchMs: 60_000 } },
    ).up();
    const rows = await outboxRows(url);
    // One outbox row per batch (the batch size adapts: at least two batches of at most 250 rows), each done.
    expect(rows.length).toBeGreaterThanOrEqual(2);
    expect(rows.every((r) => r.done)).toBe(true);
    expect(rows.reduce((a, r) => a + r.keys, 0)).toBe(250);
    expect(result.outcomes[0]?.invalidation).toMatchObject({
      done: true,
      keys: 250,
      keysRemoved: 250,
      outboxRows: rows.length,
    });
    expect(await redis.keys(`${ns}:user:*`)).toEqual([]);
  });
});

describe('the example migration data-migrations/20240401000000_normalize_user_emails', () => {
  it('from an empty database with the example schema: lower-cases e-mails and invalidates exactly the changed users; down the same', async () => {
    const db = await createTestDatabase();
    closers.push(() => db.drop());
    await withClient(db.url, (c) =>
      c.query(
        `INSERT INTO "User" (id, email, "updatedAt") VALUES ('u1', 'Ann@X.io', now()), ('u2', 'bob@x.io', now()), ('u3', 'CAT@x.io', now()), ('u4', 'cat@x.io', now())`,
      ),
    );
    const ns = redisNamespace().replace(/:$/, '');
    const redis = new Redis(redisUrl());
    closers.push(async () => redis.disconnect());
    for (const id of ['u1', 'u2', 'u3', 'u4']) await redis.set(`${ns}:user:${id}`, 'cached');
    const root = join(import.meta.dirname, '..', '..');
    const example = join(root, 'data-migrations');
    const r = new MigrationRunner({
      connectionString: db.url,
      migrationsDir: example,
      prismaMigrationsDir: join(root, 'prisma', 'migrations'),
      cwd: root,
      invalidation: { keyPrefix: ns, cache: cacheOf(redisUrl()) },
    });
    closers.push(() => r.close());
    const result = await r.up();
    const outcome = result.outcomes.find((o) => o.name === '20240401000000_normalize_user_emails');
    expect(outcome).toMatchObject({
      status: 'applied',
      validate: true,
      invalidation: { done: true, keys: 1, keysRemoved: 1 },
    });
    // Only Ann changed: CAT@x.io has a lower-case twin (left alone), bob was lower-case already.
    expect(
      await withClient(db.url, async (c) => (await c.query('SELECT id, email FROM "User" ORDER BY id')).rows),
    ).toEqual([
      { id: 'u1', email: 'ann@x.io' },
      { id: 'u2', email: 'bob@x.io' },
      { id: 'u3', email: 'CAT@x.io' },
      { id: 'u4', email: 'cat@x.io' },
    ]);
    expect(await redis.exists(`${ns}:user:u1`)).toBe(0);
    expect(await redis.exists(`${ns}:user:u2`, `${ns}:user:u3`, `${ns}:user:u4`)).toBe(3);
    await redis.set(`${ns}:user:u1`, 'cached');
    const down = await r.down({ step: 1 });
    expect(down.outcomes[0]).toMatchObject({
      name: '20240401000000_normalize_user_emails',
      invalidation: { done: true, keys: 1, keysRemoved: 1 },
    });
    expect(
      await withClient(db.url, async (c) => (await c.query(`SELECT email FROM "User" WHERE id = 'u1'`)).rows[0].email),
    ).toBe('Ann@X.io');
    expect(await redis.exists(`${ns}:user:u1`)).toBe(0);
  });
});

describe('concurrent drainers', () => {
  it('two cache drains at once: every owed row carried out exactly once (SKIP LOCKED), every key removed', async () => {
    const url = await usersDb(600);
    const ns = redisNamespace().replace(/:$/, '');
    const redis = new Redis(redisUrl());
    closers.push(async () => redis.disconnect());
    for (let id = 1; id <= 600; id++) await redis.set(`${ns}:user:${id}`, 'old');
    // A run without Redis configured: the migration commits, its 100 keys stay owed (exit 6).
    const dir = migrationFolder({
      '20250101000000_part.ts': mig(`{
      async up({ sql, invalidate }) {
        const { rows } = await sql\`UPDATE users SET name = 'new' WHERE id <= 100 RETURNING id\`;
        invalidate('user:{id}', rows);
      },
    }`),
    });
    const error = await runner(url, dir, { keyPrefix: ns })
      .up()
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toMatchObject({ exitCode: ExitCode.Owed, message: expect.stringMatching(/no Redis is configured/) });
    // Five more owed rows of 100 keys each, as five more committed migrations would leave them.
    for (let i = 1; i < 6; i++) {
      await withClient(url, async (c) => {
        await c.query('BEGIN');
        const owed = new Owed(ns);
        owed.invalidate()(
          'user:{id}',
          Array.from({ length: 100 }, (_, k) => i * 100 + k + 1),
        );
        await recordOwed(c, 'dbops', owed, { migration: `20250101000000_part_${i}`, direction: 'up' });
        await c.query('COMMIT');
      });
    }
    await withClient(url, (c) => c.query('UPDATE dbops.cache_invalidations SET attempts = 0'));
    const opts = { keyPrefix: ns, cache: cacheOf(redisUrl()) };
    const [a, b] = await Promise.all([runner(url, dir, opts).drain(), runner(url, dir, opts).drain()]);
    expect(a.rows + b.rows).toBe(6);
    expect(a.keysRemoved + b.keysRemoved).toBe(600);
    expect(new Set([...a.entries, ...b.entries].map((e) => e.id)).size).toBe(6);
    expect(await redis.keys(`${ns}:user:*`)).toEqual([]);
    const rows = await withClient(
      url,
      async (c) => (await c.query('SELECT attempts, keys_removed::int AS removed FROM dbops.cache_invalidations')).rows,
    );
    expect(rows).toEqual(Array.from({ length: 6 }, () => ({ attempts: 1, removed: 100 })));
  });
});

describe('Redis Cluster', () => {
  it('removes precise keys spread over every primary, and a pattern', async () => {
    const url = await usersDb(300);
    const ns = redisNamespace().replace(/:$/, '');
    const seed = `redis://127.0.0.1:${services().cluster.ports[0]}`;
    const cluster = new Cluster(services().cluster.ports.map((port) => ({ host: '127.0.0.1', port })));
    closers.push(async () => cluster.disconnect());
    for (let id = 1; id <= 300; id++) await cluster.set(`${ns}:user:${id}`, 'old');
    await cluster.set(`${ns}:feed:{u}:1`, 'x');
    await cluster.set(`${ns}:feed:{u}:2`, 'x');
    const dir = migrationFolder({
      '20250101000000_rename.ts': mig(`{
        invalidates: ['feed:*'],
        async up({ sql, invalidate }) {
          const { rows } = await sql\`UPDATE users SET name = 'new' WHERE id <= 200 RETURNING id\`;
          invalidate('user:{id}', rows);
        },
      }`),
    });
    const result = await runner(url, dir, { keyPrefix: ns, cache: cacheOf(seed) }).up();
    expect(result.outcomes[0]?.invalidation).toMatchObject({ done: true, keys: 200, keysRemoved: 202 });
    for (let id = 1; id <= 300; id++) expect(await cluster.exists(`${ns}:user:${id}`)).toBe(id <= 200 ? 0 : 1);
    expect(await cluster.exists(`${ns}:feed:{u}:1`)).toBe(0);
    for (let id = 201; id <= 300; id++) await cluster.del(`${ns}:user:${id}`);
  });
});

describe('Redis stopped after the commit', () => {
  /** A redis-server of our own with an append-only file, so a restart on the same port keeps the (stale) keys. */
  const ownRedis = (port: number, dir: string) =>
    startRedis(['--appendonly', 'yes', '--appendfsync', 'always'], { port, dir });

  it('a backfill whose second batch commits while Redis is down: exit 6, that batch stays owed; the rerun drains it, then resumes', async () => {
    const url = await usersDb(300);
    const port = await freePort();
    const dir = scratchDir('redis-backfill');
    closers.push(async () => rmSync(dir, { recursive: true, force: true }));
    let server = await ownRedis(port, dir);
    closers.push(() => server.stop());
    const rurl = `redis://127.0.0.1:${port}/0`;
    const redis = new Redis(rurl, { maxRetriesPerRequest: 1 });
    for (let id = 1; id <= 300; id++) await redis.set(`user:${id}`, 'old');
    redis.disconnect();
    const marker = join(dir, 'stopped');
    // The second batch stops the real server (once) before it writes: its commit finds Redis gone.
    const migDir = migrationFolder({
      '20250101000000_backfill.ts': mig(`{
        transaction: false,
        async up({ backfill }) {
          await backfill({
            table: 'users',
            where: "name = 'old'",
            batchSize: 100,
            invalidate: 'user:{id}',
            async run(keys, tx) {
              const fs = await import('node:fs');
              if (Number(keys[0]) > 1 && !fs.existsSync(${JSON.stringify(marker)})) {
                fs.writeFileSync(${JSON.stringify(marker)}, '');
                (await import('node:child_process')).execFileSync('redis-cli', ['-p', '${port}', 'shutdown', 'nosave']);
              }
              await tx.query("UPDATE users SET name = 'new' WHERE id = ANY($1)", [keys]);
            },
          });
        },
      }`),
    });
    const opts = { backfill: { batchSize: 100 } };
    const error = await runner(url, migDir, { cache: cacheOf(rurl) }, opts)
      .up()
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toMatchObject({ exitCode: ExitCode.Owed, code: 'INVALIDATION_OWED' });
    const first = await outboxRows(url);
    expect(first.map((r) => r.done)).toEqual([true, false]);
    const [firstBatch, secondBatch] = first.map((r) => r.keys);

    server = await ownRedis(port, dir);
    const back = new Redis(rurl);
    closers.push(async () => back.disconnect());
    // The first batch's keys went before Redis stopped; the second's are still cached (stale).
    expect(await back.exists(...Array.from({ length: firstBatch ?? 0 }, (_, i) => `user:${i + 1}`))).toBe(0);
    expect(
      await back.exists(...Array.from({ length: secondBatch ?? 0 }, (_, i) => `user:${(firstBatch ?? 0) + i + 1}`)),
    ).toBe(secondBatch);
    const result = await runner(url, migDir, { cache: cacheOf(rurl) }, opts).up();
    expect(result.outcomes[0]).toMatchObject({ status: 'applied' });
    expect(await back.keys('user:*')).toEqual([]);
    const rows = await outboxRows(url);
    expect(rows.every((r) => r.done)).toBe(true);
    expect(rows.reduce((a, r) => a + r.keys, 0)).toBe(300);
  });

  it('the outbox keeps what is owed (exit 6); the next migrate up drains it first, exactly those keys', async () => {
    const url = await usersDb(40);
    const port = await freePort();
    const dir = scratchDir('redis-restart');
    closers.push(async () => rmSync(dir, { recursive: true, force: true }));
    let server = await ownRedis(port, dir);
    closers.push(() => server.stop());
    const rurl = `redis://127.0.0.1:${port}/0`;
    const redis = new Redis(rurl, { maxRetriesPerRequest: 1 });
    for (let id = 1; id <= 40; id++) await redis.set(`user:${id}`, 'old');
    redis.disconnect();
    const migDir = migrationFolder({ '20250101000000_rename.ts': renameAll });
    // The hook between the commit and the invalidation stops the server: Redis is down when the drain starts.
    const first = runner(
      url,
      migDir,
      { cache: cacheOf(rurl), beforeDrain: () => server.stop() },
      { connectTimeoutMs: 2000 },
    );
    const error = await first.up().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ exitCode: ExitCode.Owed });
    expect((error as Error).message).toMatch(/still owed/);
    expect((await outboxRows(url)).map((r) => [r.done, r.keys])).toEqual([[false, 40]]);

    server = await ownRedis(port, dir);
    const back = new Redis(rurl);
    closers.push(async () => back.disconnect());
    // The restarted server still has the stale keys, and one that is not owed.
    expect(await back.exists(...Array.from({ length: 40 }, (_, i) => `user:${i + 1}`))).toBe(40);
    await back.set('user:41', 'not owed');
    const next = migrationFolder({
      '20250101000000_rename.ts': renameAll,
      '20250102000000_nothing.ts': mig(`{ async up() {} }`),
    });
    const result = await runner(url, next, { cache: cacheOf(rurl) }).up();
    expect(result.outcomes.map((o) => o.name)).toEqual(['20250102000000_nothing']);
    expect(await back.exists(...Array.from({ length: 40 }, (_, i) => `user:${i + 1}`))).toBe(0);
    expect(await back.get('user:41')).toBe('not owed');
    expect((await outboxRows(url)).map((r) => r.done)).toEqual([true]);
  });

  it('--defer-invalidation: a deploy that cannot wait for Redis applies everything, leaves earlier and new invalidations owed; cache drain does them', async () => {
    const url = await usersDb(20);
    const port = await freePort();
    const dir = scratchDir('redis-defer');
    closers.push(async () => rmSync(dir, { recursive: true, force: true }));
    let server = await ownRedis(port, dir);
    closers.push(() => server.stop());
    const rurl = `redis://127.0.0.1:${port}/0`;
    const seed = new Redis(rurl, { maxRetriesPerRequest: 1 });
    for (let id = 1; id <= 20; id++) await seed.set(`user:${id}`, 'old');
    seed.disconnect();
    // A first run leaves an invalidation owed: Redis stops between its commit and the drain.
    const first = migrationFolder({ '20250101000000_rename.ts': renameAll });
    const owed = await runner(
      url,
      first,
      { cache: cacheOf(rurl), beforeDrain: () => server.stop() },
      { connectTimeoutMs: 2000 },
    )
      .up()
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(owed).toMatchObject({ exitCode: ExitCode.Owed });
    // Redis still down: without the flag the next deploy stops on what is owed; with it, it applies.
    const next = migrationFolder({
      '20250101000000_rename.ts': renameAll,
      '20250102000000_touch.ts': mig(`{
        async up({ sql, invalidate }) {
          const { rows } = await sql\`UPDATE users SET name = 'newer' WHERE id <= 5 RETURNING id\`;
          invalidate('user:{id}', rows);
        },
      }`),
    });
    const env = { DATABASE_URL: url, REDIS_URL: rurl, DBOPS_MIGRATIONS_DIR: next, CI: 'true' };
    const blocked = await runDbops(['migrate', 'up', '--timeout', '2s'], { env, cwd: dir });
    expect(blocked.code).toBe(ExitCode.Owed);
    const deferred = await runDbops(['migrate', 'up', '--defer-invalidation', '--timeout', '2s'], { env, cwd: dir });
    expect(deferred.code, deferred.stderr).toBe(0);
    expect(deferred.stdout + deferred.stderr).toMatch(
      /20250102000000_touch: cache invalidation still owed \(5 key\(s\)/,
    );
    expect((await outboxRows(url)).map((r) => [r.done, r.keys])).toEqual([
      [false, 20],
      [false, 5],
    ]);
    await withClient(url, async (c) => {
      expect((await c.query(`SELECT count(*)::int AS n FROM users WHERE name = 'newer'`)).rows[0].n).toBe(5);
    });
    // Redis back: the drain carries out exactly what was owed.
    server = await ownRedis(port, dir);
    const back = new Redis(rurl);
    closers.push(async () => back.disconnect());
    await back.set('user:21', 'not owed');
    const drained = await runDbops(['cache', 'drain'], { env, cwd: dir });
    expect(drained.code, drained.stderr).toBe(0);
    expect(await back.exists(...Array.from({ length: 20 }, (_, i) => `user:${i + 1}`))).toBe(0);
    expect(await back.get('user:21')).toBe('not owed');
    expect((await outboxRows(url)).map((r) => r.done)).toEqual([true, true]);
  });
});

describe('replicas in pool and doctor', () => {
  it('reachable, replay lag in bytes and time, the slot as the primary sees it, connections and headroom; a lagging replica is critical (exit 3)', async () => {
    const url = await usersDb(1);
    await pair.catchUp();
    const target = replicaOf(dbName(url))[0] as NonNullable<InvalidationOptions['replicas']>[number];
    const caughtUp = await withClient(url, (c) => collectReplicas(c, [target]));
    expect(caughtUp.replicas[0]).toMatchObject({
      reachable: true,
      inRecovery: true,
      lagBytes: 0,
      lagMs: 0,
      slotName: 'dbops_test_replica',
    });
    expect(caughtUp.replicas[0]?.sender).toMatchObject({
      state: 'streaming',
      slot: { name: 'dbops_test_replica', active: true },
    });
    expect(caughtUp.replicas[0]?.headroom).toBeGreaterThan(0);
    expect(caughtUp.findings).toEqual([]);

    await pair.setApplyDelay('5s');
    try {
      await withClient(url, (c) => c.query(`UPDATE users SET name = 'lagging'`));
      // Wait until the replica has received the change but not replayed it.
      let lagging = await withClient(url, (c) => collectReplicas(c, [target], { lagWarnMs: 100, lagCriticalMs: 200 }));
      for (let i = 0; i < 100 && !(lagging.replicas[0]?.lagMs && lagging.replicas[0].lagMs > 200); i++) {
        await new Promise((r) => setTimeout(r, 50));
        lagging = await withClient(url, (c) => collectReplicas(c, [target], { lagWarnMs: 100, lagCriticalMs: 200 }));
      }
      expect(lagging.replicas[0]?.lagBytes).toBeGreaterThan(0);
      expect(lagging.findings.map((f) => [f.code, f.severity])).toEqual([['replica-lag', 'critical']]);

      const env = {
        PATH: process.env.PATH ?? '',
        NO_COLOR: '1',
        DATABASE_URL: url,
        DATABASE_REPLICA_URLS: pair.replicaUrl(dbName(url)),
      };
      const pool = await runDbops(['pool', '--replica-lag-warn', '100ms', '--replica-lag-critical', '200ms'], { env });
      expect(pool.code, pool.stderr).toBe(3);
      expect(pool.stdout).toContain('Read replicas (1)');
      expect(pool.stdout).toContain('dbops_test_replica active');
      expect(pool.stdout).toMatch(/CRITICAL replica 127\.0\.0\.1:\d+\/\w+ replays [\d.]+ s behind the primary/);
      const json = await runDbops(['pool', '--json'], { env });
      expect(json.code, json.stderr).toBe(0);
      expect(JSON.parse(json.stdout).replicas.replicas[0]).toMatchObject({ reachable: true, inRecovery: true });
      const doctor = await runDbops(['doctor'], { env });
      expect(doctor.code, doctor.stderr).toBe(0);
      expect(doctor.stdout).toMatch(/replica 127\.0\.0\.1:\d+\/\w+: standby, replay lag/);
    } finally {
      await pair.setApplyDelay('0');
    }
  });
});
