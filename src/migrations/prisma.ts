/**
 * `ctx.prisma`: the project's own generated PrismaClient, bound to the migration's connection so
 * that its queries run INSIDE the migration's transaction.
 *
 * How: `@prisma/adapter-pg` accepts a `pg.Pool`. It gets a pool whose `query` and `connect` hand out
 * the runner's one connection. Prisma's interactive transactions on it (`$transaction`) arrive as
 * BEGIN/COMMIT/ROLLBACK and are turned into SAVEPOINT / RELEASE / ROLLBACK TO, so they nest inside
 * the migration's transaction instead of committing it early. Isolation levels cannot change inside
 * a transaction and are ignored.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ClientBase } from 'pg';
import { ConfigError, messageOf } from '../errors.js';
import { importModule } from './loader.js';

export type PrismaClientConstructor = new (options: { adapter: unknown }) => unknown;

/** Where the client module is and how dbops found it (shown in messages). */
export interface PrismaClientLocation {
  /** The module to import: a generated client.ts, a package entry, a generated index.js. */
  path: string;
  /** e.g. `DBOPS_PRISMA_CLIENT=@prisma/client`, `generator client (prisma-client-js) in prisma/schema.prisma`. */
  source: string;
}

const HOW_TO_SET =
  'set DBOPS_PRISMA_CLIENT (or --prisma-client) to the client module: a path such as src/generated/prisma/client.ts or a package such as @prisma/client';

/** Prisma's config file names, in the order the Prisma CLI looks for them. */
const CONFIG_FILES = [
  'prisma.config.ts',
  'prisma.config.mts',
  'prisma.config.cts',
  'prisma.config.js',
  'prisma.config.mjs',
  'prisma.config.cjs',
];
/** Where Prisma looks for the schema when nothing names it. */
const DEFAULT_SCHEMAS = ['schema.prisma', 'prisma/schema.prisma', 'prisma/schema'];
/** Entry files the `prisma-client` generator writes (generatedFileExtension ts | mts | cts; or compiled). */
const PRISMA_CLIENT_ENTRIES = ['client.ts', 'client.mts', 'client.cts', 'client.js', 'client.mjs'];

/**
 * Finds the application's generated Prisma client: `configured` (DBOPS_PRISMA_CLIENT: a path, or a
 * package specifier resolved from `cwd`), else the generator in the application's Prisma schema,
 * found as the Prisma CLI finds it (prisma.config.ts `schema`, package.json `prisma.schema`, the
 * default locations). Throws a ConfigError that names everything it looked at.
 */
export async function locatePrismaClient(cwd: string, configured: string | undefined): Promise<PrismaClientLocation> {
  if (configured) return locateConfigured(cwd, configured);
  const looked: string[] = [];
  for (const schema of await schemaFiles(cwd, looked)) {
    const found = await fromSchema(cwd, schema, looked);
    if (found) return found;
  }
  throw new ConfigError(`ctx.prisma: no generated Prisma client found (looked at ${looked.join('; ')})`, {
    hint: `run prisma generate, or ${HOW_TO_SET}`,
    details: { lookedAt: looked },
  });
}

function locateConfigured(cwd: string, configured: string): PrismaClientLocation {
  const source = `DBOPS_PRISMA_CLIENT=${configured}`;
  const asPath = isAbsolute(configured) ? configured : resolve(cwd, configured);
  if (existsSync(asPath)) {
    const entry = statSync(asPath).isDirectory() ? directoryEntry(asPath) : asPath;
    if (entry) return { path: entry, source };
    throw new ConfigError(`${source}: ${asPath} is a folder with no generated client in it (client.ts or index.js)`, {
      hint: `run prisma generate, or ${HOW_TO_SET}`,
    });
  }
  if (isBareSpecifier(configured)) {
    const entry = resolveFrom(join(cwd, 'package.json'), configured);
    if (entry) return { path: entry, source };
    throw new ConfigError(`${source}: no file ${asPath}, and no package ${configured} installed in ${cwd}`, {
      hint: `install it (npm install ${configured}) and run prisma generate, or ${HOW_TO_SET}`,
    });
  }
  throw new ConfigError(`${source}: ${asPath} does not exist`, { hint: `run prisma generate, or ${HOW_TO_SET}` });
}

/** `@scope/name`, `name`, `name/sub`: what Node resolves from node_modules (not ./x, ../x, /x). */
function isBareSpecifier(spec: string): boolean {
  return !spec.startsWith('.') && !isAbsolute(spec) && !spec.includes('\\');
}

