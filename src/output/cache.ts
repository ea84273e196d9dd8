/** Renderers for `cache flush`, `cache keys` and `cache stats` results. */
import type { ChalkInstance } from 'chalk';
import type { FlushResult } from '../cache/flush.js';
import type { KeysResult } from '../cache/keys.js';
import type { StatsResult } from '../cache/stats.js';
import type { TargetInfo } from '../cache/target.js';
import { renderKeyValue, renderTable } from './table.js';

const n = (v: number) => v.toLocaleString('en-US');
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

export function bytes(v: number): string {
  if (v < 1024) return `${v} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let x = v / 1024;
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

export function renderFlush(r: FlushResult & { endpoint: string; target: TargetInfo }, c: ChalkInstance, colour: boolean): string {
  const pairs: Array<[string, string | number]> = [
    ['target', targetLine(r.endpoint, r.target)],
    ['pattern', r.pattern + (r.pinnedSlot === undefined ? '' : ` (hash slot ${r.pinnedSlot} only)`)],
  ];
  if (r.dryRun) {
    pairs.push(['matching keys', `${n(r.matched)}${r.approximate ? ' (approximate)' : ''}`]);
  } else {
    pairs.push(['removed', n(r.removed)], ['returned by SCAN', `${n(r.matched)}${r.matched !== r.removed ? ' (includes repeats or keys already gone)' : ''}`]);
  }
  pairs.push(
    ['SCAN calls', n(r.scans)],
    ['time', secs(r.elapsedMs)],
    [r.dryRun ? 'keys/s scanned' : 'keys/s removed', n(r.keysPerSecond)],
    ['result', r.stopped === 'done' ? (r.dryRun ? 'dry run: nothing deleted' : STOPPED.done) : STOPPED[r.stopped]],
  );
  if (r.error) pairs.push(['error', r.error]);
  const lines = [renderKeyValue(pairs, colour)];
  if (r.nodes.length > 1) {
    lines.push(
      renderTable({
        head: ['primary', 'SCAN calls', 'matched', 'removed', 'complete'],
        rows: r.nodes.map((x) => [x.node, n(x.scans), n(x.matched), n(x.removed), x.error ? c.red(`no: ${x.error}`) : x.complete ? 'yes' : 'no']),
        colour,
        alignRight: [1, 2, 3],
      }),
    );
  }
  if (r.dryRun && r.sample.length > 0) lines.push(`sample:\n${r.sample.map((k) => `  ${k}`).join('\n')}`);
  return lines.join('\n');
}

export function renderKeys(r: KeysResult & { endpoint: string; target: TargetInfo }, c: ChalkInstance, colour: boolean): string {
  const pairs: Array<[string, string | number]> = [
    ['target', targetLine(r.endpoint, r.target)],
    ['pattern', r.pattern + (r.pinnedSlot === undefined ? '' : ` (hash slot ${r.pinnedSlot} only)`)],
    ['matching keys', `${n(r.count)}${r.approximate ? ` (approximate: ${r.approximateReasons.join('; ')})` : ''}`],
    ['SCAN calls', n(r.scans)],
    ['time', secs(r.elapsedMs)],
  ];
  if (r.memory) {
    pairs.push(
      ['sample memory', `${bytes(r.memory.sampleBytes)} in ${n(r.memory.sampleKeys)} keys`],
      ['estimated total', `~${bytes(r.memory.estimatedTotalBytes)}`],
    );
  }
  const lines = [renderKeyValue(pairs, colour)];
  if (r.nodes.length > 1) {
    lines.push(
      renderTable({ head: ['primary', 'SCAN calls', 'matching'], rows: r.nodes.map((x) => [x.node, n(x.scans), n(x.matched)]), colour, alignRight: [1, 2] }),
    );
  }
  if (r.sample.length > 0) {
    const withMem = r.sample.some((s) => s.bytes !== undefined);
    lines.push(
      withMem
        ? renderTable({
            head: ['sample key', 'memory'],
            rows: r.sample.map((s) => [s.key, s.bytes === null || s.bytes === undefined ? c.dim('gone') : bytes(s.bytes)]),
            colour,
            alignRight: [1],
          })
        : `sample:\n${r.sample.map((s) => `  ${s.key}`).join('\n')}`,
    );
  }
  return lines.join('\n');
}

const ratio = (v: number | null) => (v === null ? 'n/a' : `${(v * 100).toFixed(1)}%`);
const keysText = (k: Record<string, number>) =>
  Object.entries(k)
    .map(([db, v]) => `${db}=${n(v)}`)
    .join(' ') || '0';

export function renderStats(r: StatsResult & { endpoint: string; target: TargetInfo }, colour: boolean): string {
  const head = ['node', 'role', 'version', 'memory used', 'peak', 'maxmemory', 'keys', 'hit ratio', 'hits', 'misses', 'evicted', 'expired', 'clients'];
  const rows = r.nodes.map((s) => [
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
  if (r.nodes.length > 1) {
    const t = r.total;
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
  return `${targetLine(r.endpoint, r.target)}\n${renderTable({ head, rows, colour, alignRight: [3, 4, 7, 8, 9, 10, 11, 12] })}`;
}
