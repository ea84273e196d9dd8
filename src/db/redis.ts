/**
 * ioredis connections with bounded time: ioredis retries forever by default, which would make an
 * unreachable Redis hang dbops. Here connecting fails after `timeoutMs` with an UnreachableError.
 */
import { isIP } from 'node:net';
import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import { parseRedisUrl } from '../config/urls.js';
import { ConfigError, messageOf, UnreachableError, UsageError } from '../errors.js';

export interface RedisConnectOptions {
  url: string;
  timeoutMs: number;
  /** Name shown in CLIENT LIST. */
  connectionName?: string;
  /** Fail a command that gets no reply in this time (a hung or paused server). Default: none. */
  commandTimeoutMs?: number;
}

/** The URL read as config validated it (a ConfigError for a URL that skipped validation). */
function target(url: string) {
  return parseRedisUrl('REDIS_URL', { value: url, source: 'the caller' });
}

function targetOrUndefined(url: string): ReturnType<typeof target> | undefined {
  try {
    return target(url);
  } catch {
    return undefined;
  }
}

/** host:port/db of a Redis URL, for messages (never the password). */
export function describeRedis(url: string): string {
  const t = targetOrUndefined(url);
  return t ? `${t.tls ? 'rediss' : 'redis'}://${t.hostname}:${t.port}/${t.db}` : 'the configured Redis';
}

/**
 * ioredis options derived from a URL, with every retry bounded. `db` is the URL's database index;
 * ioredis is not told about it (it would SELECT on connect and, when that fails, carry on in
 * database 0): connectRedis selects it itself and fails if it cannot.
 */
export function redisOptions(url: string, timeoutMs: number, connectionName = 'dbops'): RedisOptions & { db: number } {
  const t = target(url);
  const options: RedisOptions & { db: number } = {
    host: t.host,
    port: t.port,
    db: t.db,
    connectTimeout: timeoutMs,
    commandTimeout: undefined,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: true,
    lazyConnect: true,
    connectionName,
    // Binary-safe keys are read with *Buffer commands; no automatic pipelining surprises.
    enableAutoPipelining: false,
    // A socket that does not close after QUIT or a failed handshake is destroyed soon (default 2 s).
    disconnectTimeout: 200,
  };
  if (t.username) options.username = t.username;
  if (t.password) options.password = t.password;
  // SNI must be a host name (RFC 6066): Node warns when it is given an IP address.
  if (t.tls) options.tls = isIP(t.host) ? {} : { servername: t.host };
  return options;
}

export function redisConnectError(error: unknown, url: string, timeoutMs: number): UnreachableError {
  const endpoint = describeRedis(url);
  const msg = messageOf(error);
  if (/NOAUTH/.test(msg) && !targetOrUndefined(url)?.password) {
    return new UnreachableError(`Redis at ${endpoint} asks for a password and REDIS_URL has none`, {
      hint: 'put it in REDIS_URL: redis://:PASSWORD@HOST:PORT/DB, or redis://USER:PASSWORD@... for an ACL user (percent-encoded)',
      cause: error,
      details: { endpoint },
    });
  }
  if (/NOAUTH|WRONGPASS|invalid password|invalid username/i.test(msg)) {
    return new UnreachableError(`Redis at ${endpoint} refused the login: ${msg}`, {
      hint: 'check the user and password in REDIS_URL (redis://USER:PASSWORD@HOST:PORT/DB, percent-encoded)',
      cause: error,
      details: { endpoint },
    });
  }
  if (/timeout|timed out/i.test(msg)) {
    return new UnreachableError(`Redis at ${endpoint} did not answer within ${timeoutMs} ms`, {
      hint: 'is Redis running there? raise --timeout on a slow network',
      cause: error,
      details: { endpoint },
    });
  }
  if (/Protocol error|unknown command|wrong number of arguments/i.test(msg)) {
    return new UnreachableError(`Redis at ${endpoint} did not speak Redis: ${msg}`, {
      hint: 'is that port a Redis server (not PostgreSQL or PgBouncer)? check the port in REDIS_URL',
      cause: error,
      details: { endpoint },
    });
  }
  return new UnreachableError(`Redis at ${endpoint} is unreachable: ${msg}`, {
    hint: 'is Redis running and is REDIS_URL right? dbops doctor checks it',
    cause: error,
    details: { endpoint },
  });
}

