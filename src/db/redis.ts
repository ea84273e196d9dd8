/**
 * ioredis connections with bounded time: ioredis retries forever by default, which would make an
 * unreachable Redis hang dbops. Here connecting fails after `timeoutMs` with an UnreachableError.
 */
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import { messageOf, UnreachableError } from '../errors.js';

export interface RedisConnectOptions {
  url: string;
  timeoutMs: number;
  /** Name shown in CLIENT LIST. */
  connectionName?: string;
}

/** host:port/db of a Redis URL, for messages (never the password). */
export function describeRedis(url: string): string {
  try {
    const u = new URL(url);
    const db = u.pathname.replace('/', '') || '0';
    return `${u.protocol === 'rediss:' ? 'rediss' : 'redis'}://${u.hostname}:${u.port || '6379'}/${db}`;
  } catch {
    return 'the configured Redis';
  }
}

/** ioredis options derived from a URL, with every retry bounded. */
export function redisOptions(url: string, timeoutMs: number, connectionName = 'dbops'): RedisOptions {
  const u = new URL(url);
  const options: RedisOptions = {
    host: u.hostname,
    port: Number(u.port || 6379),
    db: Number(u.pathname.replace('/', '') || 0),
    connectTimeout: timeoutMs,
    commandTimeout: undefined,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: true,
    lazyConnect: true,
    connectionName,
    // Binary-safe keys are read with *Buffer commands; no automatic pipelining surprises.
    enableAutoPipelining: false,
  };
  if (u.username) options.username = decodeURIComponent(u.username);
  if (u.password) options.password = decodeURIComponent(u.password);
  if (u.protocol === 'rediss:') options.tls = { servername: u.hostname };
  return options;
}

export function redisConnectError(error: unknown, url: string, timeoutMs: number): UnreachableError {
  const endpoint = describeRedis(url);
  const msg = messageOf(error);
  if (/NOAUTH|WRONGPASS|invalid password|invalid username/i.test(msg)) {
    return new UnreachableError(`Redis at ${endpoint} refused the login: ${msg}`, {
      hint: 'check the user and password in REDIS_URL',
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
  return new UnreachableError(`Redis at ${endpoint} is unreachable: ${msg}`, {
    hint: 'is Redis running and is REDIS_URL right?',
    cause: error,
    details: { endpoint },
  });
}

/** Connect one standalone Redis client; rejects within about `timeoutMs`. */
export async function connectRedis(opts: RedisConnectOptions): Promise<Redis> {
  const { Redis } = await import('ioredis');
  const client = new Redis(redisOptions(opts.url, opts.timeoutMs, opts.connectionName));
  // Errors surface through the command promises; an 'error' event without a listener would crash.
  client.on('error', () => {});
  const timer = setTimeout(() => client.disconnect(), opts.timeoutMs + 250);
  try {
    await client.connect();
    return client;
  } catch (error) {
    client.disconnect();
    throw redisConnectError(error, opts.url, opts.timeoutMs);
  } finally {
    clearTimeout(timer);
  }
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
