/** `dbops slow-queries` as a process: reports, snapshot files, gates and exit codes, failure messages. */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, runDbops } from '../helpers/cli.js';
import { type PgServer, startPostgres } from '../helpers/servers.js';
import { createTestDatabase, type TestDatabase, uniqueName } from '../helpers/services.js';

const SLOW = 'SELECT pg_sleep($1)';
const FAST = 'SELECT $1::int AS fast';

interface Report {
  ok: boolean;
  statements: Array<{ query: string; calls: number; meanMs: number; slow: boolean; status?: string; rolname: string }>;
  gates: { failed: boolean; failures: Array<{ kind: string; query: string }> } | null;
  window: { mode: string };
  savedTo?: string;
}

describe('dbops slow-queries (CLI)', () => {
  let db: TestDatabase;
  let client: pg.Client;
  let dir: string;
  const run = (args: string[], url = db.url) =>
    runDbops(['slow-queries', ...args], { env: cleanEnv({ DATABASE_URL: url }) });
  const sleep = async (seconds: number, calls: number) => {
    for (let i = 0; i < calls; i++) await client.query(SLOW, [seconds]);
  };
  const fast = async (calls: number) => {
    for (let i = 0; i < calls; i++) await client.query(FAST, [i]);
  };
  const stmt = (r: Report, sql: string) => r.statements.find((s) => s.query === sql);

  beforeAll(async () => {
    db = await createTestDatabase();
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
    dir = mkdtempSync(join(tmpdir(), 'dbops-slow-'));
  });
  afterAll(async () => {
    await client.end();
    await db.drop();
  });

  it('prints a table, and one JSON document with --json', async () => {
    await sleep(0.03, 3);
    await fast(50);
    const human = await run(['--limit', '5', '--min-calls', '2', '--full']);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/pg_stat_statements 1\.12 on PostgreSQL 18/);
    expect(human.stdout).toMatch(
      /calls .* total .* mean .* max .* stddev .* rows\/call .* share .* hit .* temp wr .* role .* prisma .* query/,
    );
    expect(human.stdout).toMatch(/│ slow │\s+3 │/);
    expect(human.stdout).toContain(`\n${SLOW}\n`); // --full
    const json = await run(['--json', '--sort', 'calls', '--limit', '1']);
    expect(json.code).toBe(0);
    const r = JSON.parse(json.stdout) as Report;
    expect(r.ok).toBe(true);
    expect(r.statements).toHaveLength(1);
    expect(r.statements[0]).toMatchObject({ query: FAST, calls: 50 });
  });

  it('--save then --since reports exactly the workload in between; gates pass and fail with exit 3', async () => {
    const snap = join(dir, 'before.json');
    const saved = await run(['--save', snap, '--json']);
    expect(saved.code).toBe(0);
    expect((JSON.parse(saved.stdout) as Report).savedTo).toBe(snap);
    expect(JSON.parse(readFileSync(snap, 'utf8')).kind).toBe('dbops-slow-queries-snapshot');
    await sleep(0.03, 4);
    await fast(25);
    const delta = await run(['--since', snap, '--json', '--limit', '0']);
    expect(delta.code).toBe(0);
    const d = JSON.parse(delta.stdout) as Report;
    expect(d.window.mode).toBe('since-snapshot');
    expect(stmt(d, SLOW)).toMatchObject({ calls: 4 });
    expect(stmt(d, SLOW)?.meanMs).toBeGreaterThanOrEqual(30);
    expect(stmt(d, FAST)).toMatchObject({ calls: 25 });

    const pass = await run(['--since', snap, '--fail-on-mean-ms', '5000']);
    expect(pass.code).toBe(0);
    expect(pass.stdout).toMatch(/gate passed \(mean > 5000 ms/);

    const fail = await run(['--since', snap, '--fail-on-mean-ms', '25', '--json']);
    expect(fail.code).toBe(3);
    const f = JSON.parse(fail.stdout) as Report; // the report is printed before the exit code
    expect(f.ok).toBe(false);
    expect(f.gates?.failures.map((x) => [x.kind, x.query])).toEqual([['mean', SLOW]]);
    expect(fail.stderr).toMatch(/error: slow-query gate failed: 1 statement/);
    // The statement is named by its text (shortened), not by its queryid (issue 13).
    expect(fail.stderr).toMatch(/failed: 1 statement: 'SELECT pg_sleep\(\$1\)' \(mean \d+\.\d ms\)/);
    expect(fail.stderr).not.toMatch(/queryid/);
    // --gate-min-calls: 4 calls are too few to judge.
    expect((await run(['--since', snap, '--fail-on-mean-ms', '25', '--gate-min-calls', '5'])).code).toBe(0);
  });

  it('--baseline --fail-on-regression: a grown mean fails, the same workload passes, a new slow statement fails', async () => {
    const snap = join(dir, 'base-before.json');
    expect((await run(['--save', snap, '-q'])).code).toBe(0);
    await sleep(0.01, 5);
    const base = await run(['--since', snap, '--limit', '0', '--json']);
    expect(base.code).toBe(0);
    const baseline = join(dir, 'baseline.json');
    (await import('node:fs')).writeFileSync(baseline, base.stdout);

    // The same statement (same queryid: constants are normalised) now sleeps 5x as long.
    const snap2 = join(dir, 'after-before.json');
    expect((await run(['--save', snap2, '-q'])).code).toBe(0);
    await sleep(0.05, 5);
    const regressed = await run(['--since', snap2, '--baseline', baseline, '--fail-on-regression', '100', '--json']);
    expect(regressed.code).toBe(3);
    const r = JSON.parse(regressed.stdout) as Report;
    expect(r.gates?.failures.map((x) => [x.kind, x.query])).toEqual([['regression', SLOW]]);

    const snap3 = join(dir, 'same-before.json');
    expect((await run(['--save', snap3, '-q'])).code).toBe(0);
    await sleep(0.01, 5);
    const same = await run(['--since', snap3, '--baseline', baseline, '--fail-on-regression', '300']);
    expect(same.stdout).toMatch(/gate passed/);
    expect(same.code).toBe(0);

    await client.query('SELECT pg_sleep($1), $2::text AS brand_new', [0.03, 'x']);
    const fresh = await run([
      '--since',
      snap3,
      '--baseline',
      baseline,
      '--fail-on-regression',
      '300',
      '--min-mean-ms',
      '20',
    ]);
    expect(fresh.code).toBe(3);
    expect(fresh.stdout).toMatch(
      /\[new-slow\] .*new statement, mean .* > 20\.0 ms: SELECT pg_sleep\(\$1\), \$2::text AS brand_new/,
    );
  });

  it('--reset asks first (refused off a terminal), resets this database with --yes', async () => {
    const refused = await run(['--reset']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/not confirmed: pg_stat_statements was not reset/);
    expect(refused.stderr).toMatch(/hint: pass --yes/);
    const done = await run(['--reset', '--yes']);
    expect(done.code).toBe(0);
    expect(done.stdout).toMatch(/pg_stat_statements reset for 127\.0\.0\.1:\d+\//);
    const after = JSON.parse((await run(['--json', '--limit', '0'])).stdout) as Report;
    expect(stmt(after, SLOW)).toBeUndefined();
  });
});

describe('dbops slow-queries when it cannot work', () => {
  it('extension not installed: exit 2 with CREATE EXTENSION', async () => {
    const empty = await createTestDatabase({ empty: true });
    try {
      const r = await runDbops(['slow', '--json'], { env: cleanEnv({ DATABASE_URL: empty.url }) });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`dbops: pg_stat_statements is not installed in database "${empty.name}"`));
      expect(r.stderr).toMatch(/hint: run CREATE EXTENSION pg_stat_statements;/);
      expect(JSON.parse(r.stdout)).toMatchObject({
        ok: false,
        error: { code: 'CONFIG', exitCode: 2, details: { reason: 'extension-missing' } },
      });
    } finally {
      await empty.drop();
    }
  });

  it("a role without pg_read_all_stats: exit 2 with the GRANT, and never the role's password", async () => {
    const db = await createTestDatabase();
    const role = uniqueName('nopriv');
    const password = `Pw-${uniqueName('x')}-Zz9`;
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
      await admin.query('SELECT pg_sleep(0.001)'); // someone else's statement in this database
      const url = db.url.replace('postgres@', `${role}:${password}@`);
      const r = await runDbops(['slow-queries'], { env: cleanEnv({ DATABASE_URL: url }) });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(
        new RegExp(`role "${role}" may not read other roles' statements .*<insufficient privilege>`),
      );
      expect(r.stderr).toMatch(new RegExp(`hint: GRANT pg_read_all_stats TO "${role}";`));
      expect(r.stdout + r.stderr).not.toContain(password);
      // With pg_monitor (which includes pg_read_all_stats) the same role works.
      await admin.query(`GRANT pg_monitor TO ${role}`);
      const ok = await runDbops(['slow-queries', '--json'], { env: cleanEnv({ DATABASE_URL: url }) });
      expect(ok.code).toBe(0);
      expect(ok.stdout + ok.stderr).not.toContain(password);
    } finally {
      await admin.query(`DROP OWNED BY ${role}`).catch(() => {});
      await admin.end();
      await db.drop();
      const c = new pg.Client({ connectionString: db.url.replace(db.name, 'postgres') });
      await c.connect();
      await c.query(`DROP ROLE IF EXISTS ${role}`);
      await c.end();
    }
  });

  describe('extension installed but not preloaded', () => {
    let server: PgServer;
    beforeAll(async () => {
      server = await startPostgres('embedded', { shared_preload_libraries: '' });
    });
    afterAll(async () => {
      await server?.stop();
    });

    it('exit 2 with the shared_preload_libraries fix', async () => {
      const c = new pg.Client({ connectionString: server.url() });
      await c.connect();
      await c.query('CREATE EXTENSION pg_stat_statements');
      await c.end();
      const r = await runDbops(['slow-queries'], { env: cleanEnv({ DATABASE_URL: server.url() }) });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(
        /pg_stat_statements is installed but not loaded: it is missing from shared_preload_libraries/,
      );
      expect(r.stderr).toMatch(/hint: add pg_stat_statements to shared_preload_libraries .* and restart PostgreSQL/);
    });
  });
});