/** A generator output folder given as DBOPS_PRISMA_CLIENT: its client.ts (prisma-client) or package entry (prisma-client-js). */
function directoryEntry(dir: string): string | undefined {
  for (const name of PRISMA_CLIENT_ENTRIES) if (existsSync(join(dir, name))) return join(dir, name);
  return resolveFrom(join(dir, 'noop.js'), dir);
}

/** The files of the application's Prisma schema (the first one found as the Prisma CLI finds it), or none. */
export async function prismaSchemaFiles(cwd: string): Promise<string[]> {
  return (await schemaFiles(cwd, []))[0] ?? [];
}

/** The application's schema files, found as the Prisma CLI finds them; `looked` records each place. */
async function schemaFiles(cwd: string, looked: string[]): Promise<string[][]> {
  const candidates: string[] = [];
  const configFile = CONFIG_FILES.map((f) => join(cwd, f)).find((f) => existsSync(f));
  if (configFile) {
    try {
      const mod = (await importModule(configFile)) as { default?: { schema?: unknown } } | undefined;
      const schema = mod?.default?.schema;
      if (typeof schema === 'string') {
        candidates.push(resolve(dirname(configFile), schema));
        looked.push(`${rel(cwd, configFile)} (schema: ${schema})`);
      } else {
        looked.push(`${rel(cwd, configFile)} (no schema set)`);
      }
    } catch (error) {
      looked.push(`${rel(cwd, configFile)} (could not be loaded: ${messageOf(error).split('\n')[0]})`);
    }
  }
  const pkgSchema = packageJsonSchema(cwd);
  if (pkgSchema) candidates.push(resolve(cwd, pkgSchema));
  for (const c of DEFAULT_SCHEMAS) candidates.push(resolve(cwd, c));
  const out: string[][] = [];
  for (const candidate of [...new Set(candidates)]) {
    if (!existsSync(candidate)) {
      if (candidates.indexOf(candidate) === 0 && configFile) looked.push(`${rel(cwd, candidate)} (does not exist)`);
      continue;
    }
    out.push(statSync(candidate).isDirectory() ? prismaFilesIn(candidate) : [candidate]);
  }
  if (out.length === 0) looked.push(`no Prisma schema (${DEFAULT_SCHEMAS.join(', ')})`);
  return out;
}

function packageJsonSchema(cwd: string): string | undefined {
  try {
    const pkg = JSON.parse(readFileSync(join(cwd, 'package.json'), 'utf8')) as { prisma?: { schema?: unknown } };
    return typeof pkg.prisma?.schema === 'string' ? pkg.prisma.schema : undefined;
  } catch {
    return undefined;
  }
}

