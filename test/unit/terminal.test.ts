import { describe, expect, it } from 'vitest';
import { durationArg, intArg } from '../../src/cli/options.js';
import { decideTerminal } from '../../src/output/terminal.js';

const base = { env: {}, stdoutIsTTY: true, stderrIsTTY: true, stdinIsTTY: true, json: false, noColorFlag: false, quiet: false };

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
