/** `cache stats`: memory, keys per database, hit ratio, evictions, expirations, clients; per node. */

import type { CacheTarget } from './target.js';
import { infoFields } from './target.js';

export interface NodeStats {
  node: string;
  role: string;
  version: string;
  usedMemoryBytes: number;
  peakMemoryBytes: number;
  /** 0 = no limit. */
  maxMemoryBytes: number;
  maxMemoryPolicy: string;
  /** Keys per database, e.g. { db0: 1200 }. */
  keys: Record<string, number>;
  expiringKeys: number;
  hits: number;
  misses: number;
  /** hits / (hits + misses), null before the first read. */
  hitRatio: number | null;
  evictedKeys: number;
  expiredKeys: number;
  connectedClients: number;
  uptimeSeconds: number;
}

export interface StatsResult {
  endpoint: string;
  mode: 'standalone' | 'cluster';
  nodes: NodeStats[];
  total: Omit<NodeStats, 'node' | 'role' | 'version' | 'maxMemoryPolicy' | 'uptimeSeconds'>;
}

const num = (v: string | undefined) => (v === undefined || v === '' ? 0 : Number(v));

export async function collectStats(target: CacheTarget): Promise<StatsResult> {
  const nodes = await Promise.all(
    target.nodes.map(async (n): Promise<NodeStats> => {
      const f = infoFields(await n.client.info('everything'));
      const keys: Record<string, number> = {};
      let expiring = 0;
      for (const [name, value] of Object.entries(f)) {
        const m = /^db(\d+)$/.exec(name);
        if (!m) continue;
        const parts = Object.fromEntries(value.split(',').map((kv) => kv.split('=') as [string, string]));
        keys[name] = num(parts.keys);
        expiring += num(parts.expires);
      }
      const hits = num(f.keyspace_hits);
      const misses = num(f.keyspace_misses);
      return {
        node: n.id,
        role: f.role ?? 'unknown',
        version: f.redis_version ?? 'unknown',
        usedMemoryBytes: num(f.used_memory),
        peakMemoryBytes: num(f.used_memory_peak),
        maxMemoryBytes: num(f.maxmemory),
        maxMemoryPolicy: f.maxmemory_policy ?? 'unknown',
        keys,
        expiringKeys: expiring,
        hits,
        misses,
        hitRatio: hits + misses > 0 ? hits / (hits + misses) : null,
        evictedKeys: num(f.evicted_keys),
        expiredKeys: num(f.expired_keys),
        connectedClients: num(f.connected_clients),
        uptimeSeconds: num(f.uptime_in_seconds),
      };
    }),
  );
  const sum = (pick: (s: NodeStats) => number) => nodes.reduce((a, s) => a + pick(s), 0);
  const keys: Record<string, number> = {};
  for (const s of nodes) for (const [db, k] of Object.entries(s.keys)) keys[db] = (keys[db] ?? 0) + k;
  const hits = sum((s) => s.hits);
  const misses = sum((s) => s.misses);
  return {
    endpoint: target.info.endpoint,
    mode: target.info.mode,
    nodes,
    total: {
      usedMemoryBytes: sum((s) => s.usedMemoryBytes),
      peakMemoryBytes: sum((s) => s.peakMemoryBytes),
      maxMemoryBytes: sum((s) => s.maxMemoryBytes),
      keys,
      expiringKeys: sum((s) => s.expiringKeys),
      hits,
      misses,
      hitRatio: hits + misses > 0 ? hits / (hits + misses) : null,
      evictedKeys: sum((s) => s.evictedKeys),
      expiredKeys: sum((s) => s.expiredKeys),
      connectedClients: sum((s) => s.connectedClients),
    },
  };
}
