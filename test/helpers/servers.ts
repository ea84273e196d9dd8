/**
 * Real servers for tests and benchmarks, on free loopback ports, in a temp folder: PostgreSQL
 * (embedded 18 from npm, or Debian's 15), redis-server (standalone or a 3-primary cluster) and
 * PgBouncer in transaction mode. Never the machine's own services on their standard ports.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import {
  embeddedBinaries,
  freePort,
  initDataDir,
  serverUser,
  startServer,
  systemBinaries,
} from '../../src/db/local-server.js';

export interface PgServer {
  host: string;
  port: number;
  version: number;
  /** Superuser URL for a database (trust auth for the postgres user). */
  url(database?: string): string;
  /** CREATE DATABASE `name`; returns its URL. */
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
}

export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `dbops-${prefix}-`));
  const runAs = serverUser();
  if (runAs) chownSync(dir, runAs.uid, runAs.gid);
  return dir;
}

/** Start PostgreSQL: 'embedded' (18, from npm) or a Debian major version such as 15. */
export async function startPostgres(
  kind: 'embedded' | number = 'embedded',
  settings: Record<string, string | number> = {},
): Promise<PgServer> {
  const binaries = kind === 'embedded' ? await embeddedBinaries() : systemBinaries(kind);
  if (!binaries) throw new Error(`PostgreSQL ${kind} is not installed (apt-get install postgresql-${kind})`);
  const dir = scratchDir(`pg${kind}`);
  const dataDir = join(dir, 'data');
  initDataDir(binaries, dataDir);
  // postgres may log in without a password; every other role needs one (scram), so tests can
  // provoke real authentication failures.
  writeFileSync(
    join(dataDir, 'pg_hba.conf'),
    [
      'host all postgres 127.0.0.1/32 trust',
      'host replication postgres 127.0.0.1/32 trust',
      'host all all 127.0.0.1/32 scram-sha-256',
      'local all all trust',
      '',
    ].join('\n'),
  );
  const port = await freePort();
  const server = await startServer({
    binaries,
    dataDir,
    port,
    logFile: join(dir, 'postgres.log'),
    settings: {
      shared_preload_libraries: 'pg_stat_statements',
      'pg_stat_statements.track': 'all',
      max_connections: 400,
      fsync: 'off',
      synchronous_commit: 'off',
      full_page_writes: 'off',
      ...settings,
    },
  });
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  await client.connect();
  const v = await client.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`);
  await client.end();
  return {
    host: '127.0.0.1',
    port,
    version: Math.floor(Number(v.rows[0]?.v) / 10000),
    url: (database = 'postgres') => `postgresql://postgres@127.0.0.1:${port}/${database}`,
    createDatabase: async (name) => {
      const admin = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE ${name}`);
      } finally {
        await admin.end();
      }
      return `postgresql://postgres@127.0.0.1:${port}/${name}`;
    },
    stop: async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RedisServer {
  port: number;
  url: string;
  stop(): Promise<void>;
}

async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function redisPing(port: number): boolean {
  try {
    return (
      execFileSync('redis-cli', ['-p', String(port), 'PING'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim() === 'PONG'
    );
  } catch {
    return false;
  }
}

function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(signal);
  });
}

/**
 * A redis-server with no persistence. Extra args e.g. ['--requirepass', 'x'], or
 * ['--appendonly', 'yes'] for one that keeps its keys across a restart. `at` starts it on a given
 * port and folder (a restart of the same server): the folder is then the caller's to remove.
 */
export async function startRedis(
  extraArgs: string[] = [],
  at: { port?: number; dir?: string } = {},
): Promise<RedisServer> {
  if (!existsSync('/usr/bin/redis-server'))
    throw new Error('redis-server is not installed (apt-get install redis-server)');
  const dir = at.dir ?? scratchDir('redis');
  const port = at.port ?? (await freePort());
  const persistence = extraArgs.includes('--appendonly') ? [] : ['--appendonly', 'no'];
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence, '--dir', dir, ...extraArgs],
    {
      stdio: 'ignore',
    },
  );
  const needsAuth = extraArgs.includes('--requirepass') || extraArgs.some((a) => a.startsWith('user'));
  await waitFor(() => (needsAuth ? isListening(port) : redisPing(port)), `redis-server on ${port}`);
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    stop: async () => {
      // Shut down already (e.g. redis-cli shutdown from a migration): stopChild returns at once.
      await stopChild(child);
      if (!at.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    import('node:net').then(({ connect }) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
  });
}

export interface RedisClusterServer {
  ports: number[];
  /** Seed URL (first primary). */
  url: string;
  stop(): Promise<void>;
}

