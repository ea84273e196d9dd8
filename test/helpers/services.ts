/** What the global setup started, as seen from a test file (via vitest's inject). */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';

export const TEMPLATE_DB = 'dbops_template';

export interface Services {
  pg: { port: number; version: number };
  /** Debian's PostgreSQL 15, when installed. */
  pg15: { port: number; version: number } | null;
  redis: { port: number };
  cluster: { ports: number[] };
  pgbouncer: { port: number };
}

declare module 'vitest' {
  export interface ProvidedContext {
    services: Services;
  }
}

export function services(): Services {
  return inject('services');
}

export function pgUrl(database = 'postgres', port = services().pg.port): string {
  return `postgresql://postgres@127.0.0.1:${port}/${database}`;
}

/** A unique, lower-case name for a database or key namespace. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

export interface TestDatabase {
  name: string;
  /** Direct superuser URL. */
  url: string;
  /** The same database through PgBouncer (transaction pooling). */
  bouncerUrl: string;
  port: number;
  drop(): Promise<void>;
}

/**
 * A database of its own for one test (file): a copy of the template with the example schema and
 * pg_stat_statements, or empty with `{ empty: true }`. `{ server: 'pg15' }` uses PostgreSQL 15.
 */
export async function createTestDatabase(
  opts: { empty?: boolean; server?: 'pg' | 'pg15' } = {},
): Promise<TestDatabase> {
  const s = services();
  const server = opts.server === 'pg15' ? s.pg15 : s.pg;
  if (!server) throw new Error('PostgreSQL 15 is not available on this machine');
  const name = uniqueName('t');
  const admin = new pg.Client({ connectionString: pgUrl('postgres', server.port) });
  await admin.connect();
  try {
    // CREATE DATABASE ... TEMPLATE fails while another session uses the template: retry briefly.
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.query(`CREATE DATABASE ${name}${opts.empty ? '' : ` TEMPLATE ${TEMPLATE_DB}`}`);
        break;
      } catch (error) {
        if (attempt > 50 || !/being accessed by other users/.test((error as Error).message)) throw error;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } finally {
    await admin.end();
  }
  return {
    name,
    url: pgUrl(name, server.port),
    bouncerUrl: `postgresql://postgres@127.0.0.1:${s.pgbouncer.port}/${name}`,
    port: server.port,
    drop: async () => {
      const c = new pg.Client({ connectionString: pgUrl('postgres', server.port) });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export function redisUrl(): string {
  return `redis://127.0.0.1:${services().redis.port}/0`;
}

/** A key namespace of its own for one test: every key it writes starts with this. */
export function redisNamespace(): string {
  return `${uniqueName('t')}:`;
}
