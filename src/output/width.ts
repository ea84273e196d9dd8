/**
 * The width tables must fit, decided once per command by the CLI. Apart from table.ts so that
 * deciding it loads nothing heavy (`dbops --help` loads no cli-table3).
 */
let tableWidth: number | undefined;

/** The width tables must fit (undefined: no limit). Set once per command by the CLI. */
export function setTableWidth(width: number | undefined): void {
  tableWidth = width !== undefined && Number.isFinite(width) && width > 0 ? Math.floor(width) : undefined;
}

export function getTableWidth(): number | undefined {
  return tableWidth;
}

/**
 * The width to fit: COLUMNS when it is a positive number, else the terminal's columns when stdout
 * is a terminal, else none (piped output keeps whole cells).
 */
export function decideTableWidth(
  env: Record<string, string | undefined>,
  stdout: { isTTY?: boolean; columns?: number },
): number | undefined {
  const fromEnv = Number(env.COLUMNS);
  if (env.COLUMNS && Number.isInteger(fromEnv) && fromEnv > 0) return fromEnv;
  if (stdout.isTTY && stdout.columns && stdout.columns > 0) return stdout.columns;
  return undefined;
}
