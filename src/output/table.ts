import Table from 'cli-table3';

export interface TableOptions {
  head: string[];
  rows: Array<Array<string | number | null | undefined>>;
  colour: boolean;
  /** Right-align these column indexes (numbers). */
  alignRight?: number[];
}

/** A cli-table3 table; without colour an empty style, since cli-table3 colours even off a TTY. */
export function renderTable(opts: TableOptions): string {
  const table = new Table({
    head: opts.head,
    style: opts.colour ? { head: ['cyan'], border: ['grey'] } : { head: [], border: [] },
    colAligns: opts.head.map((_, i) => (opts.alignRight?.includes(i) ? 'right' : 'left')),
    wordWrap: false,
  });
  for (const row of opts.rows) table.push(row.map((c) => (c === null || c === undefined ? '' : String(c))));
  return table.toString();
}

/** Two-column key/value table, for summaries. */
export function renderKeyValue(pairs: Array<[string, string | number | null | undefined]>, colour: boolean): string {
  const table = new Table({ style: colour ? { head: [], border: ['grey'] } : { head: [], border: [] } });
  for (const [k, v] of pairs) table.push({ [k]: v === null || v === undefined ? '' : String(v) });
  return table.toString();
}