/** A multi-file schema: every .prisma file under the folder. */
function prismaFilesIn(dir: string): string[] {
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .filter((e) => e.isFile() && e.name.endsWith('.prisma'))
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

interface Generator {
  name: string;
  provider: string | undefined;
  output: string | undefined | { unresolved: string };
}

/** The client of the first `prisma-client` / `prisma-client-js` generator in these schema files. */
async function fromSchema(cwd: string, files: string[], looked: string[]): Promise<PrismaClientLocation | undefined> {
  for (const file of files) {
    let generators: Generator[];
    try {
      generators = await generatorsOf(readFileSync(file, 'utf8'));
    } catch (error) {
      looked.push(`${rel(cwd, file)} (not parsed: ${messageOf(error).split('\n')[0]})`);
      continue;
    }
    for (const g of generators) {
      const where = `generator ${g.name} (${g.provider ?? 'no provider'}) in ${rel(cwd, file)}`;
      if (g.provider !== 'prisma-client' && g.provider !== 'prisma-client-js') {
        looked.push(`${where}: not a Prisma Client generator`);
        continue;
      }
      if (typeof g.output === 'object') {
        looked.push(`${where}: output is ${g.output.unresolved}, which dbops does not evaluate`);
        continue;
      }
      const outDir = g.output === undefined ? undefined : resolve(dirname(file), g.output);
      if (g.provider === 'prisma-client') {
        if (!outDir) {
          looked.push(`${where}: no output`);
          continue;
        }
        const entry = PRISMA_CLIENT_ENTRIES.map((n) => join(outDir, n)).find((p) => existsSync(p));
        if (entry) return { path: entry, source: where };
        looked.push(`${where}: ${rel(cwd, join(outDir, 'client.ts'))} (not generated)`);
        continue;
      }
      // prisma-client-js: a custom output folder, or @prisma/client (which re-exports node_modules/.prisma/client)
      if (outDir) {
        const entry = existsSync(outDir) ? resolveFrom(join(outDir, 'noop.js'), outDir) : undefined;
        if (entry) return { path: entry, source: where };
        looked.push(`${where}: ${rel(cwd, outDir)} (not generated)`);
        continue;
      }
      const pkg = resolveFrom(file, '@prisma/client/package.json');
      const generated = pkg ? join(dirname(pkg), '..', '..', '.prisma', 'client', 'index.js') : undefined;
      const entry = pkg ? resolveFrom(file, '@prisma/client') : undefined;
      if (entry && generated && existsSync(generated)) return { path: entry, source: where };
      looked.push(
        `${where}: ${pkg ? `${rel(cwd, dirname(generated ?? pkg))} (not generated)` : '@prisma/client (not installed)'}`,
      );
    }
  }
  return undefined;
}

/** Generator blocks of one schema file, read with a Prisma schema parser (@mrleebo/prisma-ast). */
async function generatorsOf(source: string): Promise<Generator[]> {
  const { getSchema } = await import('@mrleebo/prisma-ast');
  const out: Generator[] = [];
  for (const block of getSchema(source).list) {
    if (block.type !== 'generator') continue;
    const value = (key: string) => {
      for (const a of block.assignments) if (a.type === 'assignment' && a.key === key) return a.value;
      return undefined;
    };
    const provider = stringValue(value('provider'));
    const rawOutput = value('output');
    const output = rawOutput === undefined ? undefined : (stringValue(rawOutput) ?? { unresolved: printed(rawOutput) });
    out.push({ name: block.name, provider: typeof provider === 'string' ? provider : undefined, output });
  }
  return out;
}

/** A PSL string literal's value (`"a\"b"` -> `a"b`); undefined for env("..."), arrays, ... */
function stringValue(value: unknown): string | undefined {
  if (typeof value !== 'string' || !value.startsWith('"')) return undefined;
  try {
    const parsed: unknown = JSON.parse(value);
    return typeof parsed === 'string' ? parsed : undefined;
  } catch {
    return undefined;
  }
}

function printed(value: unknown): string {
  if (value && typeof value === 'object' && 'name' in value && 'params' in value) {
    const v = value as { name: string; params: unknown[] };
    return `${v.name}(${v.params.map(String).join(', ')})`;
  }
  return String(value);
}

function rel(cwd: string, path: string): string {
  const r = relative(cwd, path);
  return r === '' ? '.' : r.startsWith('..') ? path : r;
}

interface Loaded {
  Client: PrismaClientConstructor;
  PrismaPg: new (pool: unknown) => unknown;
  Pool: new (config: { max: number }) => PoolLike;
  /** The client's @prisma/client version (undefined when it cannot be found). */
  version: string | undefined;
  location: PrismaClientLocation;
}

interface PoolLike {
  query: unknown;
  connect: unknown;
  end: unknown;
}

/** ctx.prisma runs the client on the migration's connection through a driver adapter: Prisma 6 and 7 take one. */
const OLDEST_MAJOR = 6;

/** Loads the client class and, from the client's own project when possible, adapter-pg and pg. */
export async function loadPrismaClient(where: PrismaClientLocation | string): Promise<Loaded> {
  const location = typeof where === 'string' ? { path: where, source: where } : where;
  const modulePath = location.path;
  if (!existsSync(modulePath)) {
    throw new ConfigError(`the Prisma client module ${modulePath} does not exist (${location.source})`, {
      hint: `run prisma generate, or ${HOW_TO_SET}`,
    });
  }
  const version = clientVersion(modulePath);
  const major = version ? Number(version.split('.')[0]) : undefined;
  if (major !== undefined && major < OLDEST_MAJOR) {
    throw new ConfigError(
      `ctx.prisma: the Prisma client ${modulePath} is Prisma ${version}; ctx.prisma needs Prisma 6 or 7, whose clients run on a driver adapter and so inside the migration's transaction`,
      { hint: 'use ctx.sql in this migration, or upgrade the application to Prisma 6.16+ or 7' },
    );
  }
  let mod: Record<string, unknown>;
  try {
    mod = (await importModule(modulePath)) as Record<string, unknown>;
  } catch (error) {
    throw new ConfigError(
      `cannot load the Prisma client ${modulePath} (${location.source}): ${messageOf(error).split('\n')[0]}`,
      {
        hint: `run prisma generate, or ${HOW_TO_SET}`,
      },
    );
  }
  const Client = mod.PrismaClient as PrismaClientConstructor | undefined;
  if (typeof Client !== 'function') {
    throw new ConfigError(`${modulePath} does not export PrismaClient (${location.source})`, { hint: HOW_TO_SET });
  }
  // adapter-pg must be the one the client's runtime expects: prefer the project's copy.
  const adapterPath = resolveFrom(modulePath, '@prisma/adapter-pg');
  const adapter = (await (adapterPath ? import(pathToFileURL(adapterPath).href) : import('@prisma/adapter-pg'))) as {
    PrismaPg: Loaded['PrismaPg'];
  };
  const pgPath = adapterPath ? resolveFrom(adapterPath, 'pg') : undefined;
  const pgMod = (await (pgPath ? import(pathToFileURL(pgPath).href) : import('pg'))) as {
    default: { Pool: Loaded['Pool'] };
  };
  return { Client, PrismaPg: adapter.PrismaPg, Pool: pgMod.default.Pool, version, location };
}

/** The version of the @prisma/client runtime the client module uses. */
function clientVersion(modulePath: string): string | undefined {
  const pkg = resolveFrom(modulePath, '@prisma/client/package.json');
  if (!pkg) return undefined;
  try {
    const version = (JSON.parse(readFileSync(pkg, 'utf8')) as { version?: unknown }).version;
    return typeof version === 'string' ? version : undefined;
  } catch {
    return undefined;
  }
}

function resolveFrom(from: string, id: string): string | undefined {
  try {
    return createRequire(from).resolve(id);
  } catch {
    return undefined;
  }
}

/**
 * A PrismaClient whose every query runs on `client` (inside its open transaction). Every statement
 * it sends is first shown to `guard` (which refuses one that would end the migration's
 * transaction, `$executeRawUnsafe('COMMIT')` included). Its own interactive transactions arrive as
 * BEGIN ... COMMIT | ROLLBACK on a connection of their own and become a savepoint: a COMMIT or
 * ROLLBACK there with no savepoint left to end is refused as well.
 */
export function bindPrismaClient(
  loaded: Loaded,
  client: ClientBase,
  guard: (text: string) => Promise<void>,
): { prisma: unknown; dispose(): Promise<void> } {
  let seq = 0;
  const pool = new loaded.Pool({ max: 1 });
  const textOf = (cfg: unknown) => (typeof cfg === 'string' ? cfg : ((cfg as { text?: string } | null)?.text ?? ''));
  const query = async (...args: unknown[]) => {
    await guard(textOf(args[0]));
    return (client.query as (...a: unknown[]) => unknown)(...args);
  };
  const connect = async () => {
    const stack: string[] = [];
    const conn = {
      query: async (cfg: string | { text: string }) => {
        const text = textOf(cfg).trim().toUpperCase();
        if (text === 'BEGIN') {
          const name = `dbops_prisma_${++seq}`;
          stack.push(name);
          return client.query(`SAVEPOINT ${name}`);
        }
        if (text === 'COMMIT' && stack.length > 0) return client.query(`RELEASE SAVEPOINT ${stack.pop()}`);
        if (text === 'ROLLBACK' && stack.length > 0) {
          const name = stack.pop();
          await client.query(`ROLLBACK TO SAVEPOINT ${name}`);
          return client.query(`RELEASE SAVEPOINT ${name}`);
        }
        if (text.startsWith('SET TRANSACTION ISOLATION LEVEL'))
          return { command: 'SET', rowCount: 0, rows: [], fields: [] };
        return query(cfg);
      },
      release: () => {},
      on: () => conn,
      removeListener: () => conn,
    };
    return conn;
  };
  Object.assign(pool, { query, connect, end: async () => {} });
  let prisma: unknown;
  try {
    prisma = new loaded.Client({ adapter: new loaded.PrismaPg(pool) });
  } catch (error) {
    throw constructionError(loaded, error);
  }
  return {
    prisma,
    dispose: async () => {
      await (prisma as { $disconnect?: () => Promise<void> }).$disconnect?.().catch(() => {});
    },
  };
}

/** Why the client refused the adapter, said plainly (a Prisma 6 client generated without driver adapters). */
function constructionError(loaded: Loaded, error: unknown): ConfigError {
  const cause = messageOf(error).trim().split('\n')[0] ?? '';
  const where = `${loaded.location.path} (Prisma ${loaded.version ?? 'of unknown version'})`;
  if (/driverAdapters/.test(messageOf(error))) {
    return new ConfigError(
      `ctx.prisma: the Prisma client ${where} was generated without driver adapters, so it cannot run on the migration's connection and share its transaction: ${cause}`,
      {
        hint: 'add previewFeatures = ["driverAdapters"] to its generator and run prisma generate (Prisma 6.16 and later need no flag), or use ctx.sql',
        cause: error,
      },
    );
  }
  return new ConfigError(`ctx.prisma: the Prisma client ${where} refused dbops' PostgreSQL driver adapter: ${cause}`, {
    hint: `install @prisma/adapter-pg${loaded.version ? `@${loaded.version}` : ''} in the application (dbops uses the application's copy), or use ctx.sql`,
    cause: error,
  });
}
