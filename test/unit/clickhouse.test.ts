/**
 * ClickHouse logic that a real server here (Debian's 18.16) cannot exercise: the column choice
 * and SQL for newer servers (normalized_query_hash, Enum8 type, tables, exception_code,
 * system.server_settings), their rows folded into a report, the pool findings, the window and
 * baseline parsing, and the configuration.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/config.js';
import { type ClickHouseConnection, serverErrorText } from '../../src/db/clickhouse.js';
import {
  clickhouseFindings,
  connectionsFrom,
  limitsFrom,
  type RunningQuery,
} from '../../src/diagnostics/clickhouse/activity.js';
import {
  groupsSql,
  planFor,
  type QueryLogRead,
  type RawGroupRow,
  REQUIRED_COLUMNS,
  readQueryLog,
} from '../../src/diagnostics/clickhouse/query-log-read.js';
import {
  buildClickHouseReport,
  parseClickHouseBaseline,
  quantileExact,
  windowSince,
} from '../../src/diagnostics/clickhouse/slow-report.js';
import { ConfigError, OperationError, UsageError } from '../../src/errors.js';

const OLD = new Map([
  ['type', 'UInt8'],
  ['query', 'String'],
  ['exception', 'String'],
]);
const NEW = new Map([
  ['type', "Enum8('QueryStart' = 1, 'QueryFinish' = 2, 'ExceptionBeforeStart' = 3, 'ExceptionWhileProcessing' = 4)"],
  ['normalized_query_hash', 'UInt64'],
  ['tables', 'Array(LowCardinality(String))'],
  ['exception_code', 'Int32'],
  ['query', 'String'],
]);
const W = { from: 1_700_000_000, to: 1_700_003_600 };
const SLOW = { minMeanMs: 20, minCalls: 100 };

describe('the column choice', () => {
  it('a newer server (21.1+) groups by normalized_query_hash on the server, with tables and exception codes', () => {
    const plan = planFor(NEW);
    expect(plan).toEqual({
      grouping: 'normalized_query_hash',
      typeIsEnum: true,
      tables: true,
      exceptionCode: true,
      preKey: false,
    });
    const sql = groupsSql(plan, W);
    expect(sql).toContain('GROUP BY normalized_query_hash');
    expect(sql).toContain('quantilesExact(0.5, 0.95, 0.99)(query_duration_ms) AS q');
    expect(sql).toContain('groupUniqArrayArray(tables) AS tables');
    expect(sql).toContain("type != 'QueryStart'");
    expect(sql).toContain(
      "argMaxIf((exception, query, exception_code), event_time, type IN ('ExceptionBeforeStart', 'ExceptionWhileProcessing'))",
    );
    expect(sql).not.toContain('groupArray(query_duration_ms)');
  });

  it('an old server (18.x) groups by text and returns the durations; type is compared as a number', () => {
    const plan = planFor(OLD);
    expect(plan).toEqual({ grouping: 'text', typeIsEnum: false, tables: false, exceptionCode: false, preKey: true });
    const sql = groupsSql(plan, W);
    expect(sql).toContain('AS pre_key, any(query) AS sample');
    expect(sql).toContain('GROUP BY pre_key');
    expect(sql).toContain('groupArray(query_duration_ms) AS durations');
    expect(sql).toContain('type != 1');
    expect(sql).toContain('argMaxIf((exception, query), event_time, type >= 3)');
    expect(groupsSql({ ...plan, preKey: false }, W)).toContain('GROUP BY query');
    expect(sql).not.toMatch(/tables|normalized_query_hash|quantiles/);
    expect(sql).toContain(
      `event_date >= toDate(toDateTime(${W.from})) AND event_time >= toDateTime(${W.from}) AND event_time <= toDateTime(${W.to})`,
    );
  });
});

function read(rows: RawGroupRow[], columns = NEW): QueryLogRead {
  return {
    server: { endpoint: 'h:8123', version: '24.8.4.13', user: 'monitor', tls: true, logQueries: true },
    plan: planFor(columns),
    window: W,
    rows,
    sql: '',
  };
}

const row = (over: Partial<RawGroupRow>): RawGroupRow => ({
  sample: 'SELECT 1',
  calls: '1',
  failed: '0',
  total_ms: '1',
  max_ms: '1',
  read_rows: '0',
  read_bytes: '0',
  result_rows: '0',
  peak_memory: '0',
  users: ['u'],
  err: ['', '', 0],
  err_at: 0,
  first_seen: W.from + 10,
  last_seen: W.from + 20,
  ...over,
});

describe('a report from a newer server', () => {
  it("uses the server's percentiles, tables and exception code, and masks the error with its own query", () => {
    const r = buildClickHouseReport(
      read([
        row({
          key: '15623436117563513416',
          sample: "SELECT * FROM s3('https://b/k', 'AKIA', '[HIDDEN]') WHERE d = '2024-01-01'",
          calls: '50',
          failed: '2',
          total_ms: '5000',
          max_ms: '900',
          q: [80, 400, 850],
          read_rows: '123456789012',
          tables: ['default.events', 'default.users'],
          err: [
            "Code: 499. DB::Exception: S3 error for 'https://b/k' with key 'AKIA'",
            "SELECT * FROM s3('https://b/k', 'AKIA', 'x')",
            499,
          ],
          err_at: W.from + 100,
        }),
        row({ key: '42', calls: '10', total_ms: '10' }),
      ]),
      { sort: 'total', limit: 0, slow: SLOW, onlySlow: false },
    );
    const g = r.statements[0];
    expect(g?.queryid).toBe('15623436117563513416');
    expect([g?.p50Ms, g?.p95Ms, g?.p99Ms]).toEqual([80, 400, 850]);
    expect(g?.meanMs).toBe(100);
    expect(g?.tables).toEqual(['default.events', 'default.users']);
    expect(g?.query).toBe('SELECT * FROM s3(?..) WHERE d = ?');
    expect(g?.lastError).toEqual({
      at: new Date((W.from + 100) * 1000).toISOString(),
      code: 499,
      message: "S3 error for '***' with key '***' (code 499)",
    });
    expect(g?.readRows).toBe(123456789012);
    expect(r.server.grouping).toBe('normalized_query_hash');
    expect(r.notes.join()).not.toMatch(/no normalized_query_hash/);
    expect(r.totals).toMatchObject({ statements: 2, calls: 60, failed: 2, totalMs: 5010 });
  });

  it('marks slow groups and lets the gates judge them as the PostgreSQL report does', () => {
    const rows = [
      row({
        key: '1',
        sample: 'SELECT a FROM t WHERE x = 1',
        calls: '200',
        total_ms: '10000',
        max_ms: '90',
        q: [50, 60, 90],
      }),
    ];
    const r = buildClickHouseReport(read(rows), {
      sort: 'mean',
      limit: 0,
      slow: SLOW,
      onlySlow: true,
      gates: { failOnMeanMs: 40, gateMinCalls: 1, regressionMinMs: 1 },
    });
    expect(r.statements[0]?.slow).toBe(true);
    expect(r.ok).toBe(false);
    expect(r.gates?.failures[0]).toMatchObject({ kind: 'mean', queryid: '1', meanMs: 50, thresholdMs: 40 });
    const baseline = parseClickHouseBaseline({ ...r, statements: [{ ...r.statements[0], meanMs: 10 }] }, 'b.json');
    const again = buildClickHouseReport(read(rows), {
      sort: 'total',
      limit: 0,
      slow: SLOW,
      onlySlow: false,
      gates: { baseline, failOnRegressionPct: 50, gateMinCalls: 1, regressionMinMs: 1 },
    });
    expect(again.gates?.failures[0]).toMatchObject({ kind: 'regression', baselineMeanMs: 10, growthPct: 400 });
  });

  it('refuses a PostgreSQL report as a ClickHouse baseline', () => {
    expect(() => parseClickHouseBaseline({ kind: 'dbops-slow-queries-report', statements: [] }, 'pg.json')).toThrow(
      /PostgreSQL slow-queries report/,
    );
    expect(() => parseClickHouseBaseline({ hello: 1 }, 'x.json')).toThrow(UsageError);
  });
});

describe('server error texts', () => {
  it('reads the 18.x and the newer form into one line ending in the code', () => {
    expect(
      serverErrorText(
        "Code: 60, e.displayText() = DB::Exception: Table default.t doesn't exist., e.what() = DB::Exception",
      ),
    ).toBe("Table default.t doesn't exist. (code 60)");
    expect(
      serverErrorText(
        'Poco::Exception. Code: 1000, e.code() = 111, e.displayText() = Connection refused, e.what() = Connection refused',
      ),
    ).toBe('Connection refused (code 1000)');
    expect(
      serverErrorText(
        "Code: 60. DB::Exception: Table default.t doesn't exist. (UNKNOWN_TABLE) (version 24.8.4.13 (official build))",
      ),
    ).toBe("Table default.t doesn't exist. (UNKNOWN_TABLE, code 60)");
    expect(serverErrorText('something else\nsecond line')).toBe('something else');
  });
});

describe('percentiles and windows', () => {
  it("computes quantileExact's element at floor(level * n)", () => {
    const sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    expect([0.5, 0.95, 0.99, 1].map((l) => quantileExact(sorted, l))).toEqual([6, 10, 10, 10]);
    expect(quantileExact([7], 0.5)).toBe(7);
    expect(quantileExact([], 0.5)).toBe(0);
  });

  it('--since: a duration back from the server clock, or a time (UTC without a zone)', () => {
    expect(windowSince('1h', 10_000)).toEqual({ from: 6400, to: 10_000 });
    expect(windowSince('90s', 10_000)).toEqual({ from: 9910, to: 10_000 });
    expect(windowSince('2023-11-14T22:00:00Z', 1_700_000_000)).toEqual({ from: 1_699_999_200, to: 1_700_000_000 });
    expect(windowSince('2023-11-14 22:00', 1_700_000_000).from).toBe(1_699_999_200);
    expect(() => windowSince('before.json', 10_000)).toThrow(/--since is a window/);
    expect(() => windowSince('2099-01-01', 1_700_000_000)).toThrow(/not in the past/);
  });
});

describe('pool findings', () => {
  const q = (elapsedMs: number): RunningQuery => ({
    queryId: `id-${elapsedMs}`,
    user: 'dash',
    elapsedMs,
    memoryBytes: 0,
    peakMemoryBytes: 0,
    readRows: 0,
    readBytes: 0,
    initial: true,
    cancelled: false,
    query: 'SELECT ?',
    kill: `KILL QUERY WHERE query_id = 'id-${elapsedMs}';`,
  });
  const t = { longMs: 60_000, headroomWarnRatio: 0.1 };

  it('reads the limits where system.server_settings exists, and the connections by protocol', () => {
    expect(
      limitsFrom([
        { name: 'max_connections', value: '4096' },
        { name: 'max_concurrent_queries', value: '0' },
      ]),
    ).toEqual({
      maxConnections: 4096,
      maxConcurrentQueries: null,
      source: 'system.server_settings',
    });
    expect(limitsFrom(null).source).toBeNull();
    expect(
      connectionsFrom([
        { metric: 'TCPConnection', value: '3' },
        { metric: 'HTTPConnection', value: 2 },
        { metric: 'InterserverConnection', value: '1' },
      ]),
    ).toEqual({ tcp: 3, http: 2, interserver: 1, mysql: null, postgresql: null, clients: 5 });
  });

  it('no headroom is critical, little is a warning, a long query a warning with its KILL statement', () => {
    const f = clickhouseFindings(
      {
        connections: { inUse: 100, max: 100, free: 0 },
        queries: { inUse: 95, max: 100, free: 5 },
        running: [q(120_000), q(10)],
        limitsKnown: true,
        version: '24.8',
      },
      t,
    );
    expect(f.map((x) => [x.severity, x.code])).toEqual([
      ['critical', 'clickhouse-connections-exhausted'],
      ['warning', 'clickhouse-queries-low'],
      ['warning', 'clickhouse-long-running'],
    ]);
    expect(f[2]?.statements).toEqual(["KILL QUERY WHERE query_id = 'id-120000';"]);
    expect(
      clickhouseFindings(
        { connections: null, queries: null, running: [], limitsKnown: false, version: '18.16.1' },
        t,
      ).map((x) => x.code),
    ).toEqual(['clickhouse-limits-unknown']);
  });
});

describe('configuration', () => {
  const cwd = () => mkdtempSync(join(tmpdir(), 'dbops-chcfg-'));

  it('takes CLICKHOUSE_URL from the config file, masks its password, and registers it as a secret', () => {
    const dir = cwd();
    writeFileSync(
      join(dir, 'dbops.config.json'),
      JSON.stringify({
        clickhouseUrl: 'https://an:Ch-Pw-1@ch.internal:8443/analytics',
        clickhouseQueryTimeoutMs: 30000,
      }),
    );
    const cfg = resolveConfig({ cwd: dir, env: {} });
    expect(cfg.clickhouse).toMatchObject({
      url: 'https://an:Ch-Pw-1@ch.internal:8443/analytics',
      queryTimeoutMs: 30_000,
      caCert: undefined,
    });
    expect(cfg.clickhouse?.source).toContain('"clickhouseUrl" in');
    expect(cfg.settings.CLICKHOUSE_URL?.value).toBe('https://an:***@ch.internal:8443/analytics');
    expect(cfg.secrets).toContain('Ch-Pw-1');
  });

  it('the flag wins over the environment', () => {
    const cfg = resolveConfig({
      cwd: cwd(),
      env: { CLICKHOUSE_URL: 'http://env:8123' },
      flags: { CLICKHOUSE_URL: 'http://flag:8123' },
    });
    expect(cfg.clickhouse?.url).toBe('http://flag:8123');
    expect(cfg.clickhouse?.source).toBe('flag --clickhouse-url');
  });

  it('refuses the native protocol, a query string and a missing CA file', () => {
    expect(() => resolveConfig({ cwd: cwd(), env: { CLICKHOUSE_URL: 'clickhouse://h:9000' } })).toThrow(
      /must start with http:\/\/ or https:\/\//,
    );
    expect(() => resolveConfig({ cwd: cwd(), env: { CLICKHOUSE_URL: 'http://h:8123/?max_threads=1' } })).toThrow(
      ConfigError,
    );
    expect(() =>
      resolveConfig({ cwd: cwd(), env: { CLICKHOUSE_URL: 'https://h', CLICKHOUSE_CA_CERT: 'nope.pem' } }),
    ).toThrow(/CLICKHOUSE_CA_CERT .*does not exist/);
  });
});

describe('an unreadable query log (servers with access control, which 18.16 lacks)', () => {
  /** A connection whose query_log read is refused as a 20.4+ server refuses it. */
  const refusing = (): ClickHouseConnection => ({
    endpoint: 'h:8123',
    tls: false,
    user: 'dash',
    database: 'default',
    version: '24.8.4.13',
    serverNow: W.to,
    readonly: 0,
    logQueries: true,
    // Every column a supported server has, and the newer ones.
    queryLogColumns: new Map([...REQUIRED_COLUMNS.map((c): [string, string] => [c, 'String']), ...NEW]),
    connectMs: 1,
    query: async () => {
      throw new OperationError(
        'reading system.query_log failed: dash: Not enough privileges. To execute this query, it is necessary to have the grant SELECT(query) ON system.query_log (ACCESS_DENIED, code 497)',
      );
    },
    command: async () => {},
    close: async () => {},
  });

  it('is a configuration error (exit 2) with the GRANT that fixes it', async () => {
    const error = await readQueryLog(refusing(), { window: W, flush: false, timeoutMs: 1000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toMatch(/^user dash may not read system\.query_log: /);
    expect((error as ConfigError).hint).toBe(
      'GRANT SELECT ON system.query_log TO dash (or run dbops as a user who may)',
    );
  });
});
