/**
 * The runner's logic without a server: ordering, selection, drift, outcomes, the re-read under the
 * lock, rehearsals and failures, driven through the in-memory ledger and session. The same
 * behaviours on PostgreSQL are proven by test/integration/migrate.test.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type Ledger, type LedgerInsert, memoryLedger } from '../../src/migrations/ledger.js';
import { MigrationRunError, MigrationRunner, runResultOf } from '../../src/migrations/runner.js';
import { Transaction } from '../../src/migrations/session.js';
import type { RunEvent } from '../../src/migrations/types.js';
import { MemorySession } from '../helpers/memory-session.js';

/** What the migrations did, in order (they run in this process). */
const calls: string[] = [];
(globalThis as { __dbopsCalls?: string[] }).__dbopsCalls = calls;
const dirs: string[] = [];

afterEach(() => {
  calls.length = 0;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A migration module that logs `up:name` / `validate:name` / `down:name`; `verdict` is validate's answer. */
function module(name: string, opts: { verdict?: boolean; transaction?: boolean; down?: boolean } = {}): string {
  const log = (step: string) => `globalThis.__dbopsCalls.push('${step}:${name}')`;
  return `export default {
  description: 'test ${name}',
  ${opts.transaction === false ? 'transaction: false,' : ''}
  up() { ${log('up')}; },
  validate() { ${log('validate')}; return ${opts.verdict ?? true}; },
  ${opts.down === false ? '' : `down() { ${log('down')}; },`}
};\n`;
}

function folder(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'dbops-unit-'));
  dirs.push(dir);
  for (const [name, source] of Object.entries(files)) writeFileSync(join(dir, `${name}.mjs`), source);
  return dir;
}

function setup(files: Record<string, string>) {
  const session = new MemorySession();
  const ledger = memoryLedger();
  const dir = folder(files);
  const runner = new MigrationRunner(
    { migrationsDir: dir, prismaMigrationsDir: false, prismaClient: false },
    { session, ledger },
  );
  return { session, ledger, runner, dir };
}

async function names(ledger: Ledger): Promise<string[] | undefined> {
  return (await ledger.read({ client: null as never }))?.map((r) => r.name);
}

const A = '20240101000000_a';
const B = '20240102000000_b';
const C = '20240103000000_c';

const identity = new MemorySession().identity;

/** A ledger row as `record` takes it. */
function insert(name: string, checksum = 'c'): LedgerInsert {
  return {
    name,
    checksum,
    description: undefined,
    transactional: true,
    markedOnly: false,
    startedAt: new Date(),
    durationMs: 1,
    identity,
  };
}

/** Rows another runner committed: recorded through a transaction nobody rolls back. */
async function seed(ledger: Ledger, rows: Array<[name: string, checksum: string]>): Promise<void> {
  const other = new Transaction(null as never);
  await ledger.ensure(other);
  for (const [name, checksum] of rows) await ledger.record(other, insert(name, checksum));
}

const kinds = (events: RunEvent[]) =>
  events.map((e) =>
    e.type === 'finish' ? `finish:${e.outcome.name}:${e.outcome.status}` : 'name' in e ? `${e.type}:${e.name}` : e.type,
  );

