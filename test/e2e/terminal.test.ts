/**
 * dbops at a real terminal (a pseudo-terminal of 100x30): keys typed, Ctrl-C as the `\x03` byte
 * the terminal turns into SIGINT (never `kill`), and the screen read through a terminal emulator.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, startDbops } from '../helpers/cli.js';
import { counterHistogram } from '../helpers/counters.js';
import { AUDIT_DDL, auditMig } from '../helpers/migrations.js';
import { openTerminal, type TerminalSession } from '../helpers/pty.js';
import { countMatching, fillKeys } from '../helpers/redis-keys.js';
import { createTestDatabase, redisNamespace, redisUrl, type TestDatabase } from '../helpers/services.js';

const CTRL_C = '\x03';
const sessions: TerminalSession[] = [];
const dirs: string[] = [];

function open(args: string[], env: Record<string, string>): TerminalSession {
  const t = openTerminal(args, { env });
  sessions.push(t);
  return t;
}

function migrationsDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'dbops-tty-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

afterAll(() => {
  for (const s of sessions) s.kill();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('cache at a terminal', () => {
  let client: Redis;
  const env = () => cleanEnv({ REDIS_URL: redisUrl() });
  beforeAll(() => {
    client = new Redis(redisUrl());
  });
  afterAll(() => client.disconnect());

  it('Ctrl-C during a confirmed flush stops it: a bar with the total and thousands separators, keys left, exit 130, the terminal not raw', async () => {
    const ns = redisNamespace();
    await fillKeys(client, ns, 12_000);
    // The preview scan and the flush both pace at --pause-ms: 12 SCANs of 1,000 keys each way.
    const t = openTerminal(['cache', 'flush', `${ns}user:*`, '--count', '1000', '--pause-ms', '200'], {
      env: env(),
      sttyAfter: true,
    });
    sessions.push(t);
    await t.waitFor(/\[y\/N\]/, 'the prompt');
    t.type('y\r');
    // The bar of the known total, with separators, on screen while it runs.
    const running = await t.waitFor(/flushing\s+\[[█░]+\]\s+\d+\.\d%\s+[\d,]+\/12,000 keys/, 'the flush bar');
    expect(running).toMatch(/ETA /);
    // The terminal still turns Ctrl-C into SIGINT while the bar is drawn (ora's discardStdin made it raw).
    expect(t.stty()).toMatch(/(^|\s)isig(\s|$)/m);
    t.type(CTRL_C);
    const code = await t.exited;
    expect(code).toBe(130);
    const left = await countMatching(client, `${ns}user:*`);
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThan(12_000);
    const screen = t.transcript();
    expect(screen).toMatch(/SIGINT received: stopping after the current step/);
    expect(screen).toMatch(/interrupted after the current batch: [\d,]+ keys removed so far/);
    expect(screen).not.toMatch(/this is a bug/);
    // The cursor ora hid is shown again.
    expect(t.raw().lastIndexOf('\x1b[?25h')).toBeGreaterThan(t.raw().lastIndexOf('\x1b[?25l'));
    // The shell gets its terminal back as it gave it: signals, line editing and echo on.
    const stty = /--- stty\n([\s\S]*?)\n--- end/.exec(screen)?.[1] ?? '';
    expect(stty).toMatch(/rows 30; columns 100/);
    for (const flag of ['isig', 'icanon', 'echo']) expect(stty).toMatch(new RegExp(`(^|\\s)${flag}(\\s|$)`, 'm'));
    // Run again: it finishes what is left.
    const again = open(['cache', 'flush', `${ns}user:*`, '--yes'], env());
    expect(await again.exited).toBe(0);
    expect(await countMatching(client, `${ns}user:*`)).toBe(0);
  });

  it('Ctrl-C at the [y/N] prompt cancels: exit 130, nothing deleted, no "bug" message', async () => {
    const ns = redisNamespace();
    await fillKeys(client, ns, 50);
    const t = open(['cache', 'flush', `${ns}user:*`], env());
    await t.waitFor(/\[y\/N\]/, 'the prompt');
    t.type(CTRL_C);
    expect(await t.exited).toBe(130);
    const screen = t.transcript();
    expect(screen).toMatch(/cancelled at the prompt \(Ctrl-C\): nothing was changed/);
    expect(screen).not.toMatch(/unexpected error|this is a bug/);
    expect(await countMatching(client, `${ns}user:*`)).toBe(50);
  });

  it('n at the prompt deletes nothing (exit 2); y deletes', async () => {
    const ns = redisNamespace();
    await fillKeys(client, ns, 30);
    const no = open(['cache', 'flush', `${ns}user:*`], env());
    await no.waitFor(/\[y\/N\]/, 'the prompt');
    no.type('n\r');
    expect(await no.exited).toBe(2);
    expect(await countMatching(client, `${ns}user:*`)).toBe(30);
    const yes = open(['cache', 'flush', `${ns}user:*`], env());
    await yes.waitFor(/\[y\/N\]/, 'the prompt');
    yes.type('y\r');
    expect(await yes.exited).toBe(0);
    expect(await countMatching(client, `${ns}user:*`)).toBe(0);
  });

  it('a second Ctrl-C while stopping ends at once (exit 130)', async () => {
    const ns = redisNamespace();
    await fillKeys(client, ns, 20_000);
    // A long pause between batches: the first Ctrl-C waits for the batch, the second does not.
    const t = open(['cache', 'flush', `${ns}user:*`, '--yes', '--count', '100', '--pause-ms', '100'], env());
    await t.waitFor(/flushing\s+[\d,]+ matched/, 'the flush line');
    t.type(CTRL_C);
    await t.waitFor(/SIGINT received/, 'the first Ctrl-C noticed');
    t.type(CTRL_C);
    expect(await t.exited).toBe(130);
    expect(await countMatching(client, `${ns}user:*`)).toBeGreaterThan(0);
    // The spinner's hidden cursor is shown again before the process ends.
    expect(t.raw().lastIndexOf('\x1b[?25h')).toBeGreaterThan(t.raw().lastIndexOf('\x1b[?25l'));
  });
});

const COUNTER = (table: string) => `
export default {
  description: 'count every row once',
  transaction: false,
  async up(ctx) {
    await ctx.backfill({ table: '${table}', set: 'counter = counter + 1' });
  },
  async validate(ctx) {
    const r = await ctx.sql.query('SELECT count(*)::int AS n FROM ${table} WHERE counter <> 1');
    return r.rows[0].n === 0;
  },
  async down(ctx) {
    await ctx.sql.query('UPDATE ${table} SET counter = 0');
  },
};
`;

describe('migrations at a terminal', () => {
  let db: TestDatabase;
  let client: pg.Client;
  beforeAll(async () => {
    db = await createTestDatabase();
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query(AUDIT_DDL);
  });
  afterAll(async () => {
    await client?.end();
    await db?.drop();
  });
  const env = (dir: string) =>
    cleanEnv({
      DATABASE_URL: db.url,
      DBOPS_MIGRATIONS_DIR: dir,
      DBOPS_PRISMA_MIGRATIONS_DIR: join(dir, 'none'),
      USER: 'tty',
    });
  const count = (re: RegExp, text: string) => (text.match(new RegExp(re.source, 'g')) ?? []).length;

  it('pool --watch draws in place on the alternate screen, fits 100x30 with the headline and headroom, marks what changed, and gives the screen back at Ctrl-C', async () => {
    const t = open(['pool', '--watch', '1'], cleanEnv({ DATABASE_URL: db.url }));
    const first = await t.waitFor(/headroom/, 'the first frame');
    expect(t.alternate()).toBe(true);
    expect(first).toMatch(/^dbops pool .* every 1 s/);
    expect(first).toMatch(/PostgreSQL \d+/);
    // More connections: the pool line changes, and the next frame marks it.
    const extra = new pg.Client({ connectionString: db.url, application_name: 'tty-extra' });
    await extra.connect();
    try {
      const marked = await t.waitFor(/▌ pool .*idle [1-9]/, 'the changed pool line marked');
      const rows = marked.split('\n');
      expect(rows.length).toBe(30);
      expect(rows.some((r) => r.startsWith('▌ headroom') || r.startsWith('  headroom'))).toBe(true);
      expect(t.wrappedRows()).toBe(0);
      expect(rows.every((r) => Array.from(r).length <= 100)).toBe(true);
    } finally {
      await extra.end();
    }
    t.type(CTRL_C);
    expect(await t.exited).toBe(0);
    // The person's screen is back: no frame left on it, the cursor shown.
    expect(t.alternate()).toBe(false);
    expect(t.screen().join('\n')).not.toMatch(/headroom/);
    expect(t.raw().lastIndexOf('\x1b[?25h')).toBeGreaterThan(t.raw().lastIndexOf('\x1b[?25l'));
  });

  it('migrate up of two fast migrations leaves each name on screen once, with one mark; down asks first (Ctrl-C, then y)', async () => {
    const a = '20240101000000_fast_a';
    const b = '20240101000001_fast_b';
    const dir = migrationsDir({ [`${a}.js`]: auditMig(a), [`${b}.js`]: auditMig(b) });
    const up = open(['migrate', 'up'], env(dir));
    expect(await up.exited).toBe(0);
    const screen = up.transcript();
    for (const name of [a, b]) {
      expect(count(new RegExp(`✔ applied ${name} `), screen), screen).toBe(1);
      expect(screen).not.toMatch(new RegExp(`applying ${name}`));
    }
    expect(screen).not.toMatch(/✔\s+✔/);
    expect(screen).toMatch(/2 applied \(/);

    // down asks at a terminal, naming what it reverts; Ctrl-C cancels (exit 130, nothing reverted).
    const cancelled = open(['migrate', 'down', '--step', '2'], env(dir));
    const prompt = await cancelled.waitFor(/\[y\/N\]/, 'the down prompt');
    expect(prompt.replace(/\n/g, '')).toContain(`revert 2 migration(s), newest first: ${b}, ${a}?`);
    cancelled.type(CTRL_C);
    expect(await cancelled.exited).toBe(130);
    expect(cancelled.transcript()).not.toMatch(/this is a bug/);
    expect((await client.query('SELECT count(*)::int AS n FROM audit')).rows[0].n).toBe(2);

    const down = open(['migrate', 'down', '--step', '2'], env(dir));
    await down.waitFor(/\[y\/N\]/, 'the down prompt');
    down.type('y\r');
    expect(await down.exited).toBe(0);
    const reverted = down.transcript();
    for (const name of [a, b]) expect(count(new RegExp(`✔ reverted ${name} `), reverted), reverted).toBe(1);
    expect(reverted).toMatch(/2 reverted \(/);
    expect((await client.query('SELECT count(*)::int AS n FROM audit')).rows[0].n).toBe(0);
  });

  it('Ctrl-C during a long backfill: the bar with thousands separators, exit 130, resumable; the rerun finishes, every row changed once', async () => {
    await client.query('CREATE TABLE tty_bf (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0)');
    await client.query('INSERT INTO tty_bf (id) SELECT g FROM generate_series(1, 60000) g');
    await client.query('ANALYZE tty_bf');
    const name = '20240201000000_count_rows';
    const dir = migrationsDir({ [`${name}.js`]: COUNTER('tty_bf') });
    const args = ['migrate', 'up', '--batch-size', '1000', '--max-rows-per-second', '10000'];
    const first = open(args, env(dir));
    const bar = await first.waitFor(
      /tty_bf\s+\[[█░]{20}\]\s+\d+\.\d%\s+\d{1,2},\d{3}\/60,000 rows\s+[\d,]+ rows\/s\s+ETA /,
      'the backfill bar',
    );
    expect(bar).toMatch(new RegExp(`applying ${name}`));
    expect(first.stty()).toMatch(/(^|\s)isig(\s|$)/m);
    first.type(CTRL_C);
    expect(await first.exited).toBe(130);
    const stopped = first.transcript();
    expect(stopped).toMatch(/SIGINT received: stopping after the current step/);
    expect(stopped).not.toMatch(/this is a bug/);
    const histogram = await counterHistogram(client, 'tty_bf');
    expect(histogram[1]).toBeGreaterThan(0);
    expect(histogram[0]).toBeGreaterThan(0);

    const status = open(['migrate', 'status'], env(dir));
    expect(await status.exited).toBe(0);
    expect(status.transcript()).toMatch(/1 unfinished backfill\(s\): dbops migrate up resumes from the checkpoint/);

    const second = open(['migrate', 'up'], env(dir));
    expect(await second.exited).toBe(0);
    expect(second.transcript()).toMatch(new RegExp(`✔ applied ${name} `));
    expect(await counterHistogram(client, 'tty_bf')).toEqual({ 1: 60000 });
  });

  it('a backfill batch blocked by an idle-in-transaction session: the screen names it while retrying, the error names it with the fix', async () => {
    await client.query('CREATE TABLE tty_locked (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0)');
    await client.query('INSERT INTO tty_locked (id) SELECT g FROM generate_series(1, 3000) g');
    const blocker = new pg.Client({ connectionString: db.url, application_name: 'tty-blocker' });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('SELECT * FROM tty_locked WHERE id = 10 FOR UPDATE');
      const pid = (await blocker.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      const name = '20240301000000_count_locked';
      const dir = migrationsDir({ [`${name}.js`]: COUNTER('tty_locked') });
      const t = open(['migrate', 'up'], env(dir));
      const waiting = await t.waitFor(/waiting for a row lock/, 'the lock wait named');
      expect(waiting.replace(/\n\s*/g, ' ')).toMatch(
        new RegExp(`held by pid ${pid} \\(tty-blocker, idle in transaction for [\\d.]+ (ms|s)`),
      );
      expect(await t.exited).toBe(1);
      const screen = t
        .transcript()
        .replace(/\n {2}/g, ' ')
        .replace(/\n/g, ' ');
      expect(screen).toMatch(
        new RegExp(
          `waited 2000 ms for a row lock 4 time\\(s\\); held by pid ${pid} \\(tty-blocker, idle in transaction`,
        ),
      );
      expect(screen).toMatch(
        new RegExp(
          `hint: .*pid ${pid} is idle in transaction: end that transaction .*pg_terminate_backend\\(${pid}\\)`,
        ),
      );
      expect(screen).not.toMatch(/canceling statement due to lock timeout.*hint: (?!.*idle in transaction)/);
      await blocker.query('ROLLBACK');
      const again = open(['migrate', 'up'], env(dir));
      expect(await again.exited).toBe(0);
      expect(await counterHistogram(client, 'tty_locked')).toEqual({ 1: 3000 });
    } finally {
      await blocker.end();
    }
  });

  it('Ctrl-C while waiting for the migration lock: the holder named on screen, exit 130, nothing run', async () => {
    const slow = '20240401000000_slow';
    const after = '20240401000001_after';
    const dir = migrationsDir({
      [`${slow}.js`]: auditMig(slow, 'await sql`SELECT pg_sleep(3)`;'),
      [`${after}.js`]: auditMig(after),
    });
    const holder = open(['migrate', 'up', '--step', '1'], env(dir));
    await holder.waitFor(new RegExp(`applying ${slow}`), 'the first runner applying');
    const waiter = open(['migrate', 'up'], env(dir));
    const screen = await waiter.waitFor(
      /waiting for the migration lock held by dbops pid \d+/,
      'the waiter naming the holder',
    );
    expect(screen).toMatch(/server pid \d+, (active|idle in transaction)/);
    waiter.type(CTRL_C);
    expect(await waiter.exited).toBe(130);
    expect(waiter.transcript()).toMatch(/interrupted while waiting for the migration lock/);
    expect(await holder.exited).toBe(0);
    expect(
      (await client.query('SELECT name FROM audit WHERE name = ANY($1)', [[slow, after]])).rows.map((r) => r.name),
    ).toEqual([slow]);
  });

  it('an interrupted down: status and up agree that it is still applied and that migrate down resumes it; the rerun reverts each row once', async () => {
    await client.query('CREATE TABLE tty_rev (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0)');
    await client.query('INSERT INTO tty_rev (id) SELECT g FROM generate_series(1, 20000) g');
    const name = '20240501000000_count_and_back';
    const source = `
export default {
  transaction: false,
  async up(ctx) { await ctx.backfill({ table: 'tty_rev', set: 'counter = counter + 1' }); },
  async down(ctx) {
    await ctx.backfill({ table: 'tty_rev', batchSize: 1000, run: async (keys, c) => {
      await c.query('SELECT pg_sleep(0.05)');
      return (await c.query('UPDATE tty_rev SET counter = counter - 1 WHERE id = ANY($1)', [keys])).rowCount;
    } });
  },
};`;
    const dir = migrationsDir({ [`${name}.js`]: source });
    expect(await open(['migrate', 'up'], env(dir)).exited).toBe(0);
    const down = open(['migrate', 'down', '--yes'], env(dir));
    await down.waitFor(new RegExp(`reverting ${name}`), 'the revert running');
    for (;;) {
      const done = await client.query(
        "SELECT rows_done::int AS n FROM dbops.backfill_checkpoints WHERE table_name = 'tty_rev'",
      );
      if ((done.rows[0]?.n ?? 0) >= 2000) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    down.type(CTRL_C);
    expect(await down.exited).toBe(130);
    const stopped = down
      .transcript()
      .replace(/\n {2}/g, ' ')
      .replace(/\n/g, ' ');
    expect(stopped).toMatch(/it is still recorded as applied, partly reverted: dbops migrate down resumes the revert/);
    expect(stopped).not.toMatch(/not recorded as applied/);

    const status = open(['migrate', 'status'], env(dir));
    expect(await status.exited).toBe(0);
    const said = status.transcript();
    // A line wider than the terminal is folded at a space, with a hanging indent of two.
    expect(said.replace(/\r?\n {2}/g, ' ')).toMatch(
      new RegExp(`1 interrupted revert\\(s\\) \\(${name}\\): .*dbops migrate down resumes`),
    );
    expect(said).not.toMatch(/dbops migrate up resumes/);
    expect(said).toMatch(/│ reverting │/);

    const up = open(['migrate', 'up'], env(dir));
    expect(await up.exited).toBe(0);
    expect(
      up
        .transcript()
        .replace(/\n {2}/g, ' ')
        .replace(/\n/g, ' '),
    ).toMatch(
      new RegExp(
        `warning: ${name} is still recorded as applied but its down\\(\\) was interrupted .*dbops migrate down finishes the revert`,
      ),
    );

    const again = open(['migrate', 'down', '--yes'], env(dir));
    expect(await again.exited).toBe(0);
    expect(await counterHistogram(client, 'tty_rev')).toEqual({ 0: 20000 });
    const after = open(['migrate', 'status'], env(dir));
    expect(await after.exited).toBe(0);
    expect(after.transcript()).not.toMatch(/interrupted revert|unfinished backfill/);
  });

  it('Ctrl-C at the prompts of slow-queries --reset and migrate unlock cancels (exit 130, nothing done, no "bug" message)', async () => {
    const reset = open(['slow-queries', '--reset'], cleanEnv({ DATABASE_URL: db.url }));
    await reset.waitFor(/reset pg_stat_statements .*\[y\/N\]/s, 'the reset prompt');
    reset.type(CTRL_C);
    expect(await reset.exited).toBe(130);
    expect(reset.transcript()).toMatch(/cancelled at the prompt/);
    expect(reset.transcript()).not.toMatch(/pg_stat_statements reset for|this is a bug/);

    const slow = '20240601000000_hold_lock';
    const dir = migrationsDir({ [`${slow}.js`]: auditMig(slow, 'await sql`SELECT pg_sleep(4)`;') });
    const holder = open(['migrate', 'up'], env(dir));
    await holder.waitFor(new RegExp(`applying ${slow}`), 'the holder running');
    const unlock = open(['migrate', 'unlock'], env(dir));
    await unlock.waitFor(/End that session.*\[y\/N\]/s, 'the unlock prompt');
    unlock.type(CTRL_C);
    expect(await unlock.exited).toBe(130);
    expect(unlock.transcript()).not.toMatch(/this is a bug|ended /);
    // The holder was not ended: it finishes and records its migration.
    expect(await holder.exited).toBe(0);
    expect(holder.transcript()).toMatch(new RegExp(`✔ applied ${slow} `));
  });

  it('counting the rows before the batches is a named phase on screen (scanning)', async () => {
    await client.query('CREATE TABLE tty_scan (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0)');
    await client.query('INSERT INTO tty_scan (id) SELECT g FROM generate_series(1, 800) g');
    const name = '20240901000000_slow_count';
    // A condition that costs a millisecond a row: the count before the first batch takes 0.8 s.
    const source = `export default { transaction: false, async up(ctx) {
      await ctx.backfill({ table: 'tty_scan', where: 'pg_sleep(0.001) IS NOT NULL AND counter = 0', set: 'counter = counter + 1' });
    } };`;
    const dir = migrationsDir({ [`${name}.js`]: source });
    const t = open(['migrate', 'up'], env(dir));
    const scanning = await t.waitFor(/scanning tty_scan: counting the rows to change/, 'the scanning phase');
    expect(scanning).toMatch(new RegExp(`applying ${name}`));
    expect(await t.exited).toBe(0);
    expect(await counterHistogram(client, 'tty_scan')).toEqual({ 1: 800 });
  });

  it('validate is a named phase on screen: no stale ETA while it runs', async () => {
    await client.query('CREATE TABLE tty_val (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0)');
    await client.query('INSERT INTO tty_val (id) SELECT g FROM generate_series(1, 2000) g');
    const name = '20240701000000_slow_validate';
    const source = COUNTER('tty_val').replace(
      'async validate(ctx) {',
      "async validate(ctx) {\n    await ctx.sql.query('SELECT pg_sleep(2)');",
    );
    const dir = migrationsDir({ [`${name}.js`]: source });
    const t = open(['migrate', 'up'], env(dir));
    const validating = await t.waitFor(/^\s+validating$/m, 'the validating phase');
    expect(validating).toMatch(new RegExp(`applying ${name}`));
    expect(validating).not.toMatch(/ETA/);
    expect(await t.exited).toBe(0);
    expect(t.transcript()).toMatch(new RegExp(`✔ applied ${name} .*validate ok`));
  });

  it('a second Ctrl-C ends a long migration at once: its transaction rolls back, nothing recorded', async () => {
    const name = '20240801000000_sleeps';
    const dir = migrationsDir({ [`${name}.js`]: auditMig(name, 'await sql`SELECT pg_sleep(60)`;') });
    const t = open(['migrate', 'up'], env(dir));
    await t.waitFor(new RegExp(`applying ${name}`), 'the migration running');
    const sleeping = async () =>
      (
        await client.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' AND state = 'active'",
        )
      ).rows[0].n as number;
    while ((await sleeping()) === 0) await new Promise((r) => setTimeout(r, 20));
    t.type(CTRL_C);
    await t.waitFor(/SIGINT received: stopping after the current step/, 'the first Ctrl-C noticed');
    // The first Ctrl-C lets the step finish: the statement is still running.
    expect(await sleeping()).toBe(1);
    t.type(CTRL_C);
    expect(await t.exited).toBe(130);
    // The connection closed with the process: the server ends the statement and rolls back.
    while ((await sleeping()) > 0) await new Promise((r) => setTimeout(r, 20));
    expect((await client.query('SELECT count(*)::int AS n FROM audit WHERE name = $1', [name])).rows[0].n).toBe(0);
    const recorded = await client
      .query('SELECT count(*)::int AS n FROM dbops.data_migrations WHERE name = $1', [name])
      .catch(() => ({ rows: [{ n: 0 }] }));
    expect(recorded.rows[0].n).toBe(0);
    expect(t.raw().lastIndexOf('\x1b[?25h')).toBeGreaterThan(t.raw().lastIndexOf('\x1b[?25l'));
  });

  it('a command with no step to finish (a report waiting on a server that never answers) stops at the first Ctrl-C', async () => {
    // A server that accepts and never says a word: dbops waits for it up to --timeout.
    let accepted = 0;
    const silent = createServer(() => {
      accepted++;
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as AddressInfo).port;
    try {
      const t = open(['pool', '--timeout', '10m'], cleanEnv({ DATABASE_URL: `postgresql://u:p@127.0.0.1:${port}/db` }));
      // Wait until dbops has connected to the silent server (and is waiting on it).
      while (accepted === 0) await new Promise((r) => setTimeout(r, 20));
      t.type(CTRL_C);
      expect(await t.exited).toBe(130);
      expect(t.transcript()).toMatch(/^error: SIGINT received: stopped\n {2}hint: /m);
      expect(t.transcript()).not.toMatch(/stopping after the current step/);

      // In a pipe with --json (a CI job cancelled: SIGTERM), still one document on stdout.
      const before = accepted;
      const piped = startDbops(['pool', '--json', '--timeout', '10m'], {
        env: cleanEnv({ DATABASE_URL: `postgresql://u:p@127.0.0.1:${port}/db` }),
      });
      while (accepted === before) await new Promise((r) => setTimeout(r, 20));
      piped.child.kill('SIGTERM');
      const result = await piped.done;
      expect(result.code).toBe(130);
      expect(JSON.parse(result.stdout)).toMatchObject({ ok: false, error: { code: 'INTERRUPTED', exitCode: 130 } });
    } finally {
      silent.close();
    }
  });
});
