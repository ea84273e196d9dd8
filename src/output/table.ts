/**
 * Every table dbops prints, fitted to the terminal: the one place that knows the width. At a
 * terminal the width is its columns (COLUMNS overrides); piped, there is no limit unless COLUMNS is
 * set, so a log or a grep keeps every cell whole. A table wider than that first shrinks its widest
 * columns, cutting cells with an ellipsis; then drops the columns its caller marked droppable;
 * then, as psql's `\x auto` does, turns into one block of `column │ value` lines per row. No
 * separators between rows. Widths are display widths (string-width), not `.length`.
 */
import { stripVTControlCharacters } from 'node:util';
import Table from 'cli-table3';
import cliTruncate from 'cli-truncate';
import stringWidth from 'string-width';
import { getTableWidth } from './width.js';

export { decideTableWidth, setTableWidth } from './width.js';

export interface TableOptions {
  head: string[];
  rows: Array<Array<string | number | null | undefined>>;
  colour: boolean;
  /** Right-align these column indexes (numbers). */
  alignRight?: number[];
  /** Column indexes that may be left out when the table does not fit, the first given first. */
  droppable?: number[];
  /** Column indexes never cut shorter than their header or their longest cell (e.g. a name). */
  keep?: number[];
  /** The width to fit instead of the command's (tests). */
  width?: number;
}

/** A cell is cut to no less than this (or its own width, if smaller). */
const MIN_CELL = 8;
/** Before cutting every column that far, columns are dropped to keep cells this readable. */
const COMFORT = 24;

function cellText(cell: string | number | null | undefined): string {
  return cell === null || cell === undefined ? '' : String(cell);
}

/** The display width of a (possibly multi-line, possibly coloured) cell. */
function widthOf(text: string): number {
  let w = 0;
  for (const line of text.split('\n')) w = Math.max(w, stringWidth(line));
  return w;
}

/** Each line of a cell cut to `width` display columns, with an ellipsis. */
function cut(text: string, width: number): string {
  return text
    .split('\n')
    .map((line) => (stringWidth(line) > width ? cliTruncate(line, width, { position: 'end' }) : line))
    .join('\n');
}

/** Total width of a table whose columns are `widths` wide: "│ a │ b │". */
function total(widths: number[]): number {
  return widths.reduce((sum, w) => sum + w + 3, 1);
}

/**
 * Widths that fit `limit`: every column at most `cap` (never under its minimum), the largest cap
 * that fits; undefined when even the minimums do not fit.
 */
function fitWidths(natural: number[], minimum: number[], limit: number): number[] | undefined {
  const at = (cap: number) => natural.map((w, i) => Math.min(w, Math.max(minimum[i] ?? 0, cap)));
  if (total(at(0)) > limit) return undefined;
  let lo = 0;
  let hi = Math.max(...natural, 0);
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (total(at(mid)) <= limit) lo = mid;
    else hi = mid - 1;
  }
  return at(lo);
}

/**
 * cli-table3 draws the same rule under the header and between rows (its `mid` characters serve
 * both): keep the first, under the header, and drop the others.
 */
function withoutRowRules(text: string, keepFirst = true): string {
  let seen = !keepFirst;
  return text
    .split('\n')
    .filter((line) => {
      if (!stripVTControlCharacters(line).startsWith('├')) return true;
      if (seen) return false;
      seen = true;
      return true;
    })
    .join('\n');
}

function draw(head: string[], rows: string[][], colour: boolean, align: Array<'left' | 'right'>): string {
  const table = new Table({
    head,
    style: colour ? { head: ['cyan'], border: ['grey'] } : { head: [], border: [] },
    colAligns: align,
    wordWrap: false,
  });
  for (const row of rows) table.push(row);
  return withoutRowRules(table.toString());
}

/** psql's expanded display: one block per row, `column │ value`, values cut to the width. */
function vertical(head: string[], rows: string[][], limit: number): string {
  const keyWidth = Math.max(...head.map((h) => stringWidth(h)));
  const valueWidth = Math.max(MIN_CELL, limit - keyWidth - 3);
  const out: string[] = [];
  rows.forEach((row, r) => {
    const title = `-[ row ${r + 1} ]`;
    out.push(`${title}${'-'.repeat(Math.max(0, Math.min(limit, keyWidth + 3 + valueWidth) - title.length))}`);
    head.forEach((h, i) => {
      const lines = cut(row[i] ?? '', valueWidth).split('\n');
      lines.forEach((line, j) => {
        out.push(`${(j === 0 ? h : '').padEnd(keyWidth + (j === 0 ? h.length - stringWidth(h) : 0))} │ ${line}`);
      });
    });
  });
  return out.join('\n');
}

/** A table that fits the width (see the module comment). */
export function renderTable(opts: TableOptions): string {
  const limit = opts.width ?? getTableWidth();
  const allRows = opts.rows.map((row) => opts.head.map((_, i) => cellText(row[i])));
  const align = opts.head.map((_, i): 'left' | 'right' => (opts.alignRight?.includes(i) ? 'right' : 'left'));
  if (limit === undefined) return draw(opts.head, allRows, opts.colour, align);

  const keep = new Set(opts.keep ?? []);
  const natural = opts.head.map((h, i) => Math.max(widthOf(h), ...allRows.map((row) => widthOf(row[i] ?? ''))));
  const drop = opts.droppable ?? [];
  // First every column at a readable width, leaving out droppable columns one by one; then the
  // same with cells cut shorter, down to MIN_CELL; then the vertical layout.
  for (const floor of [COMFORT, 16, 12, MIN_CELL]) {
    for (let k = 0; k <= drop.length; k++) {
      const gone = new Set(drop.slice(0, k));
      const cols = opts.head.map((_, i) => i).filter((i) => !gone.has(i));
      const nat = cols.map((i) => natural[i] ?? 0);
      const minimum = cols.map((i, j) => (keep.has(i) ? (nat[j] ?? 0) : Math.min(nat[j] ?? 0, floor)));
      const widths = fitWidths(nat, minimum, limit);
      if (!widths) continue;
      const w = (j: number) => widths[j] ?? MIN_CELL;
      return draw(
        cols.map((i, j) => cut(opts.head[i] ?? '', w(j))),
        allRows.map((row) => cols.map((i, j) => cut(row[i] ?? '', w(j)))),
        opts.colour,
        cols.map((i) => align[i] ?? 'left'),
      );
    }
  }
  return vertical(opts.head, allRows, limit);
}

/** Two-column key/value table, for summaries: the value column cut to the width. */
export function renderKeyValue(pairs: Array<[string, string | number | null | undefined]>, colour: boolean): string {
  const limit = getTableWidth();
  const keyWidth = Math.max(0, ...pairs.map(([k]) => stringWidth(k)));
  const valueWidth = limit === undefined ? undefined : Math.max(MIN_CELL, limit - keyWidth - 7);
  const table = new Table({ style: colour ? { head: [], border: ['grey'] } : { head: [], border: [] } });
  for (const [k, v] of pairs) {
    const text = cellText(v);
    table.push({ [k]: valueWidth === undefined ? text : cut(text, valueWidth) });
  }
  return withoutRowRules(table.toString(), false);
}
