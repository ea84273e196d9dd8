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
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ClientBase } from 'pg';
import { ConfigError, messageOf } from '../errors.js';
import { importModule } from './loader.js';

export type PrismaClientConstructor = new (options: { adapter: unknown }) => unknown;

/** Where the generated client usually is (prisma-client generator, `output` inside src/). */
export const DEFAULT_PRISMA_CLIENT_CANDIDATES = [
  'src/generated/prisma/client.ts',
  'generated/prisma/client.ts',
  'prisma/generated/client.ts',
  'src/generated/prisma/client.js',
];

/** Resolves the client module: an explicit path (relative to cwd), or the first default that exists. */
export function resolvePrismaClientPath(cwd: string, configured: string | undefined): string | undefined {
  if (configured) return isAbsolute(configured) ? configured : resolve(cwd, configured);
  return DEFAULT_PRISMA_CLIENT_CANDIDATES.map((c) => resolve(cwd, c)).find((p) => existsSync(p));
}

interface Loaded {
  Client: PrismaClientConstructor;
  PrismaPg: new (pool: unknown) => unknown;
  Pool: new (config: { max: number }) => PoolLike;
}

interface PoolLike {
  query: unknown;
  connect: unknown;
  end: unknown;
}

/** Loads the client class and, from the client's own project when possible, adapter-pg and pg. */
export async function loadPrismaClient(modulePath: string): Promise<Loaded> {
  if (!existsSync(modulePath)) {
    throw new ConfigError(`the Prisma client module ${modulePath} does not exist`, {
      hint: 'run prisma generate, or point --prisma-client (DBOPS_PRISMA_CLIENT) at your generated client.ts',
    });
  }
  let mod: Record<string, unknown>;
  try {
    mod = (await importModule(modulePath)) as Record<string, unknown>;
  } catch (error) {
    throw new ConfigError(`cannot load the Prisma client ${modulePath}: ${messageOf(error).split('\n')[0]}`, {
      hint: 'run prisma generate, or point --prisma-client (DBOPS_PRISMA_CLIENT) at your generated client',
    });
  }
  const Client = mod.PrismaClient as PrismaClientConstructor | undefined;
  if (typeof Client !== 'function') {
    throw new ConfigError(`${modulePath} does not export PrismaClient`, { hint: 'point --prisma-client at the generated client.ts (or client.js)' });
  }
  // adapter-pg must be the one the client's runtime expects: prefer the project's copy.
  const adapterPath = resolveFrom(modulePath, '@prisma/adapter-pg');
  const adapter = (await (adapterPath ? import(pathToFileURL(adapterPath).href) : import('@prisma/adapter-pg'))) as { PrismaPg: Loaded['PrismaPg'] };
  const pgPath = adapterPath ? resolveFrom(adapterPath, 'pg') : undefined;
  const pgMod = (await (pgPath ? import(pathToFileURL(pgPath).href) : import('pg'))) as { default: { Pool: Loaded['Pool'] } };
  return { Client, PrismaPg: adapter.PrismaPg, Pool: pgMod.default.Pool };
}

function resolveFrom(from: string, id: string): string | undefined {
  try {
    return createRequire(from).resolve(id);
  } catch {
    return undefined;
  }
}

/** A PrismaClient whose every query runs on `client` (inside its open transaction). */
export function bindPrismaClient(loaded: Loaded, client: ClientBase): { prisma: unknown; dispose(): Promise<void> } {
  let seq = 0;
  const pool = new loaded.Pool({ max: 1 });
  const query = (...args: unknown[]) => (client.query as (...a: unknown[]) => unknown)(...args);
  const connect = async () => {
    const stack: string[] = [];
    const conn = {
      query: async (cfg: string | { text: string }) => {
        const text = (typeof cfg === 'string' ? cfg : cfg.text).trim().toUpperCase();
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
        if (text.startsWith('SET TRANSACTION ISOLATION LEVEL')) return { command: 'SET', rowCount: 0, rows: [], fields: [] };
        return query(cfg);
      },
      release: () => {},
      on: () => conn,
      removeListener: () => conn,
    };
    return conn;
  };
  Object.assign(pool, { query, connect, end: async () => {} });
  const prisma = new loaded.Client({ adapter: new loaded.PrismaPg(pool) });
  return {
    prisma,
    dispose: async () => {
      await (prisma as { $disconnect?: () => Promise<void> }).$disconnect?.().catch(() => {});
    },
  };
}