/** SELECT the URL's database; a refusal is fatal here, before any command runs in the wrong one. */
async function selectDatabase(client: Redis, url: string, db: number): Promise<void> {
  if (db === 0) return;
  try {
    await client.select(db);
  } catch (error) {
    const msg = messageOf(error);
    const endpoint = describeRedis(url);
    if (/cluster/i.test(msg)) {
      throw new UsageError(
        `REDIS_URL selects database ${db}, but ${endpoint} is a Redis Cluster, which has only database 0`,
        {
          hint: 'drop the /<db> from the URL',
          cause: error,
        },
      );
    }
    if (/out of range|invalid DB index|not an integer/i.test(msg)) {
      throw new ConfigError(`REDIS_URL selects database ${db}, which ${endpoint} does not have: ${msg}`, {
        hint: 'Redis has databases 0-15 unless its `databases` setting says otherwise: fix the number after the host in REDIS_URL',
        cause: error,
      });
    }
    throw redisConnectError(error, url, client.options.connectTimeout ?? 0);
  }
  // Keep options.db truthful for whoever reads it (the cache target reports it).
  client.options.db = db;
}

/** Connect one standalone Redis client; rejects within about `timeoutMs`. */
export async function connectRedis(opts: RedisConnectOptions): Promise<Redis> {
  const { Redis } = await import('ioredis');
  const { db, ...options } = redisOptions(opts.url, opts.timeoutMs, opts.connectionName);
  const client = new Redis({ ...options, ...(opts.commandTimeoutMs ? { commandTimeout: opts.commandTimeoutMs } : {}) });
  // Errors surface through the command promises; an 'error' event without a listener would crash.
  // The last one is kept: a refused login (WRONGPASS) arrives as an event while connect() only
  // rejects with "Connection is closed".
  let lastError: unknown;
  // A refused login during the handshake (NOAUTH from the ready check, WRONGPASS) does not close the
  // connection by itself: fail on it at once instead of waiting out the timeout.
  let refused: (error: unknown) => void = () => {};
  const loginRefused = new Promise((_, reject) => {
    refused = reject;
  });
  client.on('error', (e) => {
    lastError = e;
    if (/NOAUTH|WRONGPASS|invalid password|invalid username/i.test(messageOf(e))) refused(e);
  });
  // connectTimeout bounds the TCP connect only: a server that accepts and never answers the
  // handshake (AUTH, HELLO) is bounded here.
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.connect(),
      loginRefused,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${opts.timeoutMs} ms`)), opts.timeoutMs);
      }),
    ]);
  } catch (error) {
    client.disconnect();
    throw redisConnectError(lastError ?? error, opts.url, opts.timeoutMs);
  } finally {
    clearTimeout(timer);
  }
  try {
    await selectDatabase(client, opts.url, db);
  } catch (error) {
    client.disconnect();
    throw error;
  }
  return client;
}

/** Close a Redis or Cluster client: QUIT politely, disconnect if that fails. */
export async function closeRedis(client: Redis | Cluster): Promise<void> {
  try {
    await Promise.race([client.quit(), new Promise((r) => setTimeout(r, 1000))]);
  } catch {
    // already gone
  }
  client.disconnect();
}

/**
 * Connect an ioredis Cluster seeded from a URL's host and port, with the URL's credentials and TLS
 * applied to every node, and no retries: an unreachable cluster fails within about `timeoutMs`.
 */
export async function connectRedisCluster(opts: RedisConnectOptions): Promise<Cluster> {
  const { Cluster } = await import('ioredis');
  const base = redisOptions(opts.url, opts.timeoutMs, opts.connectionName);
  const { host, port, db: _db, retryStrategy: _r, enableOfflineQueue: _q, lazyConnect: _l, ...nodeOptions } = base;
  const clusterOptions: ClusterOptions = {
    lazyConnect: true,
    clusterRetryStrategy: () => null,
    enableOfflineQueue: true,
    slotsRefreshTimeout: opts.timeoutMs,
    // Topology is read once; MOVED/ASK replies still refresh it on their own.
    slotsRefreshInterval: 0,
    maxRedirections: 16,
    retryDelayOnMoved: 0,
    redisOptions: { ...nodeOptions, ...(opts.commandTimeoutMs ? { commandTimeout: opts.commandTimeoutMs } : {}) },
  };
  const cluster = new Cluster([{ host: host ?? '127.0.0.1', port: port ?? 6379 }], clusterOptions);
  cluster.on('error', () => {});
  cluster.on('node error', () => {});
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      cluster.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${opts.timeoutMs} ms`)), opts.timeoutMs + 250);
      }),
    ]);
    return cluster;
  } catch (error) {
    cluster.disconnect();
    throw redisConnectError(error, opts.url, opts.timeoutMs);
  } finally {
    clearTimeout(timer);
  }
}

/** `[::1]` → `::1`; other hosts unchanged. */
export function bareHost(hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
}
