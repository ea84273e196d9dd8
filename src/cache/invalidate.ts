/**
 * The cache side of a data migration's invalidation (migrations/invalidation.ts drives it): precise
 * keys removed with UNLINK directly (batches of at most 1,000 names, grouped by the primary that
 * owns their slot in a cluster, a few batches in flight), patterns with `cache flush`'s SCAN +
 * UNLINK. Keys and patterns arrive with CACHE_KEY_PREFIX already applied.
 */
import type { CacheInvalidator } from '../migrations/invalidation.js';
import { deleteKeys, flushKeys } from './flush.js';
import { keySlot } from './slot.js';
import type { CacheNode, CacheTarget, OpenTargetOptions } from './target.js';

const BATCH = 1000;
const DEPTH = 4;
const SCAN_COUNT = 1000;

export function createInvalidator(target: CacheTarget): CacheInvalidator {
  return {
    endpoint: target.info.endpoint,
    unlinkKeys: (keys) => unlinkKeys(target, keys),
    unlinkPattern: async (pattern) => {
      const r = await flushKeys(target, { pattern: Buffer.from(pattern, 'utf8'), count: SCAN_COUNT, sampleSize: 0 });
      if (r.stopped === 'error') throw new Error(r.error ?? `SCAN + UNLINK of ${pattern} failed`);
      return r.removed;
    },
    countPattern: async (pattern) => {
      const r = await flushKeys(target, {
        pattern: Buffer.from(pattern, 'utf8'),
        count: SCAN_COUNT,
        sampleSize: 0,
        dryRun: true,
      });
      if (r.stopped === 'error') throw new Error(r.error ?? `SCAN of ${pattern} failed`);
      return r.matched;
    },
  };
}

/** UNLINK (DEL before Redis 4) every key; returns how many existed. */
export async function unlinkKeys(target: CacheTarget, keys: string[]): Promise<number> {
  if (!target.cluster) {
    const node = target.nodes[0];
    return node ? unlinkOnNode(target, node, keys) : 0;
  }
  const byNode = new Map<CacheNode, Buffer[]>();
  for (const k of keys) {
    const key = Buffer.from(k, 'utf8');
    const node = target.ownerOf(keySlot(key));
    if (!node) throw new Error(`no cluster node owns the slot of ${k}`);
    const list = byNode.get(node);
    if (list) list.push(key);
    else byNode.set(node, [key]);
  }
  const counts = await Promise.all([...byNode].map(([node, list]) => unlinkOnNode(target, node, list)));
  return counts.reduce((a, b) => a + b, 0);
}

/** Batches of at most 1,000 names, a few in flight; a standalone server takes the strings as they are. */
async function unlinkOnNode(target: CacheTarget, node: CacheNode, list: Array<string | Buffer>): Promise<number> {
  let removed = 0;
  let failure: unknown;
  const inflight = new Set<Promise<void>>();
  for (let i = 0; i < list.length; i += BATCH) {
    while (inflight.size >= DEPTH) await Promise.race(inflight);
    if (failure !== undefined) break;
    // Strings go only to a standalone server (deleteKeys sends them as they are); a cluster's keys are Buffers.
    const p: Promise<void> = deleteKeys(target, node, list.slice(i, i + BATCH) as Buffer[])
      .then(
        (n) => {
          removed += n;
        },
        (error: unknown) => {
          failure ??= error;
        },
      )
      .finally(() => inflight.delete(p));
    inflight.add(p);
  }
  await Promise.all(inflight);
  if (failure !== undefined) throw failure;
  return removed;
}

/**
 * The programmatic API's way to a cache for `MigrationRunner`'s `invalidation.cache`:
 * `cache: () => openCacheInvalidator({ url: process.env.REDIS_URL, timeoutMs: 5000 })`. Close it
 * when the runner is done.
 */
export async function openCacheInvalidator(
  opts: OpenTargetOptions,
): Promise<CacheInvalidator & { close(): Promise<void> }> {
  const { openTarget } = await import('./target.js');
  const target = await openTarget({ connectionName: 'dbops-invalidate', ...opts });
  return { ...createInvalidator(target), close: () => target.close() };
}
