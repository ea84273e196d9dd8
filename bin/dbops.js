#!/usr/bin/env -S node --max-semi-space-size=1
// The dbops executable: loads the built CLI and nothing else. A 1 MB young generation keeps memory
// flat on long runs (a 2M-key cache flush peaked at 92-95 MB RSS instead of 118 MB, at the same speed).
import('../dist/src/cli/main.js').then(
  (cli) => cli.main(process.argv),
  (error) => {
    if (error && error.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('dist/src/cli/main.js')) {
      process.stderr.write('dbops: not built yet; run `npm run build` (or `npm install`) in the dbops folder\n');
    } else {
      process.stderr.write(`dbops: failed to start: ${error && error.message}\n`);
    }
    process.exit(1);
  },
);
