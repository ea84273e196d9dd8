/**
 * Crash and signal behaviour of the backfill engine with a real process and real signals:
 * SIGKILL in the middle of a backfill (also inside an open batch transaction), then resume:
 * every row changed exactly once (a counter column catches double application); SIGINT leaves a
 * resumable checkpoint and exits 130.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { readBackfillProgress, runBackfill } from '../../src/migrations/backfill.js';
import { counterHistogram } from '../helpers/counters.js';
import { createTestDatabase, type TestDatabase, uniqueName } from '../helpers/services.js';

const JITI = fileURLToPath(new URL('../../node_modules/jiti/lib/jiti-cli.mjs', import.meta.url));
const CHILD = fileURLToPath(new URL('../helpers/backfill-child.ts', import.meta.url));

let db: TestDatabase;
let client: pg.Client;

interface Child {
  proc: ChildProcessWithoutNullStreams;
  lines: Array<Record<string, unknown>>;
  stderr: () => string;
  /** Resolves with the first line matching `pred`. */
  waitFor(pred: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startChild(env: Record<string, string>): Child {
  const proc = spawn(process.execPath, [JITI, CHILD], {
    env: { ...process.env, BF_URL: db.url, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<{
    pred: (l: Record<string, unknown>) => boolean;
    resolve: (l: Record<string, unknown>) => void;
  }> = [];
  let buf = '';
  let err = '';
  proc.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = JSON.parse(buf.slice(0, i)) as Record<string, unknown>;
      buf = buf.slice(i + 1);
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.pred(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  proc.stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('close', (code, signal) => resolve({ code, signal })),
  );
  return {
    proc,
    lines,
    stderr: () => err,
    exited,
    waitFor: (pred) =>
      new Promise((resolve, reject) => {
        const found = lines.find(pred);
        if (found) return resolve(found);
        waiters.push({ pred, resolve });
        void exited.then((x) =>
          reject(new Error(`child exited (${x.code ?? x.signal}) before the expected line; stderr: ${err}`)),
        );
      }),
  };
}

async function makeTable(n: number): Promise<string> {
  const name = uniqueName('bfk');
  await client.query(`CREATE TABLE ${name} (id bigint PRIMARY KEY, val int NOT NULL, counter int NOT NULL DEFAULT 0)`);
  await client.query(`INSERT INTO ${name} (id, val) SELECT g, g FROM generate_series(1, $1::int) g`, [n]);
  return name;
}

const counters = (table: string) => counterHistogram(client, table);

beforeAll(async () => {
  db = await createTestDatabase();
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
});

afterAll(async () => {
  await client?.end();
  await db?.drop();
});

describe('backfill in a real process', () => {
  it('SIGKILL at random points, twice, then resume: every row changed exactly once', async () => {
    const table = await makeTable(30_000);
    // Without a where condition a batch applied twice would leave counter = 2 somewhere.
    const env = { BF_TABLE: table, BF_MIGRATION: 'crash_random', BF_BATCH: '150' };
    const a = startChild(env);
    await a.waitFor((l) => Number(l.batches) >= 5);
    a.proc.kill('SIGKILL');
    expect((await a.exited).signal).toBe('SIGKILL');
    const afterA = (await readBackfillProgress(client)).find((p) => p.migration === 'crash_random');
    expect(afterA?.finished).toBe(false);

    const b = startChild(env);
    await b.waitFor((l) => Number(l.batches) >= Number(afterA?.batches) + 5);
    b.proc.kill('SIGKILL');
    expect((await b.exited).signal).toBe('SIGKILL');

    const r = await runBackfill(client, 'crash_random', { table, set: 'counter = counter + 1' }, { batchSize: 1000 });
    expect(r.resumedFrom).not.toBeNull();
    expect(r.rowsDone).toBe(30_000);
    expect(await counters(table)).toEqual({ 1: 30_000 });
    const p = (await readBackfillProgress(client)).find((x) => x.migration === 'crash_random');
    expect(p).toMatchObject({ finished: true, percent: 100, rowsDone: 30_000 });
  });

  it('SIGKILL inside an open batch transaction (after its UPDATE, before COMMIT): that batch is rolled back and redone once', async () => {
    const table = await makeTable(2000);
    const child = startChild({ BF_TABLE: table, BF_MIGRATION: 'crash_open', BF_BATCH: '100', BF_HANG_AT: '4' });
    await child.waitFor((l) => l.hanging === 4);
    child.proc.kill('SIGKILL');
    await child.exited;
    // The checkpoint says three batches; the server may still be rolling back the fourth: resume waits for it.
    const resumed = startChild({ BF_TABLE: table, BF_MIGRATION: 'crash_open', BF_BATCH: '100', BF_HANG_AT: '999' });
    const done = (await resumed.waitFor((l) => 'done' in l)).done as { resumedFrom: string; rows: number };
    expect((await resumed.exited).code).toBe(0);
    expect(done.resumedFrom).toBe('300');
    expect(done.rows).toBe(1700);
    expect(await counters(table)).toEqual({ 1: 2000 });
  });

  it('SIGINT finishes the current batch, saves the checkpoint, exits 130 and says how to resume', async () => {
    const table = await makeTable(20_000);
    const env = { BF_TABLE: table, BF_MIGRATION: 'sigint', BF_BATCH: '200', BF_PAUSE: '20' };
    const child = startChild(env);
    await child.waitFor((l) => Number(l.batches) >= 3);
    child.proc.kill('SIGINT');
    const exit = await child.exited;
    expect(exit.code).toBe(ExitCode.Interrupted);
    expect(child.stderr()).toMatch(
      /backfill sigint on bfk_\w+ interrupted: [\d,]+ of ~20,000 rows done in [\d,]+ batches, checkpoint at id = \d+/,
    );
    expect(child.stderr()).toMatch(/hint: .*run the same command again/);
    const p = (await readBackfillProgress(client)).find((x) => x.migration === 'sigint');
    expect(p?.finished).toBe(false);
    const lastLine = child.lines.at(-1);
    // The checkpoint is exactly the last batch the process reported: nothing half-done.
    expect(p?.lastKey).toBe(lastLine?.lastKey);
    expect(p?.rowsDone).toBe(lastLine?.rowsDone);
    expect(await counters(table)).toEqual({ 0: 20_000 - Number(p?.rowsDone), 1: Number(p?.rowsDone) });

    const resumed = startChild(env);
    const done = await resumed.waitFor((l) => 'done' in l);
    expect((await resumed.exited).code).toBe(0);
    expect((done.done as { resumedFrom: string }).resumedFrom).toBe(p?.lastKey);
    expect(await counters(table)).toEqual({ 1: 20_000 });
  });
});
