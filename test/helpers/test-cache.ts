/**
 * Things the tests fetch from npm at test time (another Prisma version, a real application's
 * migration history), kept under node_modules/.cache/dbops-tests/ so a later run reuses them and
 * nothing fetched is ever committed. One process builds an entry while the others wait; an entry
 * whose build was interrupted has no `ready` marker and is built again.
 */
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const TEST_CACHE = join(resolve(import.meta.dirname, '..', '..'), 'node_modules', '.cache', 'dbops-tests');

/** The folder `name` in the test cache, built by `build` (into an empty folder) unless already there. */
export async function cachedDir(name: string, build: (dir: string) => Promise<void>): Promise<string> {
  const dir = join(TEST_CACHE, name);
  const ready = join(dir, 'ready');
  if (existsSync(ready)) return dir;
  const release = await lock(`${dir}.lock`);
  try {
    if (existsSync(ready)) return dir;
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    await build(dir);
    writeFileSync(ready, new Date().toISOString());
    return dir;
  } finally {
    release();
  }
}

/** A directory lock across test processes; one older than 15 minutes is taken as abandoned. */
async function lock(path: string): Promise<() => void> {
  mkdirSync(join(path, '..'), { recursive: true });
  for (;;) {
    try {
      mkdirSync(path);
      return () => rmSync(path, { recursive: true, force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      try {
        if (Date.now() - statSync(path).mtimeMs > 15 * 60_000) rmSync(path, { recursive: true, force: true });
      } catch {
        // released meanwhile
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
