/**
 * What a cache command works on: one standalone Redis, or every primary of a Redis Cluster.
 * Opens the connections (bounded retries, TLS and ACL user from the URL), reads the server facts
 * printed before any deletion, and closes what it opened.
 */
import type { Cluster, Redis } from 'ioredis';
import { closeRedis, connectRedis, connectRedisCluster, describeRedis } from '../db/redis.js';
import { OperationError, UsageError } from '../errors.js';

export interface CacheNode {
  /** host:port as the cluster announces it (or as configured). */
  id: string;
  client: Redis;
}

export interface TargetInfo {
  /** scheme://host:port/db, never a password. */
  endpoint: string;
  db: number;
  mode: 'standalone' | 'cluster';
  /** Primaries worked on (1 for a standalone server). */
  nodes: number;
  version: string;
  /** UNLINK exists from Redis 4.0; older servers get DEL. */
  deleteCommand: 'UNLINK' | 'DEL';
  /** SCAN ... TYPE exists from Redis 6.0. */
  scanType: boolean;
}

export interface CacheTarget {
  info: TargetInfo;
  nodes: CacheNode[];
  /** The cluster client (routes by slot, follows MOVED/ASK); undefined when standalone. */
  cluster: Cluster | undefined;
  /** The primary that owns a slot (cluster), or the only node. */
  ownerOf(slot: number): CacheNode | undefined;
  close(): Promise<void>;
}

export interface OpenTargetOptions {
  url: string;
  timeoutMs: number;
  /** Fail a command without reply in this time (a hung server must not hang dbops). */
  commandTimeoutMs?: number;
  connectionName?: string;
}

/** Parse `redis_version:7.0.15` style fields out of an INFO reply. */
export function infoFields(info: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of info.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

export function versionAtLeast(version: string, major: number, minor = 0): boolean {
  const [a = 0, b = 0] = version.split('.').map(Number);
  return a > major || (a === major && b >= minor);
}

export async function openTarget(opts: OpenTargetOptions): Promise<CacheTarget> {
  const endpoint = describeRedis(opts.url);
  const connectOpts = {
    url: opts.url,
    timeoutMs: opts.timeoutMs,
    connectionName: opts.connectionName ?? 'dbops-cache',
    ...(opts.commandTimeoutMs ? { commandTimeoutMs: opts.commandTimeoutMs } : {}),
  };
  const seed = await connectRedis(connectOpts);
  let server: Record<string, string>;
  try {
    server = infoFields(await seed.info('server'));
  } catch (error) {
    await closeRedis(seed);
    throw new OperationError(`Redis at ${endpoint} did not answer INFO: ${(error as Error).message}`, { cause: error });
  }
  const version = server.redis_version ?? 'unknown';
  const base = {
    endpoint,
    version,
    deleteCommand: versionAtLeast(version, 4) ? ('UNLINK' as const) : ('DEL' as const),
    scanType: versionAtLeast(version, 6),
  };
  if (server.redis_mode !== 'cluster') {
    const node: CacheNode = { id: `${seed.options.host}:${seed.options.port}`, client: seed };
    return {
      info: { ...base, db: seed.options.db ?? 0, mode: 'standalone', nodes: 1 },
      nodes: [node],
      cluster: undefined,
      ownerOf: () => node,
      close: () => closeRedis(seed),
    };
  }
  await closeRedis(seed);
  if ((seed.options.db ?? 0) !== 0) {
    throw new UsageError(
      `REDIS_URL selects database ${seed.options.db}, but ${endpoint} is a Redis Cluster, which has only database 0`,
      {
        hint: 'drop the /<db> from the URL',
      },
    );
  }
  const cluster = await connectRedisCluster(connectOpts);
  const nodes: CacheNode[] = cluster
    .nodes('master')
    .map((client) => ({ id: `${client.options.host}:${client.options.port}`, client }));
  const byId = new Map(nodes.map((n) => [n.id, n]));
  return {
    info: { ...base, db: 0, mode: 'cluster', nodes: nodes.length },
    nodes,
    cluster,
    ownerOf: (slot) => {
      const owner = cluster.slots[slot]?.[0];
      return owner === undefined ? undefined : byId.get(owner);
    },
    close: () => closeRedis(cluster),
  };
}
