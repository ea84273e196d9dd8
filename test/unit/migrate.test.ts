import { describe, expect, it } from 'vitest';
import { ciJobOf } from '../../src/cli/commands/migrate.js';
import { defineDataMigration } from '../../src/migrations/define.js';
import { checksumSource, toDataMigration } from '../../src/migrations/loader.js';
import { holderApplicationName, lockKey, parseHolderApplicationName } from '../../src/migrations/lock.js';
import {
  compareTimeline,
  computeStatus,
  declaresNoTransaction,
  olderPendingSchema,
  selectDown,
  selectUp,
} from '../../src/migrations/plan.js';
import { utcTimestamp } from '../../src/migrations/scaffold.js';
import { buildSql, createSqlTag } from '../../src/migrations/sql.js';
import type { LedgerRow } from '../../src/migrations/types.js';

const row = (name: string, checksum = 'c'): LedgerRow => ({
  name,
  checksum,
  description: null,
  transactional: true,
  markedOnly: false,
  startedAt: new Date(0),
  finishedAt: new Date(1000),
  durationMs: 1,
  appliedBy: 'ann',
  appliedHost: 'h1',
  ciJob: null,
  dbUser: 'postgres',
  dbopsVersion: '0.1.0',
  repairs: [],
});
const disk = (name: string, checksum = 'c') => ({ name, timestamp: name.slice(0, 14), checksum, transactional: true });

describe('checksums', () => {
  it('ignore line endings and a BOM, but not content', () => {
    expect(checksumSource('a\r\nb\r\n')).toBe(checksumSource('a\nb\n'));
    expect(checksumSource('\uFEFFa\n')).toBe(checksumSource('a\n'));
    expect(checksumSource('a\n')).not.toBe(checksumSource('a \n'));
  });
});

describe('module shapes', () => {
  it('accepts defineDataMigration, plain objects, classes and instances; rejects the rest', () => {
    expect(typeof toDataMigration(defineDataMigration({ up() {} }))).toBe('object');
    class M {
      description = 'd';
      up() {}
      down() {}
    }
    const fromClass = toDataMigration(M);
    expect(fromClass).toMatchObject({ description: 'd', transaction: true });
    expect(typeof (fromClass as { down?: unknown }).down).toBe('function');
    expect(typeof toDataMigration(new M())).toBe('object');
    expect(toDataMigration({ up() {}, transaction: false })).toMatchObject({ transaction: false });
    expect(toDataMigration({ description: 'x' })).toMatch(/no up\(\)/);
    expect(toDataMigration(() => 1)).toMatch(/is a function/);
    expect(toDataMigration(42)).toMatch(/no default export/);
    expect(toDataMigration({ up() {}, validate: 'yes' })).toMatch(/validate must be a function/);
    expect(() => defineDataMigration({} as never)).toThrow(/up/);
  });
});

describe('sql tag', () => {
  it('turns values into parameters and splices fragments with renumbered parameters', async () => {
    const calls: unknown[][] = [];
    const client = {
      query: async (text: string, values: unknown[]) => {
        calls.push([text, values]);
        return { rows: [{ n: 1 }], rowCount: 1 };
      },
    };
    const sql = createSqlTag(client as never);
    expect(buildSql(['SELECT ', ' FROM t WHERE y = ', ''], [1, 'two'])).toEqual({
      text: 'SELECT $1 FROM t WHERE y = $2',
      values: [1, 'two'],
    });
    const r = await sql`UPDATE ${sql.ident('public.User')} SET role = ${"O'Brien"} WHERE ${sql.raw('1 = 1')}`;
    expect(r).toEqual({ rows: [{ n: 1 }], rowCount: 1 });
    expect(calls[0]).toEqual(['UPDATE "public"."User" SET role = $1 WHERE 1 = 1', ["O'Brien"]]);
  });
});

describe('lock identity', () => {
  it('derives a stable key per ledger table and parses holder names', () => {
    expect(lockKey('_dbops_data_migrations')).toEqual(lockKey('_dbops_data_migrations'));
    expect(lockKey('a')).not.toEqual(lockKey('b'));
    expect(lockKey('x')[1]).not.toBe(1);
    const name = holderApplicationName({ pid: 4242, host: 'ci-runner-7' });
    expect(name).toBe('dbops migrate 4242@ci-runner-7');
    expect(parseHolderApplicationName(name)).toEqual({ pid: 4242, host: 'ci-runner-7' });
    expect(Buffer.byteLength(holderApplicationName({ pid: 1, host: 'h'.repeat(100) }))).toBeLessThanOrEqual(63);
    expect(parseHolderApplicationName('psql')).toBeNull();
  });
});

