import { describe, expect, it } from 'vitest';
import { durationArg, intArg } from '../../src/cli/options.js';
import { Redactor } from '../../src/config/redact.js';
import { fitLine, foldLine, Output } from '../../src/output/output.js';
import { decideTerminal } from '../../src/output/terminal.js';
import { setTableWidth } from '../../src/output/width.js';

const base = {
  env: {},
  stdoutIsTTY: true,
  stderrIsTTY: true,
  stdinIsTTY: true,
  json: false,
  noColorFlag: false,
  quiet: false,
};

describe('decideTerminal', () => {
  it('colours and animates on a TTY', () => {
    expect(decideTerminal(base)).toEqual({ colour: true, animate: true, interactive: true });
  });
  it('NO_COLOR and --no-color switch colour off; FORCE_COLOR switches it on off a TTY', () => {
    expect(decideTerminal({ ...base, env: { NO_COLOR: '1' } }).colour).toBe(false);
    expect(decideTerminal({ ...base, noColorFlag: true }).colour).toBe(false);
    expect(decideTerminal({ ...base, stdoutIsTTY: false, env: { FORCE_COLOR: '1' } }).colour).toBe(true);
    expect(decideTerminal({ ...base, stdoutIsTTY: false }).colour).toBe(false);
    // stderr redirected to a log file: no escape codes in it
    expect(decideTerminal({ ...base, stderrIsTTY: false }).colour).toBe(false);
  });
  it('never animates with --json, in CI or when stderr is piped', () => {
    expect(decideTerminal({ ...base, json: true }).animate).toBe(false);
    expect(decideTerminal({ ...base, env: { CI: 'true' } }).animate).toBe(false);
    expect(decideTerminal({ ...base, stderrIsTTY: false }).animate).toBe(false);
  });
});

describe('option parsers', () => {
  it('intArg range-checks', () => {
    expect(intArg(1, 10)('5')).toBe(5);
    expect(() => intArg(1, 10)('0')).toThrow(/from 1 to 10/);
    expect(() => intArg(1)('x')).toThrow(/whole number/);
  });
  it('durationArg understands units', () => {
    expect(durationArg('250')).toBe(250);
    expect(durationArg('5s')).toBe(5000);
    expect(durationArg('2m')).toBe(120000);
    expect(() => durationArg('soon')).toThrow(/duration/);
  });
});

describe('a --watch frame at a terminal', () => {
  const make = (rows: number, columns: number) => {
    let written = '';
    const stdout = { isTTY: true, rows, columns, write: (s: string) => (written += s) };
    const out = new Output({
      stdout,
      stderr: { isTTY: true, write: () => true },
      json: false,
      quiet: false,
      verbose: false,
      terminal: { colour: false, animate: true, interactive: true },
      redactor: new Redactor(),
      env: {},
    });
    const take = () => {
      const bytes = written;
      written = '';
      return bytes;
    };
    return { out, take };
  };
  const screenOf = (bytes: string) =>
    bytes
      .slice(bytes.lastIndexOf('\x1b[H') + 3)
      .replace(/\x1b\[J$/, '')
      .split('\x1b[K\n')
      .map((l) => l.replace(/\x1b\[K$/, ''));

  it('enters the alternate screen once, fits the window (head folded, the rest cut, "… N more lines"), and restores the screen', () => {
    const { out, take } = make(8, 40);
    const body = Array.from({ length: 20 }, (_, i) => `row ${i} ${'x'.repeat(60)}`).join('\n');
    out.frame(body, 'clock\nheadroom  max_connections 100 - reserved 3 - in use 7 = 90 free');
    const first = take();
    expect(first.startsWith('\x1b[?1049h\x1b[?25l')).toBe(true);
    const screen = screenOf(first);
    expect(screen).toHaveLength(8);
    expect(screen[0]).toBe('clock');
    // The headline folds (nothing of it is lost), the body is cut with an ellipsis.
    const firstRow = screen.findIndex((l) => l.includes('row 0'));
    expect(screen.slice(1, firstRow).join(' ').replace(/\s+/g, ' ')).toContain('in use 7 = 90 free');
    expect(screen.every((l) => Array.from(l).length <= 40)).toBe(true);
    expect(screen[firstRow]).toMatch(/^ {2}row 0 x+…$/);
    expect(screen[7]).toMatch(new RegExp(`… ${20 - (7 - firstRow)} more lines`));
    out.frame(body.replace('row 1 ', 'row 1 changed '), 'clock');
    const second = screenOf(take());
    expect(second.filter((l) => l.startsWith('▌'))).toEqual([expect.stringMatching(/^▌ row 1 changed/)]);
    out.restoreTerminal();
    expect(take()).toBe('\x1b[?25h\x1b[?1049l');
  });

  it('fitLine keeps escape codes out of the count; foldLine breaks at spaces', () => {
    expect(fitLine('\x1b[1mabcdef\x1b[22m', 4)).toBe('\x1b[1mabc…\x1b[0m');
    expect(fitLine('abcd', 4)).toBe('abcd');
    expect(foldLine('aa bb cc', 5)).toEqual(['aa bb', `${' '.repeat(12)}cc`]);
  });
});

describe('a result wider than the terminal', () => {
  const render = (width: number | undefined, text: string) => {
    let written = '';
    const out = new Output({
      stdout: { isTTY: true, write: (s: string) => (written += s) },
      stderr: { isTTY: true, write: () => true },
      json: false,
      quiet: false,
      verbose: false,
      terminal: { colour: false, animate: false, interactive: true },
      redactor: new Redactor(),
      env: {},
    });
    setTableWidth(width);
    try {
      out.result({}, () => text);
    } finally {
      setTableWidth(undefined);
    }
    return written;
  };
  const long = 'headroom  max_connections 200 − superuser_reserved_connections 3 − in use 1 = 196 free';

  it('folds long lines at spaces with a hanging indent; lines that fit are untouched', () => {
    const lines = render(40, `short line\n${long}\n│ a table row that fits │`).trimEnd().split('\n');
    expect(lines[0]).toBe('short line');
    expect(lines.every((line) => line.length <= 40)).toBe(true);
    expect(lines.slice(1, -1).join(' ').replace(/\s+/g, ' ')).toBe(long.replace(/\s+/g, ' '));
    expect(lines[2]?.startsWith('  ')).toBe(true);
    expect(lines.at(-1)).toBe('│ a table row that fits │');
  });

  it('piped (no width decided): nothing folded', () => {
    expect(render(undefined, long)).toBe(`${long}\n`);
  });
});
