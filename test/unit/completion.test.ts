/**
 * `dbops completion bash|zsh|fish` and `dbops man`, generated from the commander definitions: the
 * bash script completes words in a real bash (COMP_WORDS as readline sets them), zsh and fish
 * parse their scripts when installed, and groff renders the man page without a warning.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bashCompletion, fishCompletion, manPage, zshCompletion } from '../../src/cli/completion.js';
import { buildProgram } from '../../src/cli/program.js';
import { VERSION } from '../../src/cli/version.js';
import { Redactor } from '../../src/config/redact.js';

const sink = { write: () => true };
const program = buildProgram(
  { stdout: sink as never, stderr: sink as never, env: {}, cwd: '/' },
  { output: undefined, redactor: new Redactor(), graceful: false },
);
const dir = mkdtempSync(join(tmpdir(), 'dbops-completion-'));
const has = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** What bash offers for the command line `words` (the last word is the one being completed). */
function complete(words: string[]): string[] {
  const script = file('dbops.bash', bashCompletion(program));
  const array = words.map((w) => `'${w}'`).join(' ');
  const r = spawnSync(
    'bash',
    [
      '--norc',
      '-c',
      `source '${script}'; COMP_WORDS=(${array}); COMP_CWORD=${words.length - 1}; _dbops; printf '%s\\n' "\${COMPREPLY[@]}"`,
    ],
    {
      encoding: 'utf8',
    },
  );
  expect(r.stderr).toBe('');
  return r.stdout.split('\n').filter(Boolean);
}

describe('bash completion (sourced in a real bash)', () => {
  it.skipIf(!has('bash'))('completes commands, subcommands and their options', () => {
    expect(complete(['dbops', 'mig'])).toEqual(['migrate']);
    expect(complete(['dbops', 'migrate', 'u'])).toEqual(['up', 'unlock']);
    expect(complete(['dbops', 'migrate', 'up', '--lock'])).toEqual(['--lock-timeout']);
    expect(complete(['dbops', 'cache', 'flush', '--pa'])).toEqual(['--pause-ms']);
    // a global option and its value before the command do not confuse it
    expect(complete(['dbops', '--database-url', 'postgresql://x/y', 'slow'])).toEqual(['slow-queries', 'slow']);
    // global options are offered everywhere; an alias leads to its command's options
    expect(complete(['dbops', 'locks', '--direct'])).toEqual(['--direct-database-url']);
    expect(complete(['dbops', 'migrate', 'resolve', '--y'])).toEqual(['--yes']);
    expect(complete(['dbops', 'completion', ''])).toEqual([]);
  });
});

describe('zsh and fish completion', () => {
  it.skipIf(!has('zsh'))('zsh -n parses the zsh script', () => {
    const r = spawnSync('zsh', ['-n', file('_dbops', zshCompletion(program))], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
  it.skipIf(!has('fish'))('fish -n parses the fish script', () => {
    const r = spawnSync('fish', ['-n', file('dbops.fish', fishCompletion(program))], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
  it.skipIf(!has('fish'))('fish completes dbops mig<TAB> and cache flush --pa<TAB>', () => {
    const script = file('dbops.fish', fishCompletion(program));
    const ask = (line: string) =>
      spawnSync('fish', ['--no-config', '-c', `source '${script}'; complete -C '${line}'`], { encoding: 'utf8' })
        .stdout.split('\n')
        .map((l) => l.split('\t')[0])
        .filter(Boolean);
    expect(ask('dbops mig')).toEqual(['migrate']);
    expect(ask('dbops cache flush --pa')).toEqual(['--pause-ms']);
  });
  it('the fish script offers every command under its parent', () => {
    const text = fishCompletion(program);
    expect(text).toContain("complete -c dbops -n '__fish_use_subcommand' -a migrate");
    expect(text).toContain(
      "complete -c dbops -n '__fish_seen_subcommand_from migrate; and not __fish_seen_subcommand_from up down status",
    );
    expect(text).toMatch(/-n '__fish_seen_subcommand_from cache; and __fish_seen_subcommand_from flush' -l pause-ms/);
  });
});

describe('the man page', () => {
  const page = manPage(program, '9.9.9');
  it('names every command and option of --help', () => {
    const all = (c: typeof program, path: string[]): string[] => [
      ...c.commands.flatMap((s) => [`dbops ${[...path, s.name()].join(' ')}`, ...all(s, [...path, s.name()])]),
    ];
    for (const title of all(program, [])) expect(page).toContain(`.SS "${title.replace(/-/g, '\\-')}`);
    expect(page).toContain('\\-\\-direct\\-database\\-url');
    expect(page).toContain('\\-\\-long\\-ms');
  });
  it('docs/dbops.1 is the page dbops man prints (npm run man regenerates it)', () => {
    const committed = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'dbops.1'), 'utf8');
    expect(committed).toBe(manPage(program, VERSION));
  });
  it.skipIf(!has('groff'))('renders with groff, without a warning', () => {
    const r = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z'], { input: page, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const text = spawnSync('groff', ['-man', '-Tascii', '-P-cbou'], { input: page, encoding: 'utf8' }).stdout;
    expect(text).toMatch(/dbops migrate up \[options\]|dbops migrate up/);
  });
});
