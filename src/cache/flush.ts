/**
 * `cache flush`: delete the keys matching a pattern without ever blocking Redis.
 *
 * Per primary: SCAN cursor MATCH p COUNT n [TYPE t] (binary-safe), each non-empty batch removed
 * with one variadic UNLINK (DEL before Redis 4), at most `depth` UNLINKs in flight so the delete of
 * batch n overlaps the SCAN of batch n+1. In a cluster the batch is grouped by slot (a variadic
 * UNLINK must stay in one slot) and sent as one pipeline to the node that returned it; MOVED/ASK
 * replies are re-sent through the cluster client, which follows them. Primaries run in parallel.
 *
 * The count reported is the sum of the UNLINK replies: keys that were really removed. SCAN is not
 * atomic, so keys written during the run may survive; a re-run is idempotent and finishes the job.
 */
import { OperationError } from '../errors.js';
import { sleep } from '../util/sleep.js';
import { displayKey, pinnedHashInput } from './glob.js';
import { SeenKeys, scanStep } from './scan.js';
import { keySlot } from './slot.js';
import type { CacheNode, CacheTarget } from './target.js';

export interface FlushOptions {
  /** The pattern as sent to SCAN MATCH (key prefix already applied). */
  pattern: Buffer;
  /** SCAN COUNT hint per call. */
  count: number;
  /** Sleep between batches, per node. */
  pauseMs?: number;
  /** Stop after this many deletions (nodes are then worked one at a time, one batch in flight). */
  maxKeys?: number | undefined;
  /** SCAN TYPE filter (Redis >= 6). */
  type?: string | undefined;
  /** Scan and count only; delete nothing. */
  dryRun?: boolean;
  /** UNLINK batches in flight per node (default 2). */
  depth?: number;
  /** How many matching key names to return as a sample (default 20). */
  sampleSize?: number;
  /** Stop after the current batch when aborted. */
  signal?: AbortSignal | undefined;
  onProgress?: (p: FlushProgress) => void;
}

export interface FlushProgress {
  scans: number;
  matched: number;
  removed: number;
  nodesDone: number;
  nodes: number;
  elapsedMs: number;
}

export interface NodeFlushReport {
  node: string;
  scans: number;
  /** Keys SCAN returned (may count a key twice: SCAN can repeat keys). */
  matched: number;
  removed: number;
  /** The node's SCAN reached cursor 0. */
  complete: boolean;
  error?: string;
}

export type StopReason = 'done' | 'max-keys' | 'interrupted' | 'error';

export interface FlushResult {
  dryRun: boolean;
  /** The pattern as sent to the server, for display. */
  pattern: string;
  /** Set when the pattern pins one hash slot: only its owner is scanned (cluster). */
  pinnedSlot?: number;
  /** Dry run: distinct matching keys; flush: keys SCAN returned. */
  matched: number;
  /** Sum of UNLINK (or DEL) replies. */
  removed: number;
  /** True when `matched` may be off: SCAN duplicates, or too many keys to de-duplicate. */
  approximate: boolean;
  scans: number;
  elapsedMs: number;
  /** Removed (or, in a dry run, matched) keys per second. */
  keysPerSecond: number;
  stopped: StopReason;
  error?: string;
  sample: string[];
  nodes: NodeFlushReport[];
}

/** Keys de-duplicated in a dry run before counts become approximate (bounds memory). */
const DEDUPE_CAP = 500_000;

interface Shared {
  started: number;
  scans: number;
  matched: number;
  removed: number;
  nodesDone: number;
  sample: Buffer[];
  seen: SeenKeys | undefined;
  stop: StopReason | undefined;
  error: unknown;
}

export async function flushKeys(target: CacheTarget, opts: FlushOptions): Promise<FlushResult> {
  return (await scanAndDelete(target, opts)).result;
}

/** The flush loop; also returns the sample as raw key bytes (for MEMORY USAGE in `cache keys`). */
export async function scanAndDelete(
  target: CacheTarget,
  opts: FlushOptions,
): Promise<{ result: FlushResult; sampleKeys: Buffer[] }> {
  const pinnedInput = target.cluster ? pinnedHashInput(opts.pattern) : undefined;
  const pinnedSlot = pinnedInput === undefined ? undefined : keySlot(pinnedInput);
  let nodes = target.nodes;
  if (pinnedSlot !== undefined) {
    const owner = target.ownerOf(pinnedSlot);
    if (!owner)
      throw new OperationError(`no cluster node owns slot ${pinnedSlot}`, {
        hint: 'check CLUSTER SLOTS; is the cluster healthy?',
      });
    nodes = [owner];
  }
  const shared: Shared = {
    started: Date.now(),
    scans: 0,
    matched: 0,
    removed: 0,
    nodesDone: 0,
    sample: [],
    seen: opts.dryRun ? new SeenKeys(DEDUPE_CAP) : undefined,
    stop: undefined,
    error: undefined,
  };
  const reports = nodes.map(
    (n): NodeFlushReport => ({ node: n.id, scans: 0, matched: 0, removed: 0, complete: false }),
  );
  const progress = () =>
    opts.onProgress?.({
      scans: shared.scans,
      matched: shared.matched,
      removed: shared.removed,
      nodesDone: shared.nodesDone,
      nodes: nodes.length,
      elapsedMs: Date.now() - shared.started,
    });

  const limited = opts.maxKeys !== undefined && !opts.dryRun;
  if (limited) {
    // An exact --max-keys needs to know every reply before sending more: one node, one batch at a time.
    for (const [i, node] of nodes.entries()) {
      if (shared.stop) break;
      await walkNode(target, node, reports[i] as NodeFlushReport, shared, { ...opts, depth: 1 }, progress);
    }
  } else {
    await Promise.all(
      nodes.map((node, i) => walkNode(target, node, reports[i] as NodeFlushReport, shared, opts, progress)),
    );
  }
  progress();
  const elapsedMs = Date.now() - shared.started;
  const stopped: StopReason = shared.stop ?? 'done';
  const counted = opts.dryRun ? shared.matched : shared.removed;
  const result: FlushResult = {
    dryRun: Boolean(opts.dryRun),
    pattern: displayKey(opts.pattern),
    ...(pinnedSlot === undefined ? {} : { pinnedSlot }),
    matched: shared.matched,
    removed: shared.removed,
    approximate: opts.dryRun ? Boolean(shared.seen?.overflow) : shared.matched !== shared.removed,
    scans: shared.scans,
    elapsedMs,
    keysPerSecond: elapsedMs > 0 ? Math.round((counted * 1000) / elapsedMs) : counted,
    stopped,
    ...(shared.error === undefined ? {} : { error: errorText(shared.error) }),
    sample: shared.sample.map(displayKey),
    nodes: reports,
  };
  return { result, sampleKeys: shared.sample };
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));

