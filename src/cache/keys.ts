/** `cache keys`: how many keys match (exact or flagged approximate), a sample, optionally their memory. */
import type { Redis } from 'ioredis';
import { type FlushProgress, type NodeFlushReport, scanAndDelete } from './flush.js';
import { displayKey } from './glob.js';
import { keySlot } from './slot.js';
import type { CacheTarget } from './target.js';

export interface KeysOptions {
  pattern: Buffer;
  count: number;
  limit: number;
  type?: string | undefined;
  memory?: boolean;
  signal?: AbortSignal | undefined;
  onProgress?: (p: FlushProgress) => void;
}

export interface KeySample {
  key: string;
  /** MEMORY USAGE in bytes (with --memory); null when the key vanished meanwhile. */
  bytes?: number | null;
}

export interface KeysResult {
  pattern: string;
  pinnedSlot?: number;
  count: number;
  /** SCAN may repeat keys or miss keys written meanwhile: true when the count may be off. */
  approximate: boolean;
  approximateReasons: string[];
  interrupted: boolean;
  scans: number;
  elapsedMs: number;
  sample: KeySample[];
  /** With --memory: bytes of the sample, and that average times the count. */
  memory?: { sampleBytes: number; sampleKeys: number; estimatedTotalBytes: number };
  nodes: NodeFlushReport[];
}

async function dbsize(client: Redis): Promise<number> {
  return Number(await client.dbsize());
}

export async function inspectKeys(target: CacheTarget, opts: KeysOptions): Promise<KeysResult> {
  const before = await Promise.all(target.nodes.map((n) => dbsize(n.client)));
  const { result, sampleKeys } = await scanAndDelete(target, {
    pattern: opts.pattern,
    count: opts.count,
    type: opts.type,
    dryRun: true,
    sampleSize: opts.limit,
    signal: opts.signal,
    onProgress: opts.onProgress,
  });
  if (result.stopped === 'error') throw new Error(result.error ?? 'scan failed');
  const after = await Promise.all(target.nodes.map((n) => dbsize(n.client)));
  const reasons: string[] = [];
  if (result.approximate) reasons.push('too many keys to de-duplicate SCAN results');
  if (before.some((b, i) => b !== after[i])) reasons.push('the keyspace changed during the scan');
  if (result.stopped === 'interrupted') reasons.push('interrupted before the scan finished');
  const sample: KeySample[] = sampleKeys.map((k) => ({ key: displayKey(k) }));
  let memory: KeysResult['memory'];
  if (opts.memory && sampleKeys.length > 0) {
    let total = 0;
    let known = 0;
    for (const [i, key] of sampleKeys.entries()) {
      const node = target.cluster ? target.ownerOf(keySlot(key)) : target.nodes[0];
      const bytes = node ? ((await node.client.call('MEMORY', 'USAGE', key, 'SAMPLES', '5')) as number | null) : null;
      (sample[i] as KeySample).bytes = bytes;
      if (bytes !== null) {
        total += bytes;
        known++;
      }
    }
    memory = {
      sampleBytes: total,
      sampleKeys: known,
      estimatedTotalBytes: known ? Math.round((total / known) * result.matched) : 0,
    };
  }
  return {
    pattern: result.pattern,
    ...(result.pinnedSlot === undefined ? {} : { pinnedSlot: result.pinnedSlot }),
    count: result.matched,
    approximate: reasons.length > 0,
    approximateReasons: reasons,
    interrupted: result.stopped === 'interrupted',
    scans: result.scans,
    elapsedMs: result.elapsedMs,
    sample,
    ...(memory ? { memory } : {}),
    nodes: result.nodes,
  };
}
