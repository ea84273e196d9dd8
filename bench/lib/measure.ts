/** Small helpers shared by the benchmarks: timing child processes, medians, tables of ratios. */
import { spawnSync } from 'node:child_process';

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
}

/** Wall time (ms) of a command, `runs` times after `warmup` discarded runs. */
export function timeCommand(
  cmd: string,
  args: string[],
  opts: { runs?: number; warmup?: number; env?: NodeJS.ProcessEnv; input?: string } = {},
): number[] {
  const times: number[] = [];
  const runs = opts.runs ?? 15;
  for (let i = 0; i < (opts.warmup ?? 2) + runs; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(cmd, args, {
      stdio: ['pipe', 'ignore', 'pipe'],
      env: opts.env ?? process.env,
      input: opts.input ?? '',
    });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.status !== 0)
      throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr?.toString().slice(0, 500)}`);
    if (i >= (opts.warmup ?? 2)) times.push(ms);
  }
  return times;
}

/**
 * Wall times (ms) of several commands run in rounds (each round runs every command once, after
 * `warmup` discarded rounds), so a change of the machine's load hits all of them alike.
 */
export function timeInterleaved<K extends string>(
  commands: Record<K, [string, string[]]>,
  opts: { runs?: number; warmup?: number; env?: NodeJS.ProcessEnv } = {},
): Record<K, number[]> {
  const out = Object.fromEntries(Object.keys(commands).map((k) => [k, [] as number[]])) as Record<K, number[]>;
  const warmup = opts.warmup ?? 2;
  for (let i = 0; i < warmup + (opts.runs ?? 15); i++) {
    for (const [name, [cmd, args]] of Object.entries(commands) as Array<[K, [string, string[]]]>) {
      const t0 = process.hrtime.bigint();
      const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: opts.env ?? process.env });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (r.status !== 0)
        throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr?.toString().slice(0, 500)}`);
      if (i >= warmup) out[name].push(ms);
    }
  }
  return out;
}

export function printTable(rows: Array<Record<string, string | number>>): void {
  const head = Object.keys(rows[0] ?? {});
  const widths = head.map((h) => Math.max(h.length, ...rows.map((r) => String(r[h]).length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  console.log(line(head));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(head.map((h) => String(r[h]))));
}

export const fmt = (n: number, digits = 1) => n.toFixed(digits);
