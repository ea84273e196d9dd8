/**
 * Finds and loads data migration modules (`<14-digit UTC timestamp>_<snake_name>.ts|.js`).
 * Every problem (a bad name, a duplicate, a syntax error, no default export, no `up`) is
 * collected with its path and cause, and reported together before anything runs.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { messageOf, OperationError } from '../errors.js';
import type { DataMigration, LoadedMigration } from './types.js';

export const MIGRATION_NAME = /^(\d{14})_([a-z0-9]+(?:_[a-z0-9]+)*)$/;
const EXTENSIONS = ['.ts', '.mts', '.js', '.mjs'];

export interface LoadProblem {
  path: string;
  cause: string;
}

/** Thrown when one or more modules cannot be used; `problems` lists each with its path. */
export class MigrationLoadError extends OperationError {
  readonly problems: LoadProblem[];
  constructor(problems: LoadProblem[]) {
    const first = problems[0];
    const more =
      problems.length > 1
        ? ` (and ${problems.length - 1} more: ${problems
            .slice(1)
            .map((p) => `${p.path}: ${p.cause}`)
            .join('; ')})`
        : '';
    super(`cannot load data migration ${first?.path}: ${first?.cause}${more}`, {
      hint: 'fix or remove the file(s); nothing was run',
      details: { step: 'load', problems },
    });
    this.problems = problems;
  }
}

/** SHA-256 of the source with line endings normalised (CRLF/CR → LF) and any BOM removed. */
export function checksumSource(source: string): string {
  const normalised = source.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n');
  return createHash('sha256').update(normalised, 'utf8').digest('hex');
}

export interface MigrationFile {
  name: string;
  timestamp: string;
  path: string;
  source: string;
  checksum: string;
}

/** Lists migration files (sorted by name) without executing them. Missing folder = none. */
export async function listMigrationFiles(dir: string): Promise<{ files: MigrationFile[]; problems: LoadProblem[] }> {
  const base = resolve(dir);
  let names: string[];
  try {
    names = await readdir(base);
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return { files: [], problems: [] };
    throw new OperationError(`cannot read the data migrations folder ${base}: ${messageOf(error)}`);
  }
  const problems: LoadProblem[] = [];
  const byName = new Map<string, string>();
  const wanted: Array<{ name: string; timestamp: string; path: string }> = [];
  for (const file of names.sort()) {
    const ext = EXTENSIONS.find((e) => file.endsWith(e));
    if (!ext || file.endsWith('.d.ts') || file.startsWith('.')) continue;
    const path = join(base, file);
    const name = file.slice(0, -ext.length);
    const m = MIGRATION_NAME.exec(name);
    if (!m) {
      problems.push({
        path,
        cause: 'the name must be <14-digit UTC timestamp>_<snake_case_name>, e.g. 20240101000000_add_user_roles.ts',
      });
      continue;
    }
    const other = byName.get(name);
    if (other) {
      problems.push({ path, cause: `duplicate migration name ${name} (also ${other})` });
      continue;
    }
    byName.set(name, path);
    wanted.push({ name, timestamp: m[1] as string, path });
  }
  // Read concurrently: one at a time, 200 small files cost ~60 ms of waiting on the thread pool.
  const files = await Promise.all(
    wanted.map(async (w): Promise<MigrationFile> => {
      const source = await readFile(w.path, 'utf8');
      return { ...w, source, checksum: checksumSource(source) };
    }),
  );
  return { files, problems };
}

type Jiti = { import(id: string): Promise<unknown> };
let jitiPromise: Promise<Jiti> | undefined;

async function jiti(): Promise<Jiti> {
  jitiPromise ??= import('jiti').then(
    ({ createJiti }) => createJiti(import.meta.url, { interopDefault: false }) as unknown as Jiti,
  );
  return jitiPromise;
}

/** Imports a TypeScript or JavaScript module at run time (jiti: no build step). */
export async function importModule(path: string): Promise<unknown> {
  const loader = await jiti();
  return loader.import(pathToFileURL(path).href);
}

/**
 * Normalises a default export into a DataMigration: an object with `up` (defineDataMigration or
 * a plain object), a class instance, or a class with a no-argument constructor.
 */
