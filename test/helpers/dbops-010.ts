/**
 * dbops 0.1.0 as released (the repository's commit bb1e798), run from its own source through jiti:
 * to make real 0.1.0 databases, and to run a 0.1.0 runner beside the current one. The source comes
 * from this repository's history (`git archive`) into the test cache; it runs on this checkout's
 * node_modules. A clone without that history (shallow) cannot: `dbops010()` then says why.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { type StartedProcess, startNode } from './cli.js';
import { cachedDir } from './test-cache.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..', '..');
export const DBOPS_010_COMMIT = 'bb1e798499995dca71f8bc91e82e3eca1f07901d';

export interface OldDbops {
  /** Starts `dbops <args>` of 0.1.0; `output()` is what it printed so far. */
  start(args: string[], opts: { cwd: string; env: Record<string, string> }): StartedProcess;
}

/** The 0.1.0 CLI, or why it cannot run here. */
export async function dbops010(): Promise<OldDbops | { unavailable: string }> {
  try {
    await run('git', ['-C', ROOT, 'cat-file', '-e', `${DBOPS_010_COMMIT}^{commit}`]);
  } catch {
    return {
      unavailable: `commit ${DBOPS_010_COMMIT.slice(0, 7)} (dbops 0.1.0) is not in this clone's history (shallow clone?)`,
    };
  }
  const dir = await cachedDir(join('dbops-0.1.0', DBOPS_010_COMMIT.slice(0, 12)), async (into) => {
    await run('sh', ['-c', `git -C "${ROOT}" archive ${DBOPS_010_COMMIT} src | tar -x -C "${into}"`]);
    writeFileSync(join(into, 'run.mts'), `import { main } from './src/cli/main.ts';\nawait main(process.argv);\n`);
  });
  const jiti = pathToFileURL(join(ROOT, 'node_modules', 'jiti', 'lib', 'jiti-register.mjs')).href;
  return {
    start: (args, opts) => startNode(['--import', jiti, join(dir, 'run.mts'), ...args], opts),
  };
}
