/**
 * Race suite (docs/reliability.md): 16 concurrent `dbops migrate up` processes per round, with side
 * effects no rollback can undo, directly, through PgBouncer transaction pooling, and under every
 * server-side guard set low (on the server, and on PgBouncer). Figures: double applications (must
 * be 0), failed runs, time to converge.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { runDbops } from '../helpers/cli.js';
import { withClient } from '../helpers/migrations.js';
import { appliedNames, median, writeFigures } from '../helpers/reliability.js';
import { type PgBouncerServer, startPgBouncer } from '../helpers/servers.js';
import { createTestDatabase, services, type TestDatabase } from '../helpers/services.js';
import { cleanEnvFor } from '../helpers/suite-env.js';
import { ITEMS, prepareSuiteDb, SUITE_MIGRATIONS, sideEffects, suiteFolder } from '../helpers/suite-migrations.js';

const RUNNERS = 16;
const dbs: TestDatabase[] = [];
const bouncers: PgBouncerServer[] = [];
const figures: Record<
  string,
  { rounds: number; runs: number; doubleApplications: number; failedRuns: number; convergeMs: number[] }
> = {};
const suiteStarted = performance.now();

afterAll(async () => {
  for (const b of bouncers) await b.stop().catch(() => {});
  for (const db of dbs) await db.drop().catch(() => {});
  const rows = Object.fromEntries(
    Object.entries(figures).map(([k, f]) => [
      k,
      {
        ...f,
        convergeMs: undefined,
        convergeMedianMs: Math.round(median(f.convergeMs)),
        convergeMaxMs: Math.round(Math.max(0, ...f.convergeMs)),
      },
    ]),
  );
  writeFigures('race', {
    runnersPerRound: RUNNERS,
    configurations: rows,
    durationMs: Math.round(performance.now() - suiteStarted),
  });
});

/** Server guards set low on the database (transaction_timeout on PostgreSQL 17+ only). */
function serverGuards(): Record<string, string> {
  return {
    idle_in_transaction_session_timeout: '1s',
    idle_session_timeout: '1s',
    statement_timeout: '1s',
    lock_timeout: '500ms',
    ...(services().pg.version >= 17 ? { transaction_timeout: '1s' } : {}),
  };
}

/** PgBouncer's guards set low, and a small pool. */
const BOUNCER_GUARDS = {
  idle_transaction_timeout: 2,
  client_idle_timeout: 2,
  query_wait_timeout: 2,
  query_timeout: 5,
  server_lifetime: 1,
  server_idle_timeout: 1,
  default_pool_size: 4,
};

const configurations: Array<{
  name: string;
  via: 'direct' | 'pgbouncer' | 'guarded-pgbouncer';
  guards: boolean;
  rounds: number;
}> = [
  { name: 'direct', via: 'direct', guards: false, rounds: 2 },
  { name: 'PgBouncer transaction pooling', via: 'pgbouncer', guards: false, rounds: 2 },
  { name: 'direct, server guards low', via: 'direct', guards: true, rounds: 2 },
  { name: 'PgBouncer guards low (+ server guards low)', via: 'guarded-pgbouncer', guards: true, rounds: 2 },
];

describe('race suite: 16 concurrent `migrate up` per round', () => {
  it.each(configurations)(
    '$name: every migration applied exactly once, every run converges',
    async ({ name, via, guards, rounds }) => {
      let bouncer: PgBouncerServer | undefined;
      if (via === 'guarded-pgbouncer') {
        bouncer = await startPgBouncer(services().pg.port, BOUNCER_GUARDS);
        bouncers.push(bouncer);
      }
      const dir = suiteFolder({ idempotentSide: false });
      const f = { rounds: 0, runs: 0, doubleApplications: 0, failedRuns: 0, convergeMs: [] as number[] };
      figures[name] = f;
      for (let round = 0; round < rounds; round++) {
        const db = await createTestDatabase();
        dbs.push(db);
        await withClient(db.url, async (c) => {
          await prepareSuiteDb(c);
          if (guards)
            for (const [k, v] of Object.entries(serverGuards()))
              await c.query(`ALTER DATABASE ${db.name} SET ${k} = '${v}'`);
        });
        const url =
          via === 'direct' ? db.url : via === 'pgbouncer' ? db.bouncerUrl : (bouncer as PgBouncerServer).url(db.name);
        const t0 = performance.now();
        const results = await Promise.all(
          Array.from({ length: RUNNERS }, () =>
            runDbops(['migrate', 'up', '--lock-timeout', '120s', '--max-rows-per-second', '500'], {
              env: cleanEnvFor(url, dir),
              timeoutMs: 180_000,
            }),
          ),
        );
        f.convergeMs.push(performance.now() - t0);
        f.rounds++;
        f.runs += results.length;
        const failed = results.filter((r) => r.code !== 0);
        f.failedRuns += failed.length;
        const seen = await withClient(db.url, (c) => sideEffects(c));
        const doubles =
          Object.values(seen.audit).filter((n) => n > 1).length +
          Object.values(seen.side).filter((n) => n > 1).length +
          Object.entries(seen.items).filter(([counter]) => Number(counter) > 1).length;
        f.doubleApplications += doubles;
        expect(
          failed.map((r) => r.stderr.slice(-600)),
          'failed runs',
        ).toEqual([]);
        expect(seen).toEqual({ audit: { first: 1, middle: 1 }, side: { backfill: 1, no_tx: 1 }, items: { 1: ITEMS } });
        expect(await appliedNames(db.url, dir)).toEqual(SUITE_MIGRATIONS);
        // the work was shared out, and the others saw it done
        const applied = results.map((r) => (r.stderr.match(/✔ applied/g) ?? []).length).reduce((a, b) => a + b, 0);
        expect(applied).toBe(SUITE_MIGRATIONS.length);
      }
    },
  );
});
