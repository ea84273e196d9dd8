/**
 * Another Prisma version, installed from npm at test time (never committed): a folder in the test
 * cache (test/helpers/test-cache.ts) with `prisma`, `@prisma/client` and `@prisma/adapter-pg` of
 * that version and the client generated from a given schema, once per version and schema. Offline
 * the Prisma CLI would download native engines: the schema engine is dbops' shim, and generate gets
 * a placeholder query engine library path (a client with engineType "client" never loads one).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { cachedDir, TEST_CACHE } from './test-cache.js';

const run = promisify(execFile);
export const ROOT = resolve(import.meta.dirname, '..', '..');
export const SHIM = join(ROOT, 'scripts', 'prisma-engine-shim.mjs');

export interface PrismaInstall {
  /** The folder holding node_modules (link it into a project as its node_modules). */
  dir: string;
  version: string;
  /** Runs this version's CLI in `cwd`, offline. */
  prisma(cwd: string, args: string[], env?: Record<string, string>): Promise<{ stdout: string; stderr: string }>;
}

/** `prisma@version` (+ client, adapter-pg, pg) with the client generated from `schema`. */
export async function installPrisma(
  version: string,
  schema: string,
  packages: string[] = ['@prisma/adapter-pg', 'pg'],
): Promise<PrismaInstall> {
  const key = createHash('sha256')
    .update(`${version}\n${packages.join(',')}\n${schema}`)
    .digest('hex')
    .slice(0, 12);
  const dir = join(TEST_CACHE, `prisma-${version}-${key}`);
  const placeholder = join(dir, 'no-query-engine.so.node');
  const install: PrismaInstall = {
    dir,
    version,
    prisma: (cwd, args, env = {}) =>
      run(process.execPath, [join(dir, 'node_modules', 'prisma', 'build', 'index.js'), ...args], {
        cwd,
        timeout: 120_000,
        env: {
          PATH: process.env.PATH ?? '',
          HOME: process.env.HOME ?? '',
          PRISMA_SCHEMA_ENGINE_BINARY: SHIM,
          PRISMA_QUERY_ENGINE_LIBRARY: placeholder,
          PRISMA_HIDE_UPDATE_MESSAGE: '1',
          CHECKPOINT_DISABLE: '1',
          NO_COLOR: '1',
          ...env,
        },
      }),
  };
  await cachedDir(`prisma-${version}-${key}`, async (into) => {
    mkdirSync(join(into, 'prisma'));
    writeFileSync(join(into, 'package.json'), JSON.stringify({ name: 'dbops-test-prisma-app', private: true }));
    const specs = ['prisma', '@prisma/client', ...packages].map((p) =>
      p.startsWith('@prisma/') || p === 'prisma' ? `${p}@${version}` : p === 'pg' ? 'pg@8' : p,
    );
    await run(
      'npm',
      ['install', '--no-audit', '--no-fund', '--ignore-scripts', '--no-package-lock', '--loglevel=error', ...specs],
      {
        cwd: into,
        timeout: 600_000,
      },
    );
    writeFileSync(placeholder, '');
    writeFileSync(join(into, 'prisma', 'schema.prisma'), schema);
    await install.prisma(into, ['generate'], { DATABASE_URL: 'postgresql://generate@127.0.0.1:9/none' });
  });
  return install;
}

/** A throwaway copy of a fixture application, with the install's node_modules linked in. */
export async function appFrom(fixture: string, install: PrismaInstall): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'dbops-app-'));
  cpSync(fixture, dir, { recursive: true });
  symlinkSync(join(install.dir, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}
