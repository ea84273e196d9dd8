/**
 * The CLI in-process, table-driven (changesets' cli.test.ts is the model): argv and environment in,
 * exit code, stdout and stderr out, through `runCli` with string streams. Parsing, option checks,
 * the one error path (exit codes, the JSON error document, a failed check after its report) and the
 * handlers, against the real PostgreSQL of the global setup. What only a process shows (signals,
 * crashes, concurrency, --help's imports) stays in test/e2e.
 */
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { AUDIT_DDL, auditMig, mig, migrationFolder, withClient } from '../helpers/migrations.js';
import { freePort } from '../helpers/servers.js';
import { createTestDatabase, type TestDatabase } from '../helpers/services.js';

const SECRET = 'Inproc-Pw-3kd9QQ';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** One command line, in this process. */
async function dbops(args: string[], env: Record<string, string>, cwd: string): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: { NO_COLOR: '1', USER: 'inproc-user', ...env },
    cwd,
  });
  return { code, stdout, stderr };
}

interface Fixture {
  db: TestDatabase;
  /** A folder with a good migration and one whose validate is false. */
  failing: string;
  /** An empty migrations folder. */
  empty: string;
  closedPort: number;
}

interface Case {
  name: string;
  args: string[];
  env?: (f: Fixture) => Record<string, string>;
  code: number;
  /** Every pattern must match stdout (stderr). */
  stdout?: RegExp[];
  stderr?: RegExp[];
  /** --json: stdout is exactly one document, matching this. */
  json?: Record<string, unknown>;
  check?: (run: Run, f: Fixture) => void | Promise<void>;
}

const PRISMA_MIGRATIONS = fileURLToPath(new URL('../../prisma/migrations', import.meta.url));
const db = (f: Fixture, dir = f.empty) => ({
  DATABASE_URL: f.db.url,
  DBOPS_MIGRATIONS_DIR: dir,
  DBOPS_PRISMA_MIGRATIONS_DIR: PRISMA_MIGRATIONS,
});
const nowhere = (f: Fixture) => ({
  DATABASE_URL: `postgresql://app:${SECRET}@127.0.0.1:${f.closedPort}/x`,
  DBOPS_MIGRATIONS_DIR: f.empty,
});

