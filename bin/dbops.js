#!/usr/bin/env node
// The dbops executable: loads the built CLI. One exception: a cache flush can walk tens of millions
// of keys, and Node's default young generation lets its memory grow to ~120 MB on 10M keys; with a
// 1 MB young generation it stays near 90 MB at the same speed. V8 takes that flag only at start-up,
// so a flush re-runs itself once with it (a shebang with `env -S` would not work on every system).
const args = process.argv.slice(2);
const flag = '--max-semi-space-size=1';
const isFlush = args.includes('cache') && args.includes('flush') && !args.includes('--help') && !args.includes('-h');

if (isFlush && !process.execArgv.some((a) => a.startsWith('--max-semi-space-size'))) {
  const { spawn } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const child = spawn(process.execPath, [...process.execArgv, flag, fileURLToPath(import.meta.url), ...args], {
    stdio: 'inherit',
  });
  // On a terminal Ctrl-C reaches the whole process group, the child included: forwarding it would
  // count as a second Ctrl-C (abort at once). A signal sent to this process alone is passed on.
  const forward = (signal) => () => {
    if (!(signal === 'SIGINT' && process.stdin.isTTY)) child.kill(signal);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, forward(signal));
  child.on('error', (error) => {
    process.stderr.write(`dbops: failed to start: ${error.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => process.exit(code ?? (signal === 'SIGINT' ? 130 : 1)));
} else {
  import('../dist/src/cli/main.js').then(
    (cli) => cli.main(process.argv),
    (error) => {
      if (error?.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('dist/src/cli/main.js')) {
        process.stderr.write('dbops: not built yet; run `npm run build` (or `npm install`) in the dbops folder\n');
      } else {
        process.stderr.write(`dbops: failed to start: ${error?.message}\n`);
      }
      process.exit(1);
    },
  );
}
