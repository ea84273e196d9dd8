#!/usr/bin/env node
// `npm run bench [-- name ...]`: runs bench/<name>/run.ts for each name (all when none given),
// each printing its own table with ratios against a reference measured in the same run.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const all = readdirSync(join(root, 'bench'), { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(root, 'bench', d.name, 'run.ts')))
  .map((d) => d.name)
  .sort();
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const unknown = wanted.filter((w) => !all.includes(w));
if (unknown.length) {
  console.error(`unknown benchmark(s): ${unknown.join(', ')}; available: ${all.join(', ')}`);
  process.exit(2);
}
if (!existsSync(join(root, 'dist/src/cli/main.js'))) {
  console.error('dbops is not built: run npm run build first');
  process.exit(2);
}
let failed = 0;
for (const name of wanted.length ? wanted : all) {
  console.log(`\n=== bench/${name}`);
  const r = spawnSync(
    join(root, 'node_modules/.bin/jiti'),
    [join(root, 'bench', name, 'run.ts'), ...process.argv.slice(2).filter((a) => a.startsWith('-'))],
    {
      stdio: 'inherit',
      cwd: root,
    },
  );
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
