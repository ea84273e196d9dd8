/** Run the built dbops as a child process, as a user would, and capture what it printed. */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/dbops.js', import.meta.url));
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  input?: string;
  timeoutMs?: number;
}

/** A clean environment: no inherited DATABASE_URL/REDIS_URL etc., CI unset unless given. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of ['PATH', 'HOME', 'LANG', 'TMPDIR']) if (process.env[k]) env[k] = process.env[k] as string;
  env.NO_COLOR = '1';
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

/** Start the CLI as a child process that a test can signal; `done` resolves when it has exited, `output()` is what it printed so far. */
export function startDbops(args: string[], opts: CliOptions = {}): StartedProcess {
  return startNode([BIN, ...args], opts);
}

export interface StartedProcess {
  child: ChildProcess;
  done: Promise<CliResult>;
  output: () => string;
}

/** `node <nodeArgs>` as a child process, its output collected. */
export function startNode(nodeArgs: string[], opts: CliOptions = {}): StartedProcess {
  const child = spawn(process.execPath, nodeArgs, {
    cwd: opts.cwd ?? ROOT,
    env: opts.env ?? cleanEnv(),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdin?.end(opts.input ?? '');
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done, output: () => `${stdout}${stderr}` };
}

/** Run the CLI to completion (killed after `timeoutMs`, default 60 s). */
export async function runDbops(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  const { child, done } = startDbops(args, opts);
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  try {
    return await done;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Run the CLI on a real pseudo-terminal (script(1)) and type `answer` at its [y/N] prompt: what a
 * person at a terminal sees and does. `env` is a clean environment with what the command needs.
 */
export function runOnTerminal(
  args: string[],
  opts: { env: Record<string, string>; answer: string; cwd?: string },
): Promise<{ code: number | null; out: string }> {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const vars = Object.entries(opts.env)
    .filter(([k]) => !['PATH', 'HOME', 'LANG', 'TMPDIR'].includes(k))
    .map(([k, v]) => `${k}=${quote(v)}`)
    .join(' ');
  const cmd = `stty cols 120 rows 40; ${vars} ${quote(process.execPath)} ${quote(BIN)} ${args.map(quote).join(' ')}`;
  return new Promise((resolve) => {
    const child = spawn('script', ['-qec', cmd, '/dev/null'], {
      cwd: opts.cwd ?? ROOT,
      env: cleanEnv(),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (/\[y\/N\]/.test(out) && !child.stdin.writableEnded) child.stdin.end(`${opts.answer}\n`);
    });
    child.on('close', (code) => resolve({ code, out }));
  });
}