/** Three primaries, no replicas, slots spread by redis-cli --cluster create. */
export async function startRedisCluster(): Promise<RedisClusterServer> {
  const dir = scratchDir('redis-cluster');
  const ports: number[] = [];
  const children: ChildProcess[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    ports.push(port);
    // The cluster bus listens on port + 10000: make sure that one is free too.
    children.push(
      spawn(
        'redis-server',
        [
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--save',
          '',
          '--appendonly',
          'no',
          '--dir',
          dir,
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout',
          '2000',
        ],
        { stdio: 'ignore' },
      ),
    );
  }
  for (const port of ports) await waitFor(() => redisPing(port), `cluster node ${port}`);
  execFileSync(
    'redis-cli',
    ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'],
    { stdio: 'ignore' },
  );
  await waitFor(() => {
    try {
      return execFileSync('redis-cli', ['-p', String(ports[0]), 'CLUSTER', 'INFO'], { encoding: 'utf8' }).includes(
        'cluster_state:ok',
      );
    } catch {
      return false;
    }
  }, 'cluster_state:ok');
  return {
    ports,
    url: `redis://127.0.0.1:${ports[0]}`,
    stop: async () => {
      await Promise.all(children.map((c) => stopChild(c)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface PgBouncerServer {
  port: number;
  /** URL of a database through PgBouncer (transaction pooling). */
  url(database: string, user?: string): string;
  /** Admin console URL (database pgbouncer). */
  adminUrl: string;
  reload(ini: Partial<Record<string, string | number>>): Promise<void>;
  stop(): Promise<void>;
}

export function pgbouncerBinary(): string | undefined {
  for (const p of ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer']) if (existsSync(p)) return p;
  return undefined;
}

/**
 * PgBouncer in transaction mode in front of `pgPort`; any database name is forwarded. `passwords`:
 * users' passwords for PgBouncer to log in to PostgreSQL with (default: none, which suits postgres).
 */
export async function startPgBouncer(
  pgPort: number,
  overrides: Record<string, string | number> = {},
  passwords: Record<string, string> = {},
): Promise<PgBouncerServer> {
  const bin = pgbouncerBinary();
  if (!bin) throw new Error('pgbouncer is not installed (apt-get install pgbouncer)');
  const dir = scratchDir('pgbouncer');
  const port = await freePort();
  const runAs = serverUser();
  const settings: Record<string, string | number> = {
    listen_addr: '127.0.0.1',
    listen_port: port,
    unix_socket_dir: '',
    auth_type: 'trust',
    auth_file: join(dir, 'userlist.txt'),
    admin_users: 'postgres',
    stats_users: 'postgres',
    pool_mode: 'transaction',
    default_pool_size: 20,
    max_client_conn: 500,
    ignore_startup_parameters: 'extra_float_digits,statement_timeout,options,application_name',
    logfile: join(dir, 'pgbouncer.log'),
    pidfile: join(dir, 'pgbouncer.pid'),
    server_reset_query: '',
    ...overrides,
  };
  const writeIni = () => {
    const ini = [
      '[databases]',
      `* = host=127.0.0.1 port=${pgPort}`,
      '',
      '[pgbouncer]',
      ...Object.entries(settings).map(([k, v]) => `${k} = ${v}`),
      '',
    ].join('\n');
    writeFileSync(join(dir, 'pgbouncer.ini'), ini);
  };
  const users = { postgres: '', dbops_app: '', ...passwords };
  writeFileSync(
    join(dir, 'userlist.txt'),
    Object.entries(users)
      .map(([u, p]) => `"${u}" "${p}"\n`)
      .join(''),
  );
  writeIni();
  if (runAs) for (const f of ['pgbouncer.ini', 'userlist.txt']) chownSync(join(dir, f), runAs.uid, runAs.gid);
  const args = [join(dir, 'pgbouncer.ini')];
  if (runAs) args.unshift('-u', 'postgres');
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  await waitFor(() => isListening(port), `pgbouncer on ${port} (${stderr.trim()})`).catch((error: Error) => {
    const log = existsSync(settings.logfile as string) ? readFileSync(settings.logfile as string, 'utf8') : '';
    throw new Error(`${error.message}\n${log.slice(-500)}`);
  });
  const adminUrl = `postgresql://postgres@127.0.0.1:${port}/pgbouncer`;
  return {
    port,
    url: (database, user = 'postgres') => `postgresql://${user}@127.0.0.1:${port}/${database}`,
    adminUrl,
    reload: async (ini) => {
      Object.assign(settings, ini);
      writeIni();
      const c = new pg.Client({ connectionString: adminUrl });
      c.on('error', () => {});
      await c.connect();
      await c.query('RELOAD');
      await c.end();
    },
    stop: async () => {
      await stopChild(child, 'SIGINT');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export { freePort };
