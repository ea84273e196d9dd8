/**
 * Real applications' Prisma migration histories, obtained from the npm registry at test time (the
 * one registry CI reaches) and never committed: `npm pack` downloads the published tarball, its
 * integrity is checked against the pinned one, and the migrations folder is extracted into the
 * test cache (test/helpers/test-cache.ts).
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cachedDir } from './test-cache.js';

const run = promisify(execFile);

export interface HistorySource {
  /** The npm package that publishes the application's prisma/migrations folder. */
  pkg: string;
  version: string;
  /** The registry's sha512 integrity of that tarball, pinned: a republished tarball fails loudly. */
  integrity: string;
  /** The migrations folder inside the package. */
  migrations: string;
  /** The Prisma schema those migrations build, inside the package. */
  schema: string;
  /** The package's licence (package.json), and the application's Prisma major. */
  license: string;
  prisma: 6 | 7;
}

/**
 * The longest MIT/Apache-2.0 Prisma + PostgreSQL history found published on npm (see the report of
 * issue 11 part A for what was checked): the database package of an application on Prisma 6.17.
 */
export const LEGAL_AI_PRISMA_DB: HistorySource = {
  pkg: '@danielcok17/prisma-db',
  version: '1.20.36',
  integrity: 'sha512-BxGjG71pOTbKsNWsdn9etxAfDDMjA3OyJIkN6T+DmWGaK/YtS+F0LqD932kCN4Sc663kx9wBUyu+t5a6hRv3nw==',
  migrations: 'prisma/migrations',
  schema: 'prisma/app.prisma',
  license: 'MIT',
  prisma: 6,
};

/** A real application's migrations folder and the Prisma schema they build. */
export interface History {
  label: string;
  migrations: string;
  schema: string;
}

/** The migrations folder and schema of `source`, fetched once from npm. */
export async function migrationHistory(source: HistorySource): Promise<History> {
  const dir = await cachedDir(
    join('histories', `${source.pkg.replace(/[@/]/g, '_')}-${source.version}-with-schema`),
    async (into) => {
      const { stdout } = await run(
        'npm',
        ['pack', `${source.pkg}@${source.version}`, '--json', '--ignore-scripts', '--pack-destination', into],
        {
          cwd: into,
          timeout: 300_000,
        },
      );
      const [packed] = JSON.parse(stdout) as { filename: string; integrity: string }[];
      if (!packed) throw new Error(`npm pack ${source.pkg}@${source.version} returned nothing`);
      if (packed.integrity !== source.integrity) {
        throw new Error(`${source.pkg}@${source.version}: integrity ${packed.integrity}, expected ${source.integrity}`);
      }
      await run('tar', [
        '-xzf',
        join(into, packed.filename),
        '-C',
        into,
        `package/${source.migrations}`,
        `package/${source.schema}`,
      ]);
      rmSync(join(into, packed.filename));
    },
  );
  return {
    label: `${source.pkg}@${source.version} (${source.license}, Prisma ${source.prisma}, from npm)`,
    migrations: join(dir, 'package', source.migrations),
    schema: join(dir, 'package', source.schema),
  };
}

/**
 * Histories kept outside the repository (never committed: DBOPS_REAL_HISTORIES=<dir>), each a folder
 * `<dir>/<name>/` with `migrations/` and `schema.prisma`; a `LICENSE` or `NOTE` file there is the
 * reader's business. [] when the variable is unset.
 */
export function localHistories(dir: string | undefined): History[] {
  if (!dir) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() || e.isSymbolicLink())
    .map((e) => ({
      label: `${e.name} (from ${dir})`,
      migrations: join(dir, e.name, 'migrations'),
      schema: join(dir, e.name, 'schema.prisma'),
    }))
    .filter((h) => existsSync(h.migrations) && existsSync(h.schema));
}

/** Migration folder names in Prisma's order. */
export function migrationNames(migrationsDir: string): string[] {
  return readdirSync(migrationsDir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort((a, b) => a.localeCompare(b));
}
