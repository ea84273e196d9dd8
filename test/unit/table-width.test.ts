/**
 * Tables fit the terminal (issue 13): at 80, 100 and 140 columns every line of a status or
 * slow-queries table fits (display width, not .length), the key columns survive, cells are cut with
 * an ellipsis, there is no separator between rows, and a table that cannot fit turns vertical.
 */
import { Chalk } from 'chalk';
import stringWidth from 'string-width';
import { afterEach, describe, expect, it } from 'vitest';
import type { StatusResult } from '../../src/migrations/types.js';
import { renderStatus } from '../../src/output/migrate.js';
import { SLOW_TABLE } from '../../src/output/slow.js';
import { decideTableWidth, renderTable, setTableWidth } from '../../src/output/table.js';

const paint = new Chalk({ level: 0 });
const WIDTHS = [80, 100, 140];

afterEach(() => setTableWidth(undefined));

function expectFits(text: string, width: number): void {
  for (const line of text.split('\n')) expect(stringWidth(line), line).toBeLessThanOrEqual(width);
}

const slowRows = Array.from({ length: 12 }, (_, i) => [
  String(i + 1),
  i % 3 === 0 ? 'slow' : '',
  '1,234,567',
  '12.3 min',
  '412.5 ms',
  '9.81 s',
  '88.2 ms',
  '1.0',
  '12.5%',
  '99.8%',
  '1,024',
  'application_user',
  'User.findMany',
  `SELECT "public"."User"."id", "public"."User"."email", "public"."User"."name" FROM "public"."User" WHERE "public"."User"."id" = $${i} — ünïcödé 日本語`,
]);

describe('renderTable at a terminal width', () => {
  for (const width of WIDTHS) {
    it(`slow-queries at ${width} columns: every line fits, #, calls, mean and the query survive, no row separators`, () => {
      const text = renderTable({ ...SLOW_TABLE, rows: slowRows, colour: false, width });
      expectFits(text, width);
      const [, header] = text.split('\n');
      for (const key of ['#', 'calls', 'mean', 'query']) expect(header).toContain(key);
      expect(text).toContain('412.5 ms');
      expect(text).toContain('SELECT "public"');
      expect(text).toContain('…');
      // top border, header, header rule, 12 rows, bottom border: no line between rows
      expect(text.split('\n')).toHaveLength(12 + 4);
    });

    it(`migrate status at ${width} columns: the name is never cut, the description is, every line fits`, () => {
      setTableWidth(width);
      const entry = (name: string, state: 'applied' | 'pending') => ({
        kind: 'data' as const,
        name,
        timestamp: name.slice(0, 14),
        state,
        transactional: true,
        description:
          'Backfill the normalised e-mail address of every user and order, in batches of 5,000 rows, keeping the old column',
        appliedAt: state === 'applied' ? new Date('2026-12-01T10:00:00Z') : null,
        appliedBy: state === 'applied' ? 'deploy@ci-runner-7 (https://ci.example.com/jobs/123456)' : null,
        durationMs: null,
        markedOnly: false,
      });
      const status: StatusResult = {
        entries: [
          entry('20240101000000_add_user_roles', 'applied'),
          entry('20260301000000_backfill_normalised_email_addresses', 'pending'),
        ],
        counts: { applied: 1, pending: 1, changed: 0, missing: 0, 'out-of-order': 0 },
        drift: [],
        ledgerExists: true,
        problems: [],
        backfills: [],
        ledger: { location: 'dbops.data_migrations', legacy: null },
        invalidations: { owed: [], done: [] },
      };
      const text = renderStatus(status, paint, false);
      const table = text.split('\n').filter((l) => /^[┌│├└]/.test(l));
      expectFits(table.join('\n'), width);
      expect(text).toContain('20260301000000_backfill_normalised_email_addresses');
      expect(text).toMatch(/Backfill the/);
      expect(text).toContain('pending');
    });
  }

  it('turns vertical, as psql \\x auto does, when even the narrowest columns do not fit', () => {
    const head = Array.from({ length: 10 }, (_, i) => `column ${i}`);
    const rows = [head.map((_, i) => `value number ${i} which is long`)];
    const text = renderTable({ head, rows, colour: false, keep: head.map((_, i) => i), width: 60 });
    expectFits(text, 60);
    expect(text.split('\n')[0]).toMatch(/^-\[ row 1 \]-+$/);
    expect(text).toContain('column 9 │ value number 9 which is long');
  });

  it('draws every cell whole, and no row separators, without a width', () => {
    const text = renderTable({
      head: ['a', 'b'],
      rows: [
        ['x'.repeat(300), 'y'],
        ['z', 'w'],
      ],
      colour: false,
    });
    expect(text).toContain('x'.repeat(300));
    expect(text.split('\n')).toHaveLength(2 + 4);
  });
});

describe('decideTableWidth', () => {
  it('honours COLUMNS, then the terminal; piped output has no limit', () => {
    expect(decideTableWidth({ COLUMNS: '90' }, { isTTY: false })).toBe(90);
    expect(decideTableWidth({ COLUMNS: '90' }, { isTTY: true, columns: 140 })).toBe(90);
    expect(decideTableWidth({}, { isTTY: true, columns: 140 })).toBe(140);
    expect(decideTableWidth({}, { isTTY: false })).toBeUndefined();
    expect(decideTableWidth({ COLUMNS: 'wide' }, { isTTY: false })).toBeUndefined();
  });
});
