/** Renderers for `cache flush`, `cache keys` and `cache stats` results. */
import type { ChalkInstance } from 'chalk';
import type { FlushProgress, FlushResult } from '../cache/flush.js';
import type { KeysResult } from '../cache/keys.js';
import type { StatsResult } from '../cache/stats.js';
import type { TargetInfo } from '../cache/target.js';
import { formatDuration, percentOf, renderBar } from './backfill.js';
import { renderKeyValue, renderTable } from './table.js';

const n = (v: number) => v.toLocaleString('en-US');
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/**
 * The live line of a flush or a scan. With a known total (a flush confirmed after its preview
 * counted the keys) a bar, the percentage and an ETA; without one, counts and the rate.
 */
export function renderFlushProgress(
  progress: FlushProgress,
  opts: { dryRun: boolean; total?: number; bar: boolean },
): string {
  const secs = Math.max(progress.elapsedMs / 1000, 0.001);
  const done = opts.dryRun ? progress.matched : progress.removed;
  const rate = done / secs;
  const nodes = progress.nodes > 1 ? `  ${progress.nodesDone}/${progress.nodes} primaries done` : '';
  if (opts.dryRun)
    return `scanning  ${n(progress.scans)} SCAN calls  ${n(progress.matched)} matching keys  ${n(Math.round(rate))}/s${nodes}`;
  if (opts.total && opts.total > 0) {
    const pct = percentOf(done, opts.total);
    const eta = rate > 0 && done < opts.total ? formatDuration(((opts.total - done) / rate) * 1000) : '?';
    return [
      'flushing',
      ...(opts.bar ? [renderBar(pct)] : []),
      `${pct.toFixed(1)}%`,
      `${n(done)}/${n(opts.total)} keys`,
      `${n(Math.round(rate))} keys/s`,
      `ETA ${eta}${nodes}`,
    ].join('  ');
  }
  return `flushing  ${n(progress.matched)} matched  ${n(progress.removed)} removed  ${n(Math.round(rate))} keys/s${nodes}`;
}

export function bytes(value: number): string {
  if (value < 1024) return `${value} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let x = value / 1024;
  let i = 0;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${x.toFixed(1)} ${units[i]}`;
}

const targetLine = (endpoint: string, t: TargetInfo) =>
  `${endpoint} (${t.mode}, db ${t.db}, ${t.nodes} ${t.nodes === 1 ? 'node' : 'primaries'}, Redis ${t.version})`;

const STOPPED: Record<FlushResult['stopped'], string> = {
  done: 'finished',
  'max-keys': 'stopped at --max-keys',
  interrupted: 'interrupted (Ctrl-C)',
  error: 'stopped by an error',
};

export function renderFlush(
  result: FlushResult & { endpoint: string; target: TargetInfo },
  paint: ChalkInstance,
  colour: boolean,
): string {
  const pairs: Array<[string, string | number]> = [
    ['target', targetLine(result.endpoint, result.target)],
    ['pattern', result.pattern + (result.pinnedSlot === undefined ? '' : ` (hash slot ${result.pinnedSlot} only)`)],
  ];
  if (result.dryRun) {
    pairs.push(['matching keys', `${n(result.matched)}${result.approximate ? ' (approximate)' : ''}`]);
  } else {
    pairs.push(
      ['removed', n(result.removed)],
      [
        'returned by SCAN',
        `${n(result.matched)}${result.matched !== result.removed ? ' (includes repeats or keys already gone)' : ''}`,
      ],
    );
  }
  pairs.push(
    ['SCAN calls', n(result.scans)],
    ['time', secs(result.elapsedMs)],
    [result.dryRun ? 'keys/s scanned' : 'keys/s removed', n(result.keysPerSecond)],
    [
      'result',
      result.stopped === 'done' ? (result.dryRun ? 'dry run: nothing deleted' : STOPPED.done) : STOPPED[result.stopped],
    ],
  );
  if (result.error) pairs.push(['error', result.error]);
  const lines = [renderKeyValue(pairs, colour)];
  if (result.nodes.length > 1) {
    lines.push(
      renderTable({
        head: ['primary', 'SCAN calls', 'matched', 'removed', 'complete'],
        rows: result.nodes.map((x) => [
          x.node,
          n(x.scans),
          n(x.matched),
          n(x.removed),
          x.error ? paint.red(`no: ${x.error}`) : x.complete ? 'yes' : 'no',
        ]),
        colour,
        alignRight: [1, 2, 3],
      }),
    );
  }
  if (result.dryRun && result.sample.length > 0)
    lines.push(`sample:\n${result.sample.map((k) => `  ${k}`).join('\n')}`);
  return lines.join('\n');
}

