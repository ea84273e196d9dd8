/**
 * slow-queries --source clickhouse over 10,000 logged queries: wall time of
 * `dbops slow-queries --source clickhouse --json`, of `dbops --version` (Node start-up, which no
 * report avoids) and of clickhouse-client running the same SQL dbops sends, interleaved in the
 * same run, on a real server (Debian's clickhouse-server 18.16). That server has no
 * normalized_query_hash: it groups by exact text, so with 10,000 distinct texts it returns 10,000
 * rows unless it can pre-group them (literal values replaced on the server, for texts without
 * comments and other constructs its patterns cannot read exactly); dbops' lexer then merges what
 * remains. Three workloads: repeated texts, distinct texts, distinct texts with a comment each.
 * Goal: (slow-queries − --version) ≤ 1.5 × clickhouse-client's whole wall time.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { groupsSql, planFor } from '../../src/diagnostics/clickhouse/query-log-read.js';
import { MONITOR_PASSWORD, startClickHouse } from '../../test/helpers/clickhouse.js';
import { fmt, median, percentile, printTable, timeInterleaved } from '../lib/measure.js';

const QUERIES = 10_000;
const SHAPES = 50;
const runs = Number(process.env.BENCH_RUNS ?? 15);
const bin = fileURLToPath(new URL('../../bin/dbops.js', import.meta.url));
const client = '/usr/bin/clickhouse-client';

interface Scenario {
  name: string;
  /** 10,000 distinct texts (every query has its own literals), or the same 50 texts again and again. */
  distinct: boolean;
  /** A comment in every text (an application's tag): the server cannot pre-group, dbops' lexer does it all. */
  comment: boolean;
}

const SCENARIOS: Scenario[] = [
  { name: 'a dashboard: 50 queries, each run 200 times with the same literals', distinct: false, comment: false },
  { name: '10,000 distinct texts (literals differ every time) in 50 shapes', distinct: true, comment: false },
  { name: 'the same with a comment in every text (no pre-grouping on the server)', distinct: true, comment: true },
];

function workloadSql(s: Scenario): string {
  const lines: string[] = [];
  for (let i = 0; i < QUERIES; i++) {
    const shape = i % SHAPES;
    const k = s.distinct ? i : shape;
    const tag = s.comment ? ` /* dashboard=${shape} */` : '';
    lines.push(
      `SELECT count(), sum(v) AS s${shape} FROM events${tag} WHERE id % ${shape + 2} = ${k % (shape + 2)} AND kind != 'k${k}';`,
    );
  }
  return `${lines.join('\n')}\n`;
}

const rows: Array<Record<string, string>> = [];
const verdicts: string[] = [];
for (const scenario of SCENARIOS) {
  // A server of its own per scenario: its query_log holds that workload and nothing else.
  const server = await startClickHouse();
  try {
    const [start] = await server.query<{ t: number }>('SELECT toUInt32(toUnixTimestamp(now())) - 1 AS t');
    const from = Number(start?.t);
    await server.exec('CREATE TABLE events (id UInt64, kind String, v Float64) ENGINE = MergeTree ORDER BY id');
    await server.exec(
      "INSERT INTO events SELECT number, concat('k', toString(number % 50)), number / 7 FROM numbers(100000)",
    );
    const script = join(server.dir, 'workload.sql');
    writeFileSync(script, workloadSql(scenario));
    const load = spawnSync('bash', ['-c', `${client} --port ${server.tcpPort} --multiquery < ${script}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    if (load.status !== 0) throw new Error(`workload failed: ${load.stderr}`);
    await server.flushLogs();
    const [count] = await server.query<{ n: string; texts: string }>(
      "SELECT count() AS n, uniqExact(query) AS texts FROM system.query_log WHERE type = 2 AND query LIKE 'SELECT count(), sum(v)%'",
    );
    const logged = Number(count?.n);
    if (logged < QUERIES) throw new Error(`only ${logged} queries in system.query_log, expected ≥ ${QUERIES}`);
    const cols = new Map(
      (
        await server.query<{ name: string; type: string }>(
          "SELECT name, type FROM system.columns WHERE database = 'system' AND table = 'query_log'",
        )
      ).map((r) => [r.name, r.type]),
    );
    const since = new Date(from * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
    // The same SQL dbops sends, to the same rows (its window ends at the server's now; this one a little later).
    const sql = `${groupsSql(planFor(cols), { from, to: from + 86_400 })}\nFORMAT JSONCompact`;
    const env = { ...process.env, NO_COLOR: '1', CLICKHOUSE_URL: server.url('monitor') };
    const t = timeInterleaved(
      {
        reference: [
          client,
          ['--port', String(server.tcpPort), '--user', 'monitor', '--password', MONITOR_PASSWORD, '--query', sql],
        ],
        version: [process.execPath, [bin, '--version']],
        report: [process.execPath, [bin, 'slow-queries', '--source', 'clickhouse', '--since', since, '--json']],
      },
      { runs, env },
    );
    const r = spawnSync(
      process.execPath,
      [bin, 'slow-queries', '--source', 'clickhouse', '--since', since, '--json', '--limit', '0'],
      {
        env,
        encoding: 'utf8',
      },
    );
    const doc = JSON.parse(r.stdout) as { totals: { statements: number; calls: number } };
    const added = median(t.report) - median(t.version);
    const ratio = added / median(t.reference);
    rows.push(
      {
        scenario: scenario.name,
        command: 'clickhouse-client, the same SQL (reference)',
        'median ms': fmt(median(t.reference)),
        'p90 ms': fmt(percentile(t.reference, 90)),
      },
      {
        scenario: '',
        command: 'dbops --version (Node start-up)',
        'median ms': fmt(median(t.version)),
        'p90 ms': fmt(percentile(t.version, 90)),
      },
      {
        scenario: '',
        command: 'dbops slow-queries --source clickhouse --json',
        'median ms': fmt(median(t.report)),
        'p90 ms': fmt(percentile(t.report, 90)),
      },
    );
    verdicts.push(
      `${scenario.name}: ${logged} logged, ${count?.texts} distinct texts; dbops: ${doc.totals.calls} executions in ${doc.totals.statements} queries\n` +
        `  (slow-queries − --version) / clickhouse-client = ${fmt(added)} / ${fmt(median(t.reference))} = ${fmt(ratio, 2)} (goal <= 1.50) ${ratio <= 1.5 ? 'MET' : 'NOT MET'}`,
    );
  } finally {
    await server.stop();
  }
}
printTable(rows);
console.log(
  `\n${verdicts.join('\n')}\nruns=${runs}, interleaved (each round runs all three, so they share the machine's load)`,
);
