import { Chalk } from 'chalk';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { walkTree } from '../../src/diagnostics/locks.js';
import { collectLocksReport, collectPoolReport } from '../../src/diagnostics/pool.js';
import { renderLocks } from '../../src/output/pool.js';
import { Sessions, stagePileUp, waitForLockWait } from '../helpers/pool-sessions.js';
import { createTestDatabase, type TestDatabase } from '../helpers/services.js';

describe('blocking tree on a real pile-up (idle in transaction → UPDATE → ALTER TABLE → SELECT)', () => {
  let db: TestDatabase;
  let observer: pg.Client;
  const sessions = new Sessions();
  let pids: Awaited<ReturnType<typeof stagePileUp>>;

  beforeAll(async () => {
    db = await createTestDatabase({ empty: true });
    observer = new pg.Client({ connectionString: db.url });
    await observer.connect();
    await observer.query('CREATE TABLE items (id int PRIMARY KEY, n int NOT NULL)');
    await observer.query('INSERT INTO items SELECT g, 0 FROM generate_series(1, 5) g');
    pids = await stagePileUp(sessions, db.url, observer, 'items');
  });
  afterAll(async () => {
    await sessions.close();
    await observer.end();
    await db.drop();
  });

  it('roots first, the chain holder → update → alter → select, each waiter once with all its blockers', async () => {
    const report = await collectLocksReport(observer, { queryTimeoutMs: 5000 });
    // Other test files run in parallel on the same server: look at the tree rooted at our holder.
    const root = report.locks.roots.find((r) => r.pid === pids.holder);
    expect(root).toBeDefined();
    expect(root?.root).toBe(true);
    expect(root?.state).toBe('idle in transaction');
    expect(root?.application).toBe('holder-app');
    expect(root?.terminate).toBe(`SELECT pg_terminate_backend(${pids.holder});`);
    const walk = walkTree({ roots: [root!], waiterCount: 0 });
    expect(walk.map((w) => [w.node.pid, w.depth])).toEqual([
      [pids.holder, 0],
      [pids.update, 1],
      [pids.alter, 2],
      [pids.select, 3],
    ]);
    const byPid = new Map(walk.map((w) => [w.node.pid, w.node]));
    expect(byPid.get(pids.update)?.blockedBy).toEqual([{ pid: pids.holder, kind: 'holds' }]);
    expect(byPid.get(pids.update)?.waitingFor?.locktype).toBe('transactionid');
    // The ALTER waits for both the holder and the blocked UPDATE (both hold RowExclusiveLock).
    expect(
      byPid
        .get(pids.alter)
        ?.blockedBy.map((b) => b.pid)
        .sort(),
    ).toEqual([pids.holder, pids.update].sort());
    expect(byPid.get(pids.alter)?.waitingFor).toMatchObject({ mode: 'AccessExclusiveLock', relation: 'items' });
    // the time waited for the lock (pg_locks.waitstart), not the age of the query
    const alter = byPid.get(pids.alter);
    expect(typeof alter?.waitingFor?.waitMs).toBe('number');
    expect(alter?.waitingFor?.waitMs ?? -1).toBeGreaterThanOrEqual(0);
    expect(alter?.waitingFor?.waitMs ?? 0).toBeLessThanOrEqual((alter?.queryAgeMs ?? 0) + 50);
    // The SELECT is blocked only by the queued ALTER: a soft block that pg_locks joins cannot see.
    expect(byPid.get(pids.select)?.blockedBy).toEqual([{ pid: pids.alter, kind: 'queued' }]);
    expect(byPid.get(pids.select)?.application).toBe('select-app');
    expect(byPid.get(pids.select)?.query).toMatch(/SELECT count\(\*\) FROM items/);
    expect(root?.blockedCount).toBe(3);
    // Each waiter appears exactly once in the whole forest.
    const all = walkTree(report.locks).map((w) => w.node.pid);
    expect(new Set(all).size).toBe(all.length);
    const finding = report.findings.find((f) => f.code === 'lock-blocking' && f.pids?.[0] === pids.holder);
    expect(finding?.message).toMatch(
      new RegExp(`pid ${pids.holder} \\(idle in transaction .*app=holder-app.*blocks 3 sessions`),
    );
    expect(finding?.suggestion).toMatch(/idle_in_transaction_session_timeout/);
    expect(finding?.suggestion).toMatch(/lock_timeout/);
  });

  it('the lock wait turns critical once it is older than --long-ms', async () => {
    const relaxed = await collectLocksReport(observer, { queryTimeoutMs: 5000, thresholds: { longMs: 3_600_000 } });
    expect(relaxed.findings.find((f) => f.pids?.[0] === pids.holder)?.severity).toBe('warning');
    const strict = await collectLocksReport(observer, { queryTimeoutMs: 5000, thresholds: { longMs: 1 } });
    expect(strict.findings.find((f) => f.pids?.[0] === pids.holder)?.severity).toBe('critical');
    expect(strict.ok).toBe(false);
  });

  it('the pool report shows the holder idle in transaction, with the xid it holds back, and the waiters as long-running', async () => {
    const report = await collectPoolReport(observer, undefined, { queryTimeoutMs: 5000, thresholds: { longMs: 1 } });
    const idle = report.idleInTransaction.find((s) => s.pid === pids.holder);
    expect(idle).toMatchObject({ application: 'holder-app', state: 'idle in transaction' });
    expect(idle?.query).toMatch(/UPDATE items SET n = n \+ 1/);
    // The UPDATE assigned a transaction ID: age(backend_xid) is at least 0 and reported.
    expect(idle?.xidHeldBack).not.toBeNull();
    expect(idle?.terminate).toBe(`SELECT pg_terminate_backend(${pids.holder});`);
    const long = report.longRunning.map((s) => s.pid);
    expect(long).toEqual(expect.arrayContaining([pids.update, pids.alter, pids.select]));
    expect(report.pool.lockWaiting).toBeGreaterThanOrEqual(3);
    expect(report.locks.roots.some((r) => r.pid === pids.holder)).toBe(true);
  });
});