const cases: Case[] = [
  // Parsing: one line, a hint, exit 2; --json still one document.
  {
    name: 'an unknown command suggests the right one',
    args: ['doctr'],
    code: 2,
    stderr: [/unknown command 'doctr'.*Did you mean doctor\?/],
    stdout: [/^$/],
  },
  {
    name: 'a bad option value names the option',
    args: ['--timeout', 'soon', 'doctor'],
    code: 2,
    stderr: [/--timeout/],
    stdout: [/^$/],
  },
  {
    name: 'a bad option value with --json',
    args: ['--json', '--timeout', 'soon', 'doctor'],
    code: 2,
    json: { ok: false, error: { code: 'USAGE', exitCode: 2 } },
  },
  {
    name: 'migrate up --to with --step',
    args: ['migrate', 'up', '--to', '20240101000000_a', '--step', '1'],
    env: nowhere,
    code: 2,
    stderr: [/--to.*--step|--step.*--to/],
  },
  { name: 'migrate up --step 0', args: ['migrate', 'up', '--step', '0'], env: nowhere, code: 2, stderr: [/--step/] },
  {
    name: 'migrate create with a bad name',
    args: ['migrate', 'create', 'BackfillTotals'],
    env: nowhere,
    code: 2,
    stderr: [/hint: try: dbops migrate create backfill_totals/],
  },
  {
    name: 'slow-queries --baseline without --fail-on-regression',
    args: ['slow-queries', '--baseline', 'b.json'],
    env: nowhere,
    code: 2,
    stderr: [/--baseline and --fail-on-regression go together/],
  },
  {
    name: 'slow-queries --since a missing file: refused before connecting',
    args: ['slow-queries', '--since', '/nonexistent/nope.json'],
    env: nowhere,
    code: 2,
    stderr: [/cannot read the snapshot .*nope\.json/],
  },
  { name: 'slow-queries --sort speed', args: ['slow-queries', '--sort', 'speed'], env: nowhere, code: 2 },
  {
    name: 'pool budget option without --app-instances',
    args: ['pool', '--surge', '3'],
    env: nowhere,
    code: 2,
    stderr: [/--surge is part of the capacity budget, which needs --app-instances/],
  },
  {
    name: 'pool --watch with --json',
    args: ['pool', '--watch', '--json'],
    env: nowhere,
    code: 2,
    json: {
      ok: false,
      error: { code: 'USAGE', message: expect.stringMatching(/--watch and --json cannot be combined/) },
    },
  },
  { name: 'pool --long-ms soon', args: ['pool', '--long-ms', 'soon'], env: nowhere, code: 2 },
  {
    name: 'cache flush with an empty pattern',
    args: ['cache', 'flush', ''],
    env: nowhere,
    code: 2,
    stderr: [/empty pattern/],
  },
  {
    name: 'cache drain --replica-wait soon',
    args: ['cache', 'drain', '--replica-wait', 'soon'],
    env: nowhere,
    code: 2,
    stderr: [/--replica-wait/],
  },
  {
    name: 'a replica URL that is not PostgreSQL: named, never shown',
    args: ['cache', 'drain'],
    env: (f) => ({
      ...nowhere(f),
      DATABASE_REPLICA_URLS: `postgresql://app:${SECRET}@127.0.0.1:1/x, redis://app:${SECRET}@127.0.0.1:2/0`,
    }),
    code: 2,
    stderr: [/DATABASE_REPLICA_URLS \(#2\)/],
  },

  // Failures a user can cause: one line, a hint, the documented code, never the password.
  {
    name: 'an unreachable database is exit 5 with a hint',
    args: ['migrate', 'status'],
    env: nowhere,
    code: 5,
    stderr: [/^error: PostgreSQL at 127\.0\.0\.1:\d+\/x is unreachable/m, /hint: /],
  },
  {
    name: 'doctor with a component down: the report, then the error line (exit 5)',
    args: ['doctor', '--timeout', '2s'],
    env: nowhere,
    code: 5,
    stdout: [/FAILED/],
    stderr: [/^error: doctor: PostgreSQL failed$/m, /hint: see the report above/],
  },

  // Handlers against a real database (in this order: the failed run applies 20240101000000_ok first).
  {
    name: 'migrate status --json',
    args: ['--json', 'migrate', 'status'],
    env: (f) => db(f),
    code: 0,
    json: { counts: { applied: 1, pending: 0 }, ledgerExists: false },
  },
  {
    name: 'cache drain --json with nothing owed',
    args: ['--json', 'cache', 'drain'],
    env: (f) => db(f),
    code: 0,
    json: { ok: true, owedBefore: 0, rows: 0, owed: [] },
  },
  {
    name: 'migrate status --json lists the cache invalidations',
    args: ['--json', 'migrate', 'status'],
    env: (f) => db(f),
    code: 0,
    json: { invalidations: { owed: [], done: [] } },
  },
  {
    name: 'migrate unlock when nobody holds the lock',
    args: ['migrate', 'unlock', '--yes'],
    env: (f) => db(f),
    code: 0,
    stdout: [/not held/],
  },
  { name: 'locks --json', args: ['--json', 'locks'], env: (f) => db(f), code: 0, json: { ok: true, findings: [] } },
  {
    name: 'a failed migration: exit 1, what ran before it on stderr, the error naming migration and step',
    args: ['migrate', 'up'],
    env: (f) => db(f, f.failing),
    code: 1,
    stdout: [/^$/],
    stderr: [
      /✔ applied 20240101000000_ok/,
      /1 applied, 1 failed/,
      /^error: migration 20240102000000_bad failed at validate: validate\(\) returned false \(rolled back\)$/m,
    ],
  },
  {
    name: 'a failed migration with --json: one document, the outcomes and then the error',
    args: ['--json', 'migrate', 'up'],
    env: (f) => db(f, f.failing),
    code: 1,
    json: {
      command: 'up',
      ok: false,
      outcomes: [expect.objectContaining({ name: '20240102000000_bad', status: 'failed' })],
      error: {
        code: 'FAILED',
        exitCode: 1,
        details: expect.objectContaining({ migration: '20240102000000_bad', step: 'validate' }),
      },
    },
    check: (run) => expect(Object.keys(JSON.parse(run.stdout)).at(-1)).toBe('error'),
  },
  {
    name: 'validate with a finding: the report, then exit 3 from the one error path',
    args: ['migrate', 'validate', '20240102000000_bad'],
    env: (f) => ({ ...db(f, f.failing), GITHUB_ACTIONS: 'true' }),
    code: 3,
    stdout: [/1 finding\(s\)/],
    stderr: [
      /^error: migrate validate: 1 finding\(s\)$/m,
      /::error title=dbops migrate validate%3A 20240102000000_bad::/,
    ],
    check: (run) => expect(run.stderr.match(/::error /g)).toHaveLength(1),
  },
  {
    name: 'migrate create writes one file',
    args: ['migrate', 'create', 'backfill_totals'],
    env: (f) => ({ ...db(f), DBOPS_MIGRATIONS_DIR: mkdtempSync(join(tmpdir(), 'dbops-create-')) }),
    code: 0,
    check: (run) => {
      const path = /created (\S+)/.exec(run.stdout)?.[1] ?? '';
      expect(readdirSync(join(path, '..'))).toEqual([expect.stringMatching(/^\d{14}_backfill_totals\.ts$/)]);
    },
  },
];

describe('dbops in-process (runCli)', () => {
  let fixture: Fixture;
  const cwd = mkdtempSync(join(tmpdir(), 'dbops-inproc-'));

  beforeAll(async () => {
    const database = await createTestDatabase();
    await withClient(database.url, (c) => c.query(AUDIT_DDL));
    fixture = {
      db: database,
      failing: migrationFolder({
        '20240101000000_ok.ts': auditMig('ok'),
        '20240102000000_bad.ts': mig(
          `{ async up({ sql }) { await sql\`INSERT INTO audit (name) VALUES ('bad')\`; }, validate: () => false }`,
        ),
      }),
      empty: migrationFolder({}),
      closedPort: await freePort(),
    };
  });
  afterAll(async () => {
    await fixture?.db.drop();
  });

  it.each(cases)('$name', async (c) => {
    const run = await dbops(c.args, c.env?.(fixture) ?? {}, cwd);
    expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code: c.code });
    for (const pattern of c.stdout ?? []) expect(run.stdout).toMatch(pattern);
    for (const pattern of c.stderr ?? []) expect(run.stderr).toMatch(pattern);
    if (c.json) expect(JSON.parse(run.stdout)).toMatchObject(c.json);
    expect(run.stdout + run.stderr).not.toContain(SECRET);
    await c.check?.(run, fixture);
  });
});
