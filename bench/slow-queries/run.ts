/**
 * slow-queries report cost with 5,000 distinct statements in pg_stat_statements: wall time of
 * `dbops slow-queries --json`, of `dbops --version` (Node start-up, which no report avoids) and of
 * psql running the equivalent single top-N query, in the same run.
 * Goal: (slow-queries − --version) ≤ 1.5 × psql's whole wall time.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { parsePgssVersion, pgssColumns } from '../../src/diagnostics/pgss-version.js';
import { topSql } from '../../src/diagnostics/slow-queries-read.js';
import { startPostgres } from '../../test/helpers/servers.js';
import { fmt, median, percentile, printTable, timeCommand } from '../lib/measure.js';

const STATEMENTS = 5000;
const TABLES = 50;
const COLS = 10; // TABLES × COLS × COLS distinct (column, filter) pairs = 5,000 queryids
const runs = Number(process.env.BENCH_RUNS ?? 15);
const bin = fileURLToPath(new URL('../../bin/dbops.js', import.meta.url));

function psqlBinary(): string {
  for (const p of ['/usr/bin/psql', '/usr/lib/postgresql/15/bin/psql']) {
    if (spawnSync(p, ['--version']).status === 0) return p;
  }
  throw new Error('psql not found (apt-get install postgresql-client)');
}

const server = await startPostgres('embedded', { 'pg_stat_statements.max': 10000 });
const dir = mkdtempSync(join(tmpdir(), 'dbops-bench-slow-'));
try {
  await server.createDatabase('bench');
  const url = server.url('bench');
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query('CREATE EXTENSION pg_stat_statements');
  const cols = Array.from({ length: COLS }, (_, i) => `c${i} int`).join(', ');
  for (let t = 0; t < TABLES; t++) await c.query(`CREATE TABLE t${t} (${cols})`);
  await c.query('SELECT pg_stat_statements_reset()');
  // One script through psql: 5,000 distinct statements, each run a few times.
  const lines: string[] = [];
  for (let t = 0; t < TABLES; t++) {
    for (let a = 0; a < COLS; a++) {
      for (let b = 0; b < COLS; b++) lines.push(`SELECT c${a} FROM t${t} WHERE c${b} = ${(t + a + b) % 7};`);
    }
  }
  const script = join(dir, 'workload.sql');
  writeFileSync(script, `${lines.join('\n')}\n${lines.slice(0, 500).join('\n')}\n`);
  const psql = psqlBinary();
  const load = spawnSync(psql, ['-X', '-q', '-d', url, '-f', script], { stdio: ['ignore', 'ignore', 'pipe'] });
  if (load.status !== 0) throw new Error(`workload failed: ${load.stderr}`);
  const count = await c.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'bench')`,
  );
  const ext = await c.query<{ v: string }>(
    `SELECT extversion AS v FROM pg_extension WHERE extname = 'pg_stat_statements'`,
  );
  await c.end();
  const entries = count.rows[0]?.n ?? 0;
  if (entries < STATEMENTS)
    throw new Error(`only ${entries} statements in pg_stat_statements, expected ≥ ${STATEMENTS}`);

  // The equivalent single query: the same top-20 SQL dbops sends, with the limit inlined.
  const sql = topSql(pgssColumns(parsePgssVersion(ext.rows[0]?.v ?? '1.12')), 'total', false)
    .replace('LIMIT $1', 'LIMIT 20')
    .replaceAll('$2', '100')
    .replaceAll('$3', '20');
  const env = { ...process.env, NO_COLOR: '1', DATABASE_URL: url };
  const report = timeCommand(process.execPath, [bin, 'slow-queries', '--json'], { runs, env });
  const version = timeCommand(process.execPath, [bin, '--version'], { runs, env });
  const psqlTimes = timeCommand(psql, ['-X', '-q', '-A', '-t', '-d', url, '-c', sql], { runs, env });
  const save = timeCommand(process.execPath, [bin, 'slow-queries', '--json', '--save', join(dir, 'snap.json')], {
    runs,
    env,
  });

  const rows: Array<[string, number[]]> = [
    ['psql, equivalent top-20 query (reference)', psqlTimes],
    ['dbops --version (Node start-up)', version],
    ['dbops slow-queries --json', report],
    ['dbops slow-queries --json --save (all 5,000 rows)', save],
  ];
  printTable(
    rows.map(([name, t]) => ({
      command: name,
      'median ms': fmt(median(t)),
      'p90 ms': fmt(percentile(t, 90)),
    })),
  );
  const added = median(report) - median(version);
  const ratio = added / median(psqlTimes);
  console.log(
    `\nstatements in pg_stat_statements for the database: ${entries}\n` +
      `(slow-queries − --version) / psql = ${fmt(added)} / ${fmt(median(psqlTimes))} = ${fmt(ratio, 2)} (goal <= 1.50) ${ratio <= 1.5 ? 'MET' : 'NOT MET'}   runs=${runs}`,
  );
} finally {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
