/**
 * Helpers of the reliability suites (race, kill, rollback) and the guard tests: the ledger read
 * through dbops' own API (so the tests hold wherever the ledger lives), pg_dump fingerprints, and
 * figures written for docs/reliability.md.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { MigrationRunner } from '../../src/index.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..', '..');

/** Names of the data migrations in `dir` that the ledger of `url` records as applied. */
export async function appliedNames(url: string, dir: string): Promise<string[]> {
  const r = new MigrationRunner({ connectionString: url, migrationsDir: dir, prismaMigrationsDir: false, cwd: ROOT });
  try {
    const status = await r.status();
    return status.entries.filter((e) => e.state === 'applied').map((e) => e.name);
  } finally {
    await r.close();
  }
}

/**
 * sha256 of `pg_dump --data-only` and of `--schema-only` (Debian's pg_dump 15: run against a
 * PostgreSQL 15 database). Lines that differ on every run are left out: pg_dump's random
 * `\restrict` key, and sequence positions (`setval`): nextval() is not transactional in PostgreSQL,
 * so a rolled-back INSERT moves a sequence on; that is the server's doing, not a change a migration made.
 */
export async function dumpHashes(url: string): Promise<{ data: string; schema: string }> {
  const dump = async (what: string) => {
    const { stdout } = await run('pg_dump', [what, '--no-owner', '--no-privileges', '-d', url], {
      maxBuffer: 64 * 1024 * 1024,
    });
    const kept = stdout
      .split('\n')
      .filter((l) => !/^\\(un)?restrict /.test(l) && !/^SELECT pg_catalog\.setval\(/.test(l));
    return createHash('sha256').update(kept.join('\n')).digest('hex');
  };
  return { data: await dump('--data-only'), schema: await dump('--schema-only') };
}

/** Where the suites write their figures (read by whoever updates docs/reliability.md). */
export function writeFigures(suite: string, figures: Record<string, unknown>): void {
  const dir = join(ROOT, 'node_modules', '.cache', 'dbops-reliability');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, `${suite}.json`),
    `${JSON.stringify({ suite, at: new Date().toISOString(), ...figures }, null, 2)}\n`,
  );
  process.stderr.write(`${suite}: ${JSON.stringify(figures)}\n`);
}

/** The median of some numbers (0 for none). */
export function median(values: number[]): number {
  if (values.length === 0) return 0;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** A small seeded generator (mulberry32): the kill suites draw their kill points from it, so a seed replays a run. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
