/**
 * Child processes for the benchmarks: a command run to its end, and the Redis PING prober that
 * measures the server's latency while a workload runs (bench/lib/ping-prober.mjs).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface RunOptions {
  input?: Buffer | string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Runs `cmd` to its end: its exit code and what it wrote. */
export function sh(
  cmd: string,
  args: string[],
  opts: RunOptions = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

/** PING round trips seen by the prober, in ms. */
export interface Probe {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

const proberPath = fileURLToPath(new URL('./ping-prober.mjs', import.meta.url));

/** Starts PINGing the Redis on `port`; the returned function stops it and gives its figures. */
export async function startProber(port: number): Promise<() => Promise<Probe>> {
  const child = spawn(process.execPath, [proberPath, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  await new Promise<void>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready\n')) resolve();
    });
  });
  out = '';
  return () =>
    new Promise((resolve) => {
      child.on('close', () => resolve(JSON.parse(out.replace('ready\n', '')) as Probe));
      child.kill('SIGTERM');
    });
}
