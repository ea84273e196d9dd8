/**
 * What the transaction guards cost a migration, on a private PostgreSQL, measured in this run
 * against the reference (the same statements sent with pg's `client.query` inside one transaction):
 *  1. `ctx.sql` statements, each checked before it is sent: one text repeated (a loop over a
 *     parameterised statement: its verdict is cached), every text different without a transaction
 *     keyword (no parse needed), and every text different with one (`CASE ... END`: every statement
 *     read by PostgreSQL's grammar, libpg-query). Goals: the first two <= 1.2x the reference (this machine is noisy: +-20% between runs); a
 *     statement that must be parsed costs <= 100 µs more.
 *  2. the whole transaction watched (TxWatch: protocol listener, 1 s heartbeat): a lock transaction
 *     opened and committed by PgSession against BEGIN + pg_try_advisory_xact_lock + COMMIT by hand.
 */
import pg from 'pg';
import { lockKey } from '../../src/migrations/lock.js';
import { resolveIdentity } from '../../src/migrations/session.js';
import { PgSession } from '../../src/migrations/session-pg.js';
import { createSqlTag } from '../../src/migrations/sql.js';
import { startPostgres } from '../../test/helpers/servers.js';
import { fmt, median, printTable } from '../lib/measure.js';

const STATEMENTS = Number(process.env.BENCH_STATEMENTS ?? 5000);
const runs = Number(process.env.BENCH_RUNS ?? 5);

const server = await startPostgres('embedded');
try {
  const url = await server.createDatabase('bench');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query('CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)');
  await client.query('INSERT INTO t (id) SELECT g FROM generate_series(1, 1000) g');

  const timeIt = async (fn: (i: number) => Promise<unknown>): Promise<number> => {
    await client.query('BEGIN');
    const t0 = performance.now();
    for (let i = 0; i < STATEMENTS; i++) await fn(i);
    const ms = performance.now() - t0;
    await client.query('ROLLBACK');
    return ms;
  };
  const sql = createSqlTag(client, { inTransaction: true });
  const same = 'UPDATE t SET v = v + 1 WHERE id = $1';
  const differ = (i: number) => `UPDATE t SET v = v + ${i} WHERE id = $1`;
  // CASE ... END: the keyword filter cannot rule it out, the grammar reads every one
  const keyword = (i: number) => `UPDATE t SET v = CASE WHEN v > ${i} THEN v ELSE v + 1 END WHERE id = $1`;
  const id = (i: number) => [(i % 1000) + 1];
  const cases: Array<[string, (i: number) => Promise<unknown>]> = [
    ['pg client.query, one text (reference)', (i) => client.query(same, id(i))],
    ['ctx.sql, one text', (i) => sql.query(same, id(i))],
    ['pg client.query, every text different (reference)', (i) => client.query(differ(i), id(i))],
    ['ctx.sql, every text different, no keyword', (i) => sql.query(differ(i), id(i))],
    ['pg client.query, every text different, a keyword (reference)', (i) => client.query(keyword(i), id(i))],
    ['ctx.sql, every text different, a keyword: every one parsed', (i) => sql.query(keyword(i), id(i))],
  ];
  await timeIt((i) => sql.query(`SELECT ${i}`)); // warm-up: loads the parser
  const results = new Map<string, number[]>();
  for (let r = 0; r < runs; r++)
    for (const [name, fn] of cases) results.set(name, [...(results.get(name) ?? []), await timeIt(fn)]);
  const med = (name: string) => median(results.get(name) ?? []);
  const referenceOf = (name: string) => cases[Math.floor(cases.findIndex(([n]) => n === name) / 2) * 2]?.[0] ?? '';
  const rows = cases.map(([name]) => ({
    run: name,
    'median ms': fmt(med(name)),
    'µs / statement': fmt((med(name) * 1000) / STATEMENTS),
    'x reference': fmt(med(name) / med(referenceOf(name)), 2),
  }));
  console.log(`${STATEMENTS} UPDATE statements in one transaction; PostgreSQL ${server.version}; runs=${runs}\n`);
  printTable(rows);

  // A watched lock transaction against the same by hand.
  const session = new PgSession({
    connectionString: url,
    identity: resolveIdentity({ dbopsVersion: 'bench' }),
    lockKey: lockKey('bench'),
    lockTimeoutMs: 5000,
    transactionTimeoutMs: 60_000,
  });
  const txRuns = 200;
  const byHand: number[] = [];
  const watched: number[] = [];
  for (let r = 0; r < txRuns; r++) {
    let t0 = performance.now();
    await client.query('BEGIN');
    await client.query('SELECT pg_try_advisory_xact_lock(1, 2)');
    await client.query('UPDATE t SET v = v + 1 WHERE id = 1');
    await client.query('COMMIT');
    byHand.push(performance.now() - t0);
    t0 = performance.now();
    const tx = await session.begin({ lock: true, bounded: true });
    await tx.client.query('UPDATE t SET v = v + 1 WHERE id = 1');
    await tx.verify();
    await session.commit(tx);
    watched.push(performance.now() - t0);
  }
  await session.close();
  console.log(`\n${txRuns} short lock transactions (lock, one UPDATE, commit)\n`);
  printTable([
    {
      run: 'BEGIN + advisory lock + UPDATE + COMMIT by hand (reference)',
      'median ms': fmt(median(byHand), 2),
      'x reference': '1.00',
    },
    {
      run: 'PgSession: lock + settings, watched, verify(), commit',
      'median ms': fmt(median(watched), 2),
      'x reference': fmt(median(watched) / median(byHand), 2),
    },
  ]);
  const ratio = (k: number) => med(cases[k]?.[0] ?? '') / med(cases[k - 1]?.[0] ?? '');
  const cheap = Math.max(ratio(1), ratio(3));
  const parsedUs = ((med(cases[5]?.[0] ?? '') - med(cases[4]?.[0] ?? '')) * 1000) / STATEMENTS;
  console.log(
    `\nctx.sql, statements needing no parse: <= ${fmt(cheap, 2)}x the reference (goal <= 1.2) ${cheap <= 1.2 ? 'MET' : 'NOT MET'}`,
  );
  console.log(
    `ctx.sql, a statement parsed: +${fmt(parsedUs)} µs (goal <= 100 µs) ${parsedUs <= 100 ? 'MET' : 'NOT MET'}`,
  );
  await client.end();
} finally {
  await server.stop();
}