describe('MigrationRunner on the in-memory seams', () => {
  it('up applies pending migrations in name order, each in its own locked transaction, and records who', async () => {
    const { session, ledger, runner } = setup({ [B]: module('b'), [A]: module('a') });
    expect(await names(ledger)).toBeUndefined();
    const result = await runner.up();
    expect(calls).toEqual(['up:a', 'validate:a', 'up:b', 'validate:b']);
    expect(result.outcomes.map((o) => [o.name, o.status, o.validate])).toEqual([
      [A, 'applied', true],
      [B, 'applied', true],
    ]);
    // No transaction of its own creates the ledger: the first migration's does, and commits it with its row.
    expect(session.transactions).toEqual(['lock bounded', 'commit', 'lock bounded', 'commit']);
    expect(kinds(session.events)).toEqual([
      `start:${A}`,
      `phase:${A}`,
      `finish:${A}:applied`,
      `start:${B}`,
      `phase:${B}`,
      `finish:${B}:applied`,
    ]);
    // validate is a named phase of the running migration (no stale ETA on screen while it runs).
    expect(session.events.filter((e) => e.type === 'phase').map((e) => (e.type === 'phase' ? e.phase : ''))).toEqual([
      'validating',
      'validating',
    ]);
    const rows = await ledger.read({ client: null as never });
    expect(rows?.map((r) => [r.name, r.appliedBy, r.appliedHost, r.ciJob, r.markedOnly])).toEqual([
      [A, 'tester', 'test-host', 'job-7', false],
      [B, 'tester', 'test-host', 'job-7', false],
    ]);
    expect((await runner.up()).outcomes).toEqual([]);
    expect(calls).toHaveLength(4);
  });

  it('a false validate rolls its migration back, stops the run and says where, with the partial result', async () => {
    const { ledger, runner } = setup({ [A]: module('a'), [B]: module('b', { verdict: false }), [C]: module('c') });
    const error = await runner.up().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MigrationRunError);
    expect(error).toMatchObject({ migration: B, step: 'validate', exitCode: 1, code: 'FAILED' });
    expect((error as Error).message).toBe(`migration ${B} failed at validate: validate() returned false (rolled back)`);
    expect(runResultOf(error)?.ok).toBe(false);
    expect(runResultOf(error)?.outcomes.map((o) => [o.name, o.status, o.validate, o.error?.step])).toEqual([
      [A, 'applied', true, undefined],
      [B, 'failed', false, 'validate'],
    ]);
    expect(calls).toEqual(['up:a', 'validate:a', 'up:b', 'validate:b']);
    expect(await names(ledger)).toEqual([A]);
  });

  it('the first run ever, failing at its first migration, leaves no ledger behind (it is created in that migration’s transaction)', async () => {
    const { ledger, runner } = setup({ [A]: module('a', { verdict: false }), [B]: module('b') });
    expect(await ledger.read({ client: null as never })).toBeNull();
    await expect(runner.up()).rejects.toThrow(/failed at validate/);
    expect(await ledger.read({ client: null as never })).toBeNull();
    await runner.markApplied(B);
    expect(await names(ledger)).toEqual([B]);
  });

  it('a failed COMMIT rolls the ledger row back with the migration and names the ledger step', async () => {
    const { session, ledger, runner } = setup({ [A]: module('a'), [B]: module('b') });
    session.onLock = () => {
      session.onLock = () => {
        session.failNextCommit = true;
      };
    };
    const error = (await runner.up().catch((e: unknown) => e)) as MigrationRunError;
    expect(error.message).toBe(
      `migration ${B} failed at ledger: COMMIT failed: connection lost during COMMIT (rolled back)`,
    );
    expect(await names(ledger)).toEqual([A]);
    expect(session.transactions.slice(-2)).toEqual(['lock bounded', 'rollback']);
  });

  it('afterCommit hooks registered in the migration transaction run once it committed, never after a rollback or in a rehearsal', async () => {
    const { session, ledger, runner } = setup({ [A]: module('a'), [B]: module('b') });
    const relayed: string[] = [];
    // An outbox in miniature: the ledger write registers the relay on the migration's transaction.
    const record = ledger.record.bind(ledger);
    ledger.record = async (tx, row) => {
      await record(tx, row);
      tx.afterCommit(() => void relayed.push(row.name));
    };
    await runner.up({ dryRun: true });
    expect(relayed).toEqual([]);
    session.onLock = () => {
      session.onLock = () => {
        session.failNextCommit = true;
      };
    };
    await expect(runner.up()).rejects.toThrow(/COMMIT failed/);
    expect(relayed).toEqual([A]);
  });

  it('a throwing up keeps the standard cause', async () => {
    const { runner } = setup({ [A]: `export default { up() { throw new Error('boom'); } };\n` });
    const error = (await runner.up().catch((e: unknown) => e)) as MigrationRunError;
    expect(error.step).toBe('up');
    expect(error.message).toMatch(/failed at up: boom \(rolled back\)/);
    expect((error.cause as Error).message).toBe('boom');
  });

  it('--to and --step select a prefix of the timeline; down reverts newest first', async () => {
    const { ledger, runner } = setup({ [A]: module('a'), [B]: module('b'), [C]: module('c') });
    expect((await runner.up({ step: 1 })).outcomes.map((o) => o.name)).toEqual([A]);
    expect((await runner.up({ to: B })).outcomes.map((o) => o.name)).toEqual([B]);
    await expect(runner.up({ to: '20240109000000_x' })).rejects.toThrow(/no such migration/);
    await runner.up();
    calls.length = 0;
    const down = await runner.down({ step: 2 });
    expect(down.outcomes.map((o) => [o.name, o.status])).toEqual([
      [C, 'reverted'],
      [B, 'reverted'],
    ]);
    expect(calls).toEqual(['down:c', 'down:b']);
    expect(await names(ledger)).toEqual([A]);
    expect((await runner.down({ to: A })).outcomes).toEqual([]);
  });

  it('a migration applied by another runner after we looked is skipped under the lock, not run twice', async () => {
    const { session, ledger, runner } = setup({ [A]: module('a'), [B]: module('b') });
    session.onLock = async () => {
      session.onLock = undefined;
      await seed(ledger, [[A, 'x']]);
    };
    const result = await runner.up();
    expect(result.appliedByOthers).toEqual([A]);
    expect(result.outcomes.map((o) => o.name)).toEqual([B]);
    expect(calls).toEqual(['up:b', 'validate:b']);
    expect(kinds(session.events)[0]).toBe(`skip:${A}`);
  });

  it('status and validate report drift: changed, missing, out of order; up warns and applies the late one', async () => {
    const { ledger, runner } = setup({ [A]: module('a', { down: false }), [B]: module('b') });
    await seed(ledger, [
      [A, 'old-checksum'],
      [C, 'c'],
    ]);
    const status = await runner.status();
    expect(status.entries.map((e) => [e.name, e.state])).toEqual([
      [A, 'changed'],
      [B, 'out-of-order'],
      [C, 'missing'],
    ]);
    expect(status.ledgerExists).toBe(true);
    const validated = await runner.validate();
    expect(validated.ok).toBe(false);
    expect(validated.findings.map((f) => f.kind)).toEqual(['changed', 'out-of-order', 'missing']);
    expect(validated.checked).toEqual([{ name: A, verdict: true, durationMs: expect.any(Number) }]);
    const up = await runner.up();
    expect(up.warnings).toEqual([
      `${B} is older than the newest applied migration ${C} (out of order); applying it`,
      `${A} changed since it was applied (checksum differs; dbops migrate repair accepts the change)`,
    ]);
    expect(up.outcomes.map((o) => o.name)).toEqual([B]);
  });

  it('a rehearsal runs up and validate in one transaction, reports them, and leaves the ledger as it was', async () => {
    const { session, ledger, runner } = setup({ [A]: module('a'), [B]: module('b', { transaction: false }) });
    const result = await runner.up({ dryRun: true });
    expect(result.outcomes.map((o) => [o.name, o.status])).toEqual([
      [A, 'rehearsed'],
      [B, 'skipped'],
    ]);
    expect(result.outcomes[0]?.statementLog).toEqual([]);
    expect(calls).toEqual(['up:a', 'validate:a']);
    expect(session.transactions).toEqual(['lock bounded', 'rollback']);
    expect(await names(ledger)).toBeUndefined();
  });

  it('mark-applied records without running; marking again changes nothing', async () => {
    const { ledger, runner } = setup({ [A]: module('a', { transaction: false }) });
    const first = await runner.markApplied(A);
    expect(first.outcomes.map((o) => [o.status, o.transactional])).toEqual([['marked', false]]);
    expect((await ledger.read({ client: null as never }))?.map((r) => [r.name, r.markedOnly])).toEqual([[A, true]]);
    const again = await runner.markApplied(A);
    expect(again.outcomes.map((o) => [o.status, o.note])).toEqual([['skipped', 'already applied']]);
    expect(again.warnings).toEqual([`${A} is already applied; nothing changed`]);
    expect(calls).toEqual([]);
    await expect(runner.markApplied('20240109000000_nope')).rejects.toThrow(/no such data migration/);
  });

  it('an interruption between migrations stops before the next one: exit 130 with what was applied', async () => {
    const { session, ledger, runner } = setup({
      [A]: `export default { up() { globalThis.__dbopsInterrupt(); } };\n`,
      [B]: module('b'),
    });
    (globalThis as { __dbopsInterrupt?: () => void }).__dbopsInterrupt = () => session.interrupt();
    const error = (await runner.up().catch((e: unknown) => e)) as MigrationRunError;
    expect(error).toMatchObject({ exitCode: 130, code: 'INTERRUPTED' });
    expect(error.message).toBe(`interrupted before ${B}; 1 migration(s) applied`);
    expect(error.result.outcomes.map((o) => [o.name, o.status])).toEqual([[A, 'applied']]);
    expect(await names(ledger)).toEqual([A]);
  });

  it('down refuses a migration without down() before touching anything', async () => {
    const { ledger, runner } = setup({ [A]: module('a', { down: false }) });
    await seed(ledger, [[A, 'x']]);
    await expect(runner.down()).rejects.toThrow(/cannot revert 20240101000000_a: it has no down\(\)/);
    expect(await names(ledger)).toEqual([A]);
  });
});

