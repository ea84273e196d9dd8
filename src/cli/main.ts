/**
 * The process entry point: wires the real streams and signals into runCli and sets the exit code.
 * The only place an exit code reaches the process.
 */
import { ExitCode } from '../errors.js';
import { runCli } from './program.js';

export async function main(argv: string[] = process.argv): Promise<void> {
  const controller = new AbortController();
  const cleanups = new Set<() => void>();
  let signals = 0;
  const stopNow = () => {
    for (const cleanup of cleanups) cleanup();
    process.exit(ExitCode.Interrupted);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    // First Ctrl-C: ask the running operation to stop after its current step (runCli says so, and
    // calls stopNow when the command has no step to finish); the second ends the process.
    if (signals === 1) controller.abort(signal);
    else stopNow();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A closed pipe (dbops ... | head) is not an error worth a stack trace.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  });
  const code = await runCli(argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    cwd: process.cwd(),
    signal: controller.signal,
    cleanups,
    stopNow,
  });
  // Some libraries keep timers alive (the Prisma wasm engine for ~10 s); dbops has finished.
  const exit = () => process.exit(code);
  if (process.stdout.writableNeedDrain) process.stdout.once('drain', exit);
  else exit();
}
