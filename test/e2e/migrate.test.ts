/**
 * `dbops migrate` as real processes (concurrency: the race suite, race-suite.test.ts): SIGKILL of the
 * lock holder (directly and through PgBouncer in transaction pooling), lock timeouts naming the holder, unlock,
 * exit codes, JSON, annotations, and no password in any output.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type CliResult, cleanEnv, runDbops, startDbops as startCli } from '../helpers/cli.js';
import { AUDIT_DDL, auditCounts, auditMig, mig, migrationFolder, withClient } from '../helpers/migrations.js';
import { createTestDatabase, type TestDatabase, uniqueName } from '../helpers/services.js';

const dbs: TestDatabase[] = [];
const children: ChildProcess[] = [];

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const db of dbs) await db.drop().catch(() => {});
});

async function freshDb(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  dbs.push(db);
  await withClient(db.url, (c) => c.query(AUDIT_DDL));
  return db;
}

function env(dir: string, urls: { url: string; direct?: string }, extra: Record<string, string> = {}) {
  return cleanEnv({
    DATABASE_URL: urls.url,
    ...(urls.direct ? { DIRECT_DATABASE_URL: urls.direct } : {}),
    DBOPS_MIGRATIONS_DIR: dir,
    USER: 'e2e-user',
    ...extra,
  });
}

/** A migration that inserts a row, then (when asked) announces itself in a file and sleeps. */
function slowFolder(): string {
  return migrationFolder({
    '20240101000000_slow.ts': `import { writeFileSync } from 'node:fs';\n${mig(`{
      async up({ sql }) {
        await sql\`INSERT INTO audit (name) VALUES ('slow')\`;
        const ready = process.env.DBOPS_TEST_READY;
        if (ready) {
          writeFileSync(ready, String(process.pid));
          await sql\`SELECT pg_sleep(60)\`;
        }
      },
      async validate({ sql }) {
        const { rows } = await sql\`SELECT count(*)::int AS n FROM audit WHERE name = 'slow'\`;
        return rows[0].n === 1;
      },
    }`)}`,
    '20240102000000_after.ts': auditMig('after'),
  });
}

function startDbops(args: string[], e: Record<string, string>): { child: ChildProcess; done: Promise<CliResult> } {
  const started = startCli(args, { env: e });
  children.push(started.child);
  return started;
}

async function waitForFile(path: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (existsSync(path) && readFileSync(path, 'utf8').length > 0) return;
    if (child.exitCode !== null) throw new Error(`dbops exited (${child.exitCode}) before the migration started`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the slow migration never signalled readiness');
}

async function ledger(db: TestDatabase): Promise<string[]> {
  return withClient(db.url, async (c) =>
    (await c.query<{ name: string }>('SELECT name FROM dbops.data_migrations ORDER BY name')).rows.map((r) => r.name),
  );
}

describe.each([
  { via: 'direct connections', urls: (db: TestDatabase) => ({ url: db.url }) },
  {
    via: 'PgBouncer transaction pooling (no DIRECT_DATABASE_URL)',
    urls: (db: TestDatabase) => ({ url: db.bouncerUrl }),
  },
])('exactly once through $via', ({ urls }) => {
  it('SIGKILL of the lock holder mid-migration: no partial data, the next run applies it once, no unlock', async () => {
    const db = await freshDb();
    const dir = slowFolder();
    const ready = join(mkdtempSync(join(tmpdir(), 'dbops-ready-')), 'ready');
    const holder = startDbops(['migrate', 'up'], env(dir, urls(db), { DBOPS_TEST_READY: ready }));
    await waitForFile(ready, holder.child);
    // the row inserted before the sleep is visible to nobody: it is uncommitted
    await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({}));
    holder.child.kill('SIGKILL');
    const killed = await holder.done;
    expect(killed.signal).toBe('SIGKILL');
    const next = await runDbops(['migrate', 'up', '--lock-timeout', '30s'], {
      env: env(dir, urls(db)),
      timeoutMs: 60_000,
    });
    expect(next.code, next.stderr).toBe(0);
    await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({ slow: 1, after: 1 }));
    expect(await ledger(db)).toEqual(['20240101000000_slow', '20240102000000_after']);
  });
});

describe('lock holder', () => {
  it('a lock timeout exits 4 naming the holder (host, pid, since, application name); unlock ends it', async () => {
    const db = await freshDb();
    const dir = slowFolder();
    const ready = join(mkdtempSync(join(tmpdir(), 'dbops-ready-')), 'ready');
    const holder = startDbops(['migrate', 'up'], env(dir, { url: db.bouncerUrl }, { DBOPS_TEST_READY: ready }));
    await waitForFile(ready, holder.child);
    const pid = holder.child.pid as number;

    const waiter = await runDbops(['migrate', 'up', '--lock-timeout', '1s'], { env: env(dir, { url: db.url }) });
    expect(waiter.code).toBe(4);
    expect(waiter.stderr).toContain(`the migration lock is held by dbops pid ${pid} on ${hostname()}`);
    expect(waiter.stderr).toMatch(/since \d{4}-\d\d-\d\dT/);
    expect(waiter.stderr).toContain(`application_name "dbops migrate ${pid}@`);
    expect(waiter.stderr).toMatch(/hint: .*dbops migrate unlock/);

    const json = await runDbops(['--json', 'migrate', 'up', '--lock-timeout', '0'], { env: env(dir, { url: db.url }) });
    expect(json.code).toBe(4);
    expect(JSON.parse(json.stdout).error).toMatchObject({
      code: 'LOCKED',
      details: { holder: { pid, host: hostname() } },
    });

    const refused = await runDbops(['migrate', 'unlock'], { env: env(dir, { url: db.url }) });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`dbops pid ${pid}`);

    const unlock = await runDbops(['migrate', 'unlock', '--yes'], { env: env(dir, { url: db.url }) });
    expect(unlock.code, unlock.stderr).toBe(0);
    expect(unlock.stdout).toMatch(new RegExp(`ended dbops pid ${pid} on .*: the lock is released`));
    const ended = await holder.done;
    expect(ended.code).not.toBe(0);

    const after = await runDbops(['migrate', 'up'], { env: env(dir, { url: db.url }) });
    expect(after.code, after.stderr).toBe(0);
    await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({ slow: 1, after: 1 }));
    const none = await runDbops(['migrate', 'unlock', '--yes'], { env: env(dir, { url: db.url }) });
    expect(none.stdout).toMatch(/not held/);
  });
});

