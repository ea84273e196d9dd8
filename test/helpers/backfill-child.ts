/**
 * A real process that runs one backfill, for crash and signal tests (run with jiti). Settings come
 * from BF_* variables; it prints one JSON line per committed batch on stdout, wires SIGINT/SIGTERM
 * to the engine's AbortSignal like the CLI does, and exits with the error's exit code.
 * BF_HANG_AT=n: in batch n (run() mode), after the UPDATE, print {"hanging":n} and wait forever,
 * so a test can SIGKILL it inside an open batch transaction.
 */
import pg from 'pg';
import { isDbopsError, messageOf } from '../../src/errors.js';
import { runBackfill } from '../../src/migrations/backfill.js';
import type { BackfillSpec } from '../../src/migrations/backfill-types.js';

const env = process.env;
const controller = new AbortController();
for (const s of ['SIGINT', 'SIGTERM'] as const) process.on(s, () => controller.abort(s));

const client = new pg.Client({ connectionString: env.BF_URL });
client.on('error', () => {});
await client.connect();
const table = env.BF_TABLE as string;
const hangAt = env.BF_HANG_AT ? Number(env.BF_HANG_AT) : undefined;
let batch = 0;
const spec: BackfillSpec = hangAt
  ? {
      table,
      run: async (keys, tx) => {
        batch++;
        await tx.query(`UPDATE ${table} SET counter = counter + 1 WHERE id = ANY($1::bigint[])`, [keys]);
        if (batch === hangAt) {
          process.stdout.write(`${JSON.stringify({ hanging: batch })}\n`);
          await new Promise(() => setInterval(() => {}, 1000));
        }
        return keys.length;
      },
    }
  : { table, set: env.BF_SET ?? 'counter = counter + 1', ...(env.BF_WHERE ? { where: env.BF_WHERE } : {}) };
try {
  const r = await runBackfill(client, env.BF_MIGRATION ?? 'child', spec, {
    batchSize: Number(env.BF_BATCH ?? 100),
    targetBatchMs: 0,
    pauseMs: Number(env.BF_PAUSE ?? 0),
    signal: controller.signal,
    onProgress: (e) => {
      process.stdout.write(`${JSON.stringify({ batches: e.batches, rowsDone: e.rowsDone, lastKey: e.lastKey })}\n`);
    },
  });
  process.stdout.write(`${JSON.stringify({ done: r })}\n`);
  await client.end();
  process.exit(0);
} catch (error) {
  process.stderr.write(`${messageOf(error)}\n${isDbopsError(error) && error.hint ? `hint: ${error.hint}\n` : ''}`);
  process.exit(isDbopsError(error) ? error.exitCode : 1);
}
