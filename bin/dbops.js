#!/usr/bin/env node
// The dbops executable: loads the built CLI and nothing else.
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