describe('migrate commands', () => {
  it('status (table and --json), validate exit 3 on drift, down, mark-applied, dry-run', async () => {
    const db = await freshDb();
    const dir = migrationFolder({ '20240101000000_a.ts': auditMig('a'), '20240102000000_b.ts': auditMig('b') });
    const e = env(dir, { url: db.url });
    const up = await runDbops(['migrate', 'up', '--step', '1'], { env: e });
    expect(up.code, up.stderr).toBe(0);
    expect(up.stderr).toMatch(/✔ applied 20240101000000_a \d+ ms, 2 statement\(s\), 1 row\(s\), validate ok/);
    expect(up.stdout).toMatch(/1 applied/);

    const status = await runDbops(['migrate', 'status'], { env: e });
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/schema\s*│\s*20231201000000_init\s*│\s*applied/);
    expect(status.stdout).toMatch(/data\s*│\s*20240101000000_a\s*│\s*applied\s*│[^│]+│\s*e2e-user@/);
    expect(status.stdout).toMatch(/data\s*│\s*20240102000000_b\s*│\s*pending/);

    const dry = await runDbops(['migrate', 'up', '--dry-run'], { env: e });
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/INSERT INTO audit/);
    expect(dry.stdout).toMatch(/dry run: 1 rehearsed and rolled back/);
    expect(await ledger(db)).toEqual(['20240101000000_a']);

    const json = await runDbops(['--json', 'migrate', 'status'], { env: e });
    const doc = JSON.parse(json.stdout);
    expect(doc.counts).toMatchObject({ applied: 2, pending: 1 });
    expect(doc.entries.map((x: { name: string }) => x.name)).toEqual([
      '20231201000000_init',
      '20240101000000_a',
      '20240102000000_b',
    ]);

    expect((await runDbops(['migrate', 'validate'], { env: e })).code).toBe(0);
    const mark = await runDbops(['migrate', 'mark-applied', '20240102000000_b'], { env: e });
    expect(mark.code, mark.stderr).toBe(0);
    await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({ a: 1 }));

    await withClient(db.url, (c) =>
      c.query(`UPDATE dbops.data_migrations SET checksum = 'x' WHERE name = '20240101000000_a'`),
    );
    const drift = await runDbops(['migrate', 'validate'], { env: e });
    expect(drift.code).toBe(3);
    expect(drift.stdout).toMatch(/20240101000000_a changed since it was applied/);

    const down = await runDbops(['migrate', 'down', '--yes'], { env: e });
    expect(down.code, down.stderr).toBe(0);
    expect(await ledger(db)).toEqual(['20240101000000_a']);
  });

  it('a failed migration: exit 1 naming migration, step and cause; --json result; GitHub annotation; no password anywhere', async () => {
    const db = await freshDb();
    const role = uniqueName('mig_role');
    const password = `Pw-${uniqueName('secret')}-Qx`;
    await withClient(db.url, (c) => c.query(`CREATE ROLE ${role} LOGIN SUPERUSER PASSWORD '${password}'`));
    try {
      const url = db.url.replace('postgres@', `${role}:${password}@`);
      const dir = migrationFolder({
        '20240101000000_ok.ts': auditMig('ok'),
        '20240102000000_bad.ts': mig(
          `{ async up({ sql }) { await sql\`INSERT INTO audit (name) VALUES ('bad')\`; }, validate: () => false }`,
        ),
      });
      const outputs: string[] = [];
      const e = env(dir, { url }, { GITHUB_ACTIONS: 'true' });
      const fail = await runDbops(['migrate', 'up'], { env: e });
      outputs.push(fail.stdout, fail.stderr);
      expect(fail.code).toBe(1);
      expect(fail.stderr).toMatch(
        /error: migration 20240102000000_bad failed at validate: validate\(\) returned false \(rolled back\)/,
      );
      expect(fail.stderr).toMatch(
        /::error title=dbops migrate%3A 20240102000000_bad failed at validate::validate\(\) returned false/,
      );
      // one annotation per failure, not a second generic one
      expect(fail.stderr.match(/::error /g)).toHaveLength(1);

      const json = await runDbops(['--json', 'migrate', 'up'], { env: e });
      outputs.push(json.stdout, json.stderr);
      const doc = JSON.parse(json.stdout);
      expect(doc).toMatchObject({
        ok: false,
        error: { code: 'FAILED', details: { migration: '20240102000000_bad', step: 'validate' } },
      });
      expect(doc.outcomes.at(-1)).toMatchObject({ name: '20240102000000_bad', status: 'failed' });

      for (const args of [
        ['migrate', 'status'],
        ['--json', 'migrate', 'status'],
        ['migrate', 'validate'],
        ['--verbose', 'migrate', 'up', '--dry-run'],
      ]) {
        const r = await runDbops(args, { env: e });
        outputs.push(r.stdout, r.stderr);
      }
      const wrong = await runDbops(['--verbose', 'migrate', 'status'], {
        env: env(dir, { url: url.replace(password, `${password}-wrong`) }),
      });
      expect(wrong.code).toBe(5);
      outputs.push(wrong.stdout, wrong.stderr);
      for (const o of outputs) expect(o).not.toContain(password);
      await withClient(db.url, async (c) => expect(await auditCounts(c)).toEqual({ ok: 1 }));
    } finally {
      await withClient(db.url, (c) => c.query(`DROP OWNED BY ${role} CASCADE; DROP ROLE ${role}`)).catch(() => {});
    }
  });
});