describe('the memory ledger and the transaction handle', () => {
  it('writes commit with their transaction or are undone by its rollback; afterCommit runs only on commit', async () => {
    const session = new MemorySession();
    const ledger = memoryLedger();
    const committed: string[] = [];

    const rolledBack = await session.begin({ lock: true, bounded: true });
    await ledger.ensure(rolledBack);
    await ledger.record(rolledBack, insert(A));
    rolledBack.afterCommit(() => void committed.push('never'));
    expect(await ledger.applied(rolledBack)).toEqual(new Set([A]));
    await session.rollback(rolledBack);
    await rolledBack.runAfterCommit();
    expect(await names(ledger)).toBeUndefined();

    const kept = await session.begin({ lock: true, bounded: true });
    await ledger.ensure(kept);
    await ledger.record(kept, insert(A));
    kept.afterCommit(() => void committed.push(A));
    await session.commit(kept);
    await session.rollback(kept);
    expect(await names(ledger)).toEqual([A]);
    await kept.runAfterCommit();
    expect(committed).toEqual([A]);

    const removal = await session.begin({ lock: true, bounded: true });
    await ledger.remove(removal, A);
    await session.rollback(removal);
    expect(await names(ledger)).toEqual([A]);
  });

  it('repair: lists each changed migration with the recorded and the file checksum, accepts them with who, when and the checksum before; status and validate are clean', async () => {
    const { ledger, runner, dir } = setup({ [A]: module('a'), [B]: module('b') });
    await runner.up();
    writeFileSync(join(dir, `${A}.mjs`), `${module('a')}// a comment added after it was applied\n`);
    expect((await runner.status()).entries.map((e) => e.state)).toEqual(['changed', 'applied']);
    const before = (await ledger.read({ client: null as never }))?.[0]?.checksum as string;

    const plan = await runner.planRepair();
    expect(plan.changes).toEqual([
      { name: A, previousChecksum: before, checksum: expect.stringMatching(/^[0-9a-f]{64}$/) },
    ]);
    expect(plan.changes[0]?.checksum).not.toBe(before);
    await expect(runner.planRepair(['20990101000000_nope'])).rejects.toThrow(/not an applied data migration/);
    expect((await runner.planRepair([B])).changes).toEqual([]);
    expect((await runner.planRepair([B])).unchanged).toEqual([B]);

    const result = await runner.repair(plan);
    expect(result.accepted).toEqual(plan.changes);
    const row = (await ledger.read({ client: null as never }))?.[0];
    expect(row?.checksum).toBe(plan.changes[0]?.checksum);
    expect(row?.repairs).toEqual([
      expect.objectContaining({
        by: 'tester',
        host: 'test-host',
        ciJob: 'job-7',
        previousChecksum: before,
        checksum: plan.changes[0]?.checksum,
        at: expect.any(Date),
      }),
    ]);
    expect((await runner.status()).entries.map((e) => e.state)).toEqual(['applied', 'applied']);
    expect((await runner.validate()).ok).toBe(true);
    // the same plan again: the row no longer has the checksum it was made from
    const stale = await runner.repair(plan);
    expect(stale.accepted).toEqual([]);
    expect(stale.skipped.map((x) => x.name)).toEqual([A]);
  });
});
