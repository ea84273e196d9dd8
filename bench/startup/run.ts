/**
 * Start-up cost: wall time of `dbops --help` and `dbops --version` against a bare `node -e 0`,
 * measured in the same run. Goal: --help at most 2x a bare Node start.
 */
import { fileURLToPath } from 'node:url';
import { fmt, median, percentile, printTable, timeCommand } from '../lib/measure.js';

const bin = fileURLToPath(new URL('../../bin/dbops.js', import.meta.url));
const runs = Number(process.env.BENCH_RUNS ?? 30);
const env = { ...process.env, NO_COLOR: '1' };
const node = timeCommand(process.execPath, ['-e', '0'], { runs, env });
const help = timeCommand(process.execPath, [bin, '--help'], { runs, env });
const version = timeCommand(process.execPath, [bin, '--version'], { runs, env });
const base = median(node);
printTable(
  [
    ['node -e 0 (reference)', node],
    ['dbops --help', help],
    ['dbops --version', version],
  ].map(([name, t]) => ({
    command: name as string,
    'median ms': fmt(median(t as number[])),
    'p90 ms': fmt(percentile(t as number[], 90)),
    'x node': fmt(median(t as number[]) / base, 2),
  })),
);
const ratio = median(help) / base;
console.log(`\n--help / node -e 0 = ${fmt(ratio, 2)} (goal <= 2.00) ${ratio <= 2 ? 'MET' : 'NOT MET'}   runs=${runs}`);