describe('row-lock waits are reported as row locks (issue 13)', () => {
  let db: TestDatabase;
  let observer: pg.Client;
  const sessions = new Sessions();

  beforeAll(async () => {
    db = await createTestDatabase({ empty: true });
    observer = new pg.Client({ connectionString: db.url });
    await observer.connect();
    await observer.query('CREATE TABLE "User" (id int PRIMARY KEY, n int NOT NULL)');
    await observer.query('INSERT INTO "User" SELECT g, 0 FROM generate_series(1, 5) g');
  });
  afterAll(async () => {
    await sessions.close();
    await observer.end();
    await db.drop();
  });

  it('SELECT ... FOR UPDATE behind a changed row: the first waits for the transaction, the next for the row lock, no table lock named', async () => {
    const holder = await sessions.open(db.url, 'holder');
    await holder.query('BEGIN');
    await holder.query('UPDATE "User" SET n = 1 WHERE id = 3');
    const first = await sessions.open(db.url, 'first');
    sessions.background(first, 'SELECT * FROM "User" WHERE id = 3 FOR UPDATE');
    await waitForLockWait(observer, first.pid);
    const second = await sessions.open(db.url, 'second');
    sessions.background(second, 'SELECT * FROM "User" WHERE id = 3 FOR UPDATE');
    await waitForLockWait(observer, second.pid);
    const xid = (
      await observer.query(`SELECT backend_xid::text AS x FROM pg_stat_activity WHERE pid = $1`, [holder.pid])
    ).rows[0].x;

    const report = await collectLocksReport(observer, { queryTimeoutMs: 5000 });
    const root = report.locks.roots.find((r) => r.pid === holder.pid);
    const byPid = new Map(walkTree({ roots: [root!], waiterCount: 0 }).map((w) => [w.node.pid, w.node]));
    expect(byPid.get(first.pid)?.waitingFor).toMatchObject({
      locktype: 'transactionid',
      transactionId: xid,
      rowOf: { relation: '"User"', row: '(0,3)' },
    });
    expect(byPid.get(second.pid)?.waitingFor).toMatchObject({
      locktype: 'tuple',
      mode: 'AccessExclusiveLock',
      relation: '"User"',
      row: '(0,3)',
    });

    const text = renderLocks(report, new Chalk({ level: 0 }));
    expect(text).toContain(`for transaction ${xid} to end: row (0,3) of "User", which it changed or locked`);
    expect(text).toContain('for a row lock (FOR UPDATE) on row (0,3) of "User"');
    expect(text).not.toContain('AccessExclusiveLock on "User"');
  });
});