describe('status and drift', () => {
  it('classifies applied, pending, changed, missing and out-of-order on one timeline', () => {
    const s = computeStatus({
      disk: [
        disk('20240101000000_a'),
        disk('20240102000000_b', 'new'),
        disk('20240103000000_c'),
        disk('20240105000000_e'),
      ],
      ledger: [row('20240101000000_a'), row('20240102000000_b'), row('20240104000000_d')],
      schemaFiles: [{ name: '20231201000000_init' }, { name: '20240101000000_schema' }],
      schemaApplied: [
        { name: '20231201000000_init', startedAt: new Date(0), finishedAt: new Date(5), rolledBackAt: null },
      ],
      ledgerExists: true,
    });
    expect(s.entries.map((e) => `${e.kind}:${e.name}:${e.state}`)).toEqual([
      'schema:20231201000000_init:applied',
      'schema:20240101000000_schema:pending',
      'data:20240101000000_a:applied',
      'data:20240102000000_b:changed',
      'data:20240103000000_c:out-of-order',
      'data:20240104000000_d:missing',
      'data:20240105000000_e:pending',
    ]);
    expect(s.counts).toEqual({ applied: 2, pending: 2, changed: 1, missing: 1, 'out-of-order': 1 });
    expect(s.drift.map((e) => e.name)).toEqual(['20240102000000_b', '20240103000000_c', '20240104000000_d']);
    expect(s.entries.find((e) => e.name === '20240101000000_a')?.appliedBy).toBe('ann@h1');
  });

  it('guesses transaction: false from the source without running it', () => {
    expect(declaresNoTransaction('defineDataMigration({ transaction: false, up() {} })')).toBe(true);
    expect(declaresNoTransaction('defineDataMigration({ up() {} })')).toBe(false);
  });
});

describe('selection', () => {
  const items = ['20240103000000_c', '20240101000000_a', '20240102000000_b'].map((name) => ({
    kind: 'data' as const,
    name,
  }));
  const known = new Set(items.map((i) => i.name));
  it('up: all, --to (inclusive), --step; unknown --to is a usage error', () => {
    expect(selectUp(items, known, {}).map((i) => i.name)).toEqual([
      '20240101000000_a',
      '20240102000000_b',
      '20240103000000_c',
    ]);
    expect(selectUp(items, known, { to: '20240102000000_b' }).map((i) => i.name)).toEqual([
      '20240101000000_a',
      '20240102000000_b',
    ]);
    expect(selectUp(items, known, { step: 1 }).map((i) => i.name)).toEqual(['20240101000000_a']);
    expect(() => selectUp(items, known, { to: 'nope' })).toThrow(/no such migration/);
  });
  it('down: newest first; --step; --to keeps the named one', () => {
    const applied = ['20240101000000_a', '20240102000000_b', '20240103000000_c'];
    expect(selectDown(applied, {})).toEqual(['20240103000000_c']);
    expect(selectDown(applied, { step: 2 })).toEqual(['20240103000000_c', '20240102000000_b']);
    expect(selectDown(applied, { to: '20240101000000_a' })).toEqual(['20240103000000_c', '20240102000000_b']);
    expect(() => selectDown(applied, { to: '20240109000000_x' })).toThrow(/not applied/);
  });
  it('schema before data at the same timestamp; older pending schema blocks a data migration', () => {
    expect(
      compareTimeline({ kind: 'data', name: '20240101000000_x' }, { kind: 'schema', name: '20240101000000_y' }),
    ).toBe(1);
    expect(olderPendingSchema('20240102000000_d', ['20240103000000_s', '20240101000000_s'])).toEqual([
      '20240101000000_s',
    ]);
  });
});

describe('CLI helpers', () => {
  it('identifies the CI job and formats timestamps', () => {
    expect(
      ciJobOf({ GITHUB_ACTIONS: 'true', GITHUB_RUN_ID: '7', GITHUB_REPOSITORY: 'o/r', GITHUB_JOB: 'deploy' }),
    ).toBe('https://github.com/o/r/actions/runs/7 job deploy');
    expect(ciJobOf({ CI_JOB_URL: 'https://gitlab/j/1' })).toBe('https://gitlab/j/1');
    expect(ciJobOf({})).toBeUndefined();
    expect(utcTimestamp(new Date('2024-03-04T05:06:07Z'))).toBe('20240304050607');
  });
});
