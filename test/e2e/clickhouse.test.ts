/**
 * The built CLI against a real ClickHouse, as a user runs it: --help does not load the client,
 * the report and its gates' exit codes, pool and doctor with only CLICKHOUSE_URL configured, a
 * disabled query log, a server that never answers, a wrong password (never printed), TLS.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, type CliResult, cleanEnv, runDbops } from '../helpers/cli.js';
import { type ClickHouseServer, MONITOR_PASSWORD, startClickHouse } from '../helpers/clickhouse.js';
import { createTestDatabase } from '../helpers/services.js';

let server: ClickHouseServer;
let cwd: string;
const WRONG = 'Wrong-Pw-2x8Qd';

const run = (args: string[], env: Record<string, string> = {}) =>
  runDbops(args, { cwd, env: cleanEnv({ CLICKHOUSE_URL: server.url('monitor'), ...env }) });
const json = (r: CliResult) =>
  JSON.parse(r.stdout) as Record<string, unknown> & { statements: Array<Record<string, unknown>> };
const noPassword = (r: CliResult) => {
  expect(r.stdout + r.stderr).not.toContain(MONITOR_PASSWORD);
  expect(r.stdout + r.stderr).not.toContain(WRONG);
};

beforeAll(async () => {
  cwd = mkdtempSync(join(tmpdir(), 'dbops-ch-e2e-'));
  server = await startClickHouse({ tls: true });
  for (let i = 0; i < 12; i++) await server.exec(`SELECT sleep(0.05), ${i}`);
  for (let i = 0; i < 30; i++) await server.exec(`SELECT count() FROM numbers(${1000 + i})`);
});

afterAll(async () => {
  await server?.stop();
});

describe('dbops with ClickHouse (built CLI, real server)', () => {
  it('--help and slow-queries --help load no ClickHouse client', () => {
    const trace = fileURLToPath(new URL('../helpers/trace-imports.mjs', import.meta.url));
    for (const args of [['--help'], ['slow-queries', '--help']]) {
      const r = spawnSync(process.execPath, ['--import', trace, BIN, ...args], { encoding: 'utf8', env: cleanEnv() });
      expect(r.status).toBe(0);
      const loaded = r.stderr.split('\n').filter((l) => l.startsWith('[import]'));
      expect(loaded.length).toBeGreaterThan(3);
      expect(loaded.filter((l) => /@clickhouse|src\/db\/clickhouse|src\/clickhouse\//.test(l))).toEqual([]);
    }
  });

  it('slow-queries --source clickhouse --json: one document with the groups; --fail-on-mean-ms judges them (exit 3 after the report)', async () => {
    const ok = await run([
      'slow-queries',
      '--source',
      'clickhouse',
      '--flush-logs',
      '--since',
      '10m',
      '--limit',
      '0',
      '--json',
    ]);
    expect(ok.code).toBe(0);
    const doc = json(ok);
    expect(doc.kind).toBe('dbops-clickhouse-slow-queries-report');
    const sleep = doc.statements.find((s) => s.query === 'SELECT sleep(?), ?');
    expect(sleep).toMatchObject({ calls: 12, failed: 0, users: ['default'] });
    expect(Number(sleep?.meanMs)).toBeGreaterThanOrEqual(50);
    writeFileSync(join(cwd, 'baseline.json'), ok.stdout);

    const gate = await run(['slow', '--source', 'clickhouse', '--since', '10m', '--fail-on-mean-ms', '40', '--json']);
    expect(gate.code).toBe(3);
    const g = json(gate) as unknown as {
      ok: boolean;
      gates: { failed: boolean; failures: Array<{ kind: string; queryid: string }> };
    };
    expect(g.ok).toBe(false);
    expect(g.gates.failures).toContainEqual(expect.objectContaining({ kind: 'mean', queryid: sleep?.queryid }));
    expect(gate.stderr).toMatch(/slow-query gate failed: \d+ ClickHouse quer/);

    const text = await run(['slow', '--source', 'clickhouse', '--since', '10m', '--fail-on-mean-ms', '100000']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/system\.query_log on ClickHouse 18\.16\.1 .* as monitor/);
    expect(text.stdout).toMatch(/gate passed \(mean > 100000 ms/);
    noPassword(text);
  });

  it('--baseline --fail-on-regression: a mean grown past the percentage is exit 3', async () => {
    const base = JSON.parse(readFileSync(join(cwd, 'baseline.json'), 'utf8')) as {
      statements: Array<{ query: string; meanMs: number }>;
    };
    // A faster past: the same report with the sleep query ten times quicker.
    for (const s of base.statements) if (s.query === 'SELECT sleep(?), ?') s.meanMs /= 10;
    writeFileSync(join(cwd, 'faster.json'), JSON.stringify(base));
    const r = await run([
      'slow',
      '--source',
      'clickhouse',
      '--since',
      '10m',
      '--baseline',
      join(cwd, 'faster.json'),
      '--fail-on-regression',
      '50',
    ]);
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/gate FAILED \(regression > 50%/);
    expect(r.stdout).toMatch(/\[regression\] queryid t[0-9a-f]+: mean .* \(\+\d+% > 50%\): SELECT sleep\(\?\), \?/);
    const same = await run([
      'slow',
      '--source',
      'clickhouse',
      '--since',
      '10m',
      '--baseline',
      join(cwd, 'baseline.json'),
      '--fail-on-regression',
      '500',
    ]);
    expect(same.code).toBe(0);
  });

  it('PostgreSQL-only options are refused with --source clickhouse, and ClickHouse-only ones without it', async () => {
    const save = await run(['slow', '--source', 'clickhouse', '--save', 'x.json']);
    expect(save.code).toBe(2);
    expect(save.stderr).toMatch(/--save is for PostgreSQL's pg_stat_statements/);
    const sort = await run(['slow', '--sort', 'p95'], { DATABASE_URL: 'postgresql://nobody@127.0.0.1:1/x' });
    expect(sort.code).toBe(2);
    expect(sort.stderr).toMatch(/--sort p95 is for --source clickhouse/);
    const since = await run(['slow', '--source', 'clickhouse', '--since', 'before.json']);
    expect(since.code).toBe(2);
    expect(since.stderr).toMatch(/--since is a window such as 30m/);
  });

  it('pool with only CLICKHOUSE_URL: the ClickHouse snapshot, no PostgreSQL started', async () => {
    const r = await run(['pool', '--json']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as {
      kind: string;
      server: { version: string };
      connections: { http: number };
      limits: { source: null };
    };
    expect(doc.kind).toBe('dbops-clickhouse-pool');
    expect(doc.server.version).toBe('18.16.1');
    expect(doc.connections.http).toBeGreaterThanOrEqual(1);
    expect(r.stderr).not.toMatch(/embedded/);
    const text = await run(['pool', '--source', 'clickhouse']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/ClickHouse 18\.16\.1 .*headroom {5}connections: max_connections unknown/s);
  });

  it('pool with PostgreSQL and ClickHouse: both in one document; an unreachable ClickHouse is shown, not fatal', async () => {
    const db = await createTestDatabase({ empty: true });
    try {
      const both = await run(['pool', '--json'], { DATABASE_URL: db.url });
      expect(both.code).toBe(0);
      const doc = JSON.parse(both.stdout) as {
        ok: boolean;
        server: { database: string };
        clickhouse: { kind: string; ok: boolean };
      };
      expect(doc.server.database).toBe(db.name);
      expect(doc.clickhouse).toMatchObject({ kind: 'dbops-clickhouse-pool', ok: true });
      const text = await run(['pool'], { DATABASE_URL: db.url });
      expect(text.stdout).toMatch(/^PostgreSQL [\s\S]*\nClickHouse 18\.16\.1 /);
      const down = await run(['pool', '--json'], {
        DATABASE_URL: db.url,
        CLICKHOUSE_URL: 'http://monitor:x@127.0.0.1:1',
      });
      expect(down.code).toBe(0);
      expect((JSON.parse(down.stdout) as { clickhouse: { error: string } }).clickhouse.error).toMatch(/ECONNREFUSED/);
      const pgOnly = await run(['pool', '--source', 'postgres', '--json'], { DATABASE_URL: db.url });
      expect(JSON.parse(pgOnly.stdout)).not.toHaveProperty('clickhouse');
    } finally {
      await db.drop();
    }
  });

  it('doctor with only CLICKHOUSE_URL, over https with CLICKHOUSE_CA_CERT: TLS yes, the query log on', async () => {
    const r = await run(['doctor'], {
      CLICKHOUSE_URL: server.url('monitor', { https: true }),
      CLICKHOUSE_CA_CERT: server.caCert ?? '',
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/ClickHouse .* ok .* 18\.16\.1 .* yes/);
    expect(r.stdout).toMatch(
      /clickhouse: user monitor on default; query_log exists, log_queries on; readable: query_log yes, processes yes, metrics yes, settings yes/,
    );
    noPassword(r);
    const untrusted = await run(['doctor'], { CLICKHOUSE_URL: server.url('monitor', { https: true }) });
    expect(untrusted.code).toBe(5);
    expect(untrusted.stdout).toMatch(/TLS failed/);
  });

  it('a wrong password: exit 5, one line with a hint, the password never printed', async () => {
    const r = await run(['slow', '--source', 'clickhouse', '--json'], {
      CLICKHOUSE_URL: server.url('monitor', { password: WRONG }),
    });
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(
      /^error: ClickHouse at 127\.0\.0\.1:\d+ refused the login: Wrong password for user monitor \(code 193\)$/m,
    );
    expect(r.stderr).toMatch(/hint: check the user and password in CLICKHOUSE_URL/);
    expect((JSON.parse(r.stdout) as { error: { code: string } }).error.code).toBe('UNREACHABLE');
    noPassword(r);
  });

  it('a server that accepts and never answers: exit 5 after the connect timeout', async () => {
    const hold: Server = createServer(() => {});
    await new Promise<void>((resolve) => hold.listen(0, '127.0.0.1', resolve));
    try {
      const port = (hold.address() as { port: number }).port;
      const r = await run(['--timeout', '1s', 'slow', '--source', 'clickhouse'], {
        CLICKHOUSE_URL: `http://monitor:${MONITOR_PASSWORD}@127.0.0.1:${port}`,
      });
      expect(r.code).toBe(5);
      expect(r.stderr).toMatch(/ClickHouse at 127\.0\.0\.1:\d+ did not answer within 1000 ms/);
      noPassword(r);
    } finally {
      hold.close();
    }
  });

  it('a server whose query log is off: exit 2 with the fix', async () => {
    const off = await startClickHouse({ queryLog: false });
    try {
      const r = await run(['slow', '--source', 'clickhouse', '--flush-logs'], { CLICKHOUSE_URL: off.url('monitor') });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(
        /system\.query_log does not exist on ClickHouse 18\.16\.1 .*log_queries is 0 for monitor's profile/,
      );
      expect(r.stderr).toMatch(/hint: turn the query log on: <log_queries>1<\/log_queries>/);
    } finally {
      await off.stop();
    }
  });
});