async function walkNode(
  target: CacheTarget,
  node: CacheNode,
  report: NodeFlushReport,
  shared: Shared,
  opts: FlushOptions,
  progress: () => void,
): Promise<void> {
  const depth = Math.max(1, opts.depth ?? 2);
  const sampleSize = opts.sampleSize ?? 20;
  const inflight = new Set<Promise<void>>();
  const fail = (error: unknown) => {
    report.error ??= errorText(error);
    if (shared.error === undefined) shared.error = error;
    shared.stop = 'error';
  };
  const send = (keys: Buffer[]) => {
    const p: Promise<void> = deleteKeys(target, node, keys)
      .then((n) => {
        report.removed += n;
        shared.removed += n;
      }, fail)
      .finally(() => inflight.delete(p));
    inflight.add(p);
  };
  let cursor = '0';
  try {
    do {
      if (opts.signal?.aborted) {
        shared.stop ??= 'interrupted';
        break;
      }
      if (shared.stop) break;
      const step = await scanStep(node.client, cursor, opts);
      cursor = step.cursor;
      report.scans++;
      shared.scans++;
      let keys = step.keys;
      if (shared.seen) keys = keys.filter((k) => shared.seen?.add(k));
      report.matched += keys.length;
      shared.matched += keys.length;
      for (const k of keys) {
        if (shared.sample.length >= sampleSize) break;
        shared.sample.push(k);
      }
      if (keys.length > 0 && !opts.dryRun) {
        if (opts.maxKeys !== undefined) {
          // depth is 1 here: every earlier reply is known, so the budget is exact.
          let rest = keys;
          while (rest.length > 0 && shared.removed < opts.maxKeys) {
            const take = rest.slice(0, opts.maxKeys - shared.removed);
            rest = rest.slice(take.length);
            send(take);
            await Promise.all(inflight);
            if (shared.stop) break;
          }
          if (shared.removed >= opts.maxKeys) shared.stop ??= 'max-keys';
        } else {
          while (inflight.size >= depth) await Promise.race(inflight);
          send(keys);
        }
      }
      progress();
      if (opts.pauseMs) await sleep(opts.pauseMs, opts.signal);
    } while (cursor !== '0');
    if (cursor === '0') report.complete = true;
  } catch (error) {
    fail(error);
  } finally {
    // Never report before the last delete has answered.
    await Promise.all(inflight);
    if (report.complete && report.error !== undefined) report.complete = false;
    shared.nodesDone++;
  }
}

/** The slot moved or is moving (resharding): MOVED/ASK are followed; TRYAGAIN (a multi-key command
 * during a slot migration) is retried through the cluster client key by key after a short pause. */
const REDIRECT = /^(MOVED|ASK) /;
const TRYAGAIN = /^TRYAGAIN/;

/** Delete one batch; returns how many keys the server removed. Argument lists stay ≤ a SCAN batch. */
export async function deleteKeys(target: CacheTarget, node: CacheNode, keys: Buffer[]): Promise<number> {
  const command = target.info.deleteCommand;
  if (!target.cluster) return Number(await node.client.call(command, ...keys));
  const bySlot = new Map<number, Buffer[]>();
  for (const k of keys) {
    const slot = keySlot(k);
    const group = bySlot.get(slot);
    if (group) group.push(k);
    else bySlot.set(slot, [k]);
  }
  const groups = [...bySlot.values()];
  const pipeline = node.client.pipeline();
  for (const g of groups) pipeline.call(command, ...g);
  const replies = (await pipeline.exec()) ?? [];
  let removed = 0;
  const redirected: Buffer[][] = [];
  const retryKeys: Buffer[] = [];
  for (const [i, [error, value]] of replies.entries()) {
    if (error) {
      // The slot moved (resharding): the cluster client routes by slot and follows MOVED/ASK.
      if (REDIRECT.test(error.message)) redirected.push(groups[i] as Buffer[]);
      else if (TRYAGAIN.test(error.message)) retryKeys.push(...(groups[i] as Buffer[]));
      else throw error;
    } else {
      removed += Number(value);
    }
  }
  for (const g of redirected) removed += Number(await target.cluster.call(command, ...g));
  if (retryKeys.length > 0) {
    await sleep(100);
    // One key at a time: a single-key command is never refused with TRYAGAIN while a slot moves.
    for (const k of retryKeys) removed += Number(await target.cluster.call(command, k));
  }
  return removed;
}
