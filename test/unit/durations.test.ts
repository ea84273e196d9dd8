/**
 * Every duration option accepts the same forms (issue 13): a bare number is milliseconds, and
 * `500ms`, `5s`, `2m`, `1h` are accepted by `--long-ms` as by `--lock-timeout`. Read from the real
 * commander definitions, so an option added later with its own parser is caught here.
 */
import type { Command, Option } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/program.js';
import { Redactor } from '../../src/config/redact.js';

function allCommands(c: Command): Command[] {
  return [c, ...c.commands.flatMap(allCommands)];
}

function durationOptions(): Array<{ command: string; option: Option }> {
  const sink = { write: () => true };
  const program = buildProgram(
    { stdout: sink as never, stderr: sink as never, env: {}, cwd: '/' },
    { output: undefined, redactor: new Redactor(), graceful: false },
  );
  return allCommands(program).flatMap((c) =>
    c.options
      .filter((o) => /-ms$|-timeout$|^--timeout$/.test(o.long ?? ''))
      .map((option) => ({ command: c.name(), option })),
  );
}

describe('duration options', () => {
  const options = durationOptions();
  it('are found (--long-ms, --lock-timeout, --pause-ms, --min-mean-ms ...)', () => {
    const names = new Set(options.map((o) => o.option.long));
    for (const n of [
      '--long-ms',
      '--lock-timeout',
      '--pause-ms',
      '--min-mean-ms',
      '--slow-ms',
      '--statement-timeout',
      '--target-batch-ms',
    ]) {
      expect(names, n).toContain(n);
    }
  });
  for (const { command, option } of durationOptions()) {
    it(`${command} ${option.long} takes 5s, 5000ms and 5000 alike`, () => {
      const parse = (v: string) => (option.parseArg as (v: string, prev: unknown) => number)(v, undefined);
      expect(parse('5s')).toBe(5000);
      expect(parse('5000ms')).toBe(5000);
      expect(parse('5000')).toBe(5000);
      expect(() => parse('5 parsecs')).toThrow(/duration such as/);
    });
  }
});