export function toDataMigration(value: unknown): DataMigration | string {
  let candidate = value;
  if (typeof candidate === 'function') {
    const proto = (candidate as { prototype?: { up?: unknown } }).prototype;
    if (proto && typeof proto.up === 'function') {
      try {
        candidate = new (candidate as new () => unknown)();
      } catch (error) {
        return `the default-exported class could not be constructed: ${messageOf(error)}`;
      }
    } else {
      return 'the default export is a function; export defineDataMigration({ up, ... }) or a class with an up() method';
    }
  }
  if (candidate === null || typeof candidate !== 'object') {
    return 'no default export with a migration (export default defineDataMigration({ ... }))';
  }
  const obj = candidate as Record<string, unknown>;
  if (typeof obj.up !== 'function') return 'the migration has no up() function';
  for (const key of ['down', 'validate'] as const) {
    if (obj[key] !== undefined && typeof obj[key] !== 'function') return `${key} must be a function`;
  }
  if (obj.transaction !== undefined && typeof obj.transaction !== 'boolean') return 'transaction must be true or false';
  const inv = obj.invalidates;
  if (inv !== undefined && !(Array.isArray(inv) && inv.every((p) => typeof p === 'string' && p !== ''))) {
    return "invalidates must be an array of key patterns, e.g. ['user:*']";
  }
  // Methods of a class instance live on its prototype: bind them so `this` works when called.
  const bind = (key: 'up' | 'down' | 'validate') =>
    typeof obj[key] === 'function' ? (obj[key] as (...a: unknown[]) => unknown).bind(obj) : undefined;
  const migration: DataMigration = {
    up: bind('up') as DataMigration['up'],
    transaction: obj.transaction !== false,
    ...(typeof obj.description === 'string' ? { description: obj.description } : {}),
    ...(obj.options && typeof obj.options === 'object' ? { options: obj.options as Record<string, unknown> } : {}),
    ...(Array.isArray(inv) ? { invalidates: inv as string[] } : {}),
  };
  const down = bind('down');
  const validate = bind('validate');
  if (down) migration.down = down as DataMigration['down'];
  if (validate) migration.validate = validate as DataMigration['validate'];
  return migration;
}

/** Loads every migration module in `dir`; throws MigrationLoadError listing all problems. */
export async function loadMigrations(
  dir: string,
  opts: { only?: (name: string) => boolean } = {},
): Promise<LoadedMigration[]> {
  const { files, problems } = await listMigrationFiles(dir);
  const loaded: LoadedMigration[] = [];
  for (const file of files) {
    if (opts.only && !opts.only(file.name)) continue;
    let mod: unknown;
    try {
      mod = await importModule(file.path);
    } catch (error) {
      problems.push({ path: file.path, cause: firstLine(messageOf(error)) });
      continue;
    }
    const exported =
      mod && typeof mod === 'object' && 'default' in mod ? (mod as { default: unknown }).default : undefined;
    const migration =
      exported === undefined
        ? 'no default export (export default defineDataMigration({ ... }))'
        : toDataMigration(exported);
    if (typeof migration === 'string') {
      problems.push({ path: file.path, cause: migration });
      continue;
    }
    loaded.push({
      name: file.name,
      timestamp: file.timestamp,
      path: file.path,
      checksum: file.checksum,
      description: migration.description,
      transactional: migration.transaction !== false,
      hasDown: typeof migration.down === 'function',
      hasValidate: typeof migration.validate === 'function',
      usesPrisma: /\bprisma\b/.test(file.source),
      migration: migration as LoadedMigration['migration'],
    });
  }
  if (problems.length > 0) throw new MigrationLoadError(problems);
  return loaded;
}

/**
 * The descriptions of these migrations, read from their modules (for `status`, whose pending rows
 * have no ledger row to read it from). A module that does not load is left out: status reports
 * its problem from the file listing, and `up` refuses it.
 */
export async function describeMigrations(files: MigrationFile[], names: Set<string>): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const file of files) {
    if (!names.has(file.name)) continue;
    try {
      const mod = await importModule(file.path);
      const exported =
        mod && typeof mod === 'object' && 'default' in mod ? (mod as { default: unknown }).default : undefined;
      const migration = exported === undefined ? undefined : toDataMigration(exported);
      if (migration && typeof migration !== 'string' && migration.description)
        out.set(file.name, migration.description);
    } catch {
      // reported elsewhere
    }
  }
  return out;
}

function firstLine(message: string): string {
  const line = message.split('\n').find((l) => l.trim() !== '') ?? message;
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}
