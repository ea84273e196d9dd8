// Runs one dbops backfill (the built engine, dist/) in its own process so that its peak RSS is
// the backfill's alone; prints the result, the RSS and the per-batch durations as one JSON line.
import pg from 'pg';
import { runBackfill } from '../../dist/src/migrations/backfill.js';

const [url, migration, table, where, set] = process.argv.slice(2);
const client = new pg.Client({ connectionString: url });
await client.connect();
const batchMs = [];
const t0 = performance.now();
const result = await runBackfill(
  client,
  migration,
  { table, where, set },
  { onProgress: (e) => batchMs.push(e.batchMs) },
);
const wallMs = performance.now() - t0;
await client.end();
const sorted = batchMs.sort((a, b) => a - b);
process.stdout.write(
  `${JSON.stringify({ result, wallMs, maxRssMb: process.resourceUsage().maxRSS / 1024, batchesOver500ms: batchMs.filter((b) => b > 500).length, p50BatchMs: sorted[Math.floor(sorted.length / 2)] ?? 0 })}\n`,
);