export function renderKeys(
  result: KeysResult & { endpoint: string; target: TargetInfo },
  paint: ChalkInstance,
  colour: boolean,
): string {
  const pairs: Array<[string, string | number]> = [
    ['target', targetLine(result.endpoint, result.target)],
    ['pattern', result.pattern + (result.pinnedSlot === undefined ? '' : ` (hash slot ${result.pinnedSlot} only)`)],
    [
      'matching keys',
      `${n(result.count)}${result.approximate ? ` (approximate: ${result.approximateReasons.join('; ')})` : ''}`,
    ],
    ['SCAN calls', n(result.scans)],
    ['time', secs(result.elapsedMs)],
  ];
  if (result.memory) {
    pairs.push(
      ['sample memory', `${bytes(result.memory.sampleBytes)} in ${n(result.memory.sampleKeys)} keys`],
      ['estimated total', `~${bytes(result.memory.estimatedTotalBytes)}`],
    );
  }
  const lines = [renderKeyValue(pairs, colour)];
  if (result.nodes.length > 1) {
    lines.push(
      renderTable({
        head: ['primary', 'SCAN calls', 'matching'],
        rows: result.nodes.map((x) => [x.node, n(x.scans), n(x.matched)]),
        colour,
        alignRight: [1, 2],
      }),
    );
  }
  if (result.sample.length > 0) {
    const withMem = result.sample.some((s) => s.bytes !== undefined);
    lines.push(
      withMem
        ? renderTable({
            head: ['sample key', 'memory'],
            rows: result.sample.map((s) => [
              s.key,
              s.bytes === null || s.bytes === undefined ? paint.dim('gone') : bytes(s.bytes),
            ]),
            colour,
            alignRight: [1],
          })
        : `sample:\n${result.sample.map((s) => `  ${s.key}`).join('\n')}`,
    );
  }
  return lines.join('\n');
}

const ratio = (v: number | null) => (v === null ? 'n/a' : `${(v * 100).toFixed(1)}%`);
const keysText = (k: Record<string, number>) =>
  Object.entries(k)
    .map(([db, v]) => `${db}=${n(v)}`)
    .join(' ') || '0';

export function renderStats(result: StatsResult & { endpoint: string; target: TargetInfo }, colour: boolean): string {
  const head = [
    'node',
    'role',
    'version',
    'memory used',
    'peak',
    'maxmemory',
    'keys',
    'hit ratio',
    'hits',
    'misses',
    'evicted',
    'expired',
    'clients',
  ];
  const rows = result.nodes.map((s) => [
    s.node,
    s.role,
    s.version,
    bytes(s.usedMemoryBytes),
    bytes(s.peakMemoryBytes),
    s.maxMemoryBytes ? `${bytes(s.maxMemoryBytes)} ${s.maxMemoryPolicy}` : `none (${s.maxMemoryPolicy})`,
    keysText(s.keys),
    ratio(s.hitRatio),
    n(s.hits),
    n(s.misses),
    n(s.evictedKeys),
    n(s.expiredKeys),
    n(s.connectedClients),
  ]);
  if (result.nodes.length > 1) {
    const t = result.total;
    rows.push([
      'total',
      '',
      '',
      bytes(t.usedMemoryBytes),
      bytes(t.peakMemoryBytes),
      t.maxMemoryBytes ? bytes(t.maxMemoryBytes) : '',
      keysText(t.keys),
      ratio(t.hitRatio),
      n(t.hits),
      n(t.misses),
      n(t.evictedKeys),
      n(t.expiredKeys),
      n(t.connectedClients),
    ]);
  }
  return `${targetLine(result.endpoint, result.target)}\n${renderTable({
    head,
    rows,
    colour,
    alignRight: [3, 4, 7, 8, 9, 10, 11, 12],
    // a narrow terminal keeps node, memory, maxmemory, keys, hit ratio and evictions
    droppable: [8, 9, 11, 2, 1, 4, 12],
    keep: [0],
  })}`;
}
