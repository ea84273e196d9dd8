/**
 * Acceptance on real applications' complete Prisma migration histories, each from EMPTY databases
 * (PostgreSQL 15, so that Debian's pg_dump 15 can compare them):
 * - `dbops migrate up --with-schema` gives the same schema (pg_dump --schema-only, dbops' own schema
 *   aside) as applying each migration.sql with psql, one file after another;
 * - its `_prisma_migrations` is what `prisma migrate deploy` writes (the official CLI, offline
 *   through the engine shim): the same table, the same rows;
 * - Prisma's own CLI then finds nothing to say: `migrate status` up to date, `migrate diff
 *   --from-config-datasource --to-schema ... --exit-code` no difference, `migrate dev --create-only`
 *   no drift and an empty migration, `db pull` nothing of dbops.
 *
 * Histories: the one published on npm (fetched at test time, test/helpers/migration-history.ts),
 * and, with DBOPS_REAL_HISTORIES=<dir>, longer ones kept outside the repository (never committed).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, runDbops } from '../helpers/cli.js';
import {
  type History,
  LEGAL_AI_PRISMA_DB,
  localHistories,
  migrationHistory,
  migrationNames,
} from '../helpers/migration-history.js';
import { withClient } from '../helpers/migrations.js';
import { forPrisma7, prismaCli, prismaProject, prismaVerdict } from '../helpers/prisma-cli.js';
import { type PgServer, startPostgres } from '../helpers/servers.js';
import { services, uniqueName } from '../helpers/services.js';

const run = promisify(execFile);
const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

// A PostgreSQL 15 of its own: these histories leave thousands of statements in pg_stat_statements,
// which is per server, and would slow the slow-query tests that share the suite's server.
let server: PgServer | undefined;
beforeAll(async () => {
  if (services().pg15) server = await startPostgres(15);
}, 120_000);
afterAll(async () => {
  await server?.stop();
});

async function emptyDatabase(): Promise<{ url: string; name: string }> {
  const name = uniqueName('history');
  return { url: await (server as PgServer).createDatabase(name), name };
}

/** psql in one session, one migration.sql after the other, stopping at the first error. */
async function psqlHistory(url: string, migrations: string, names: string[]): Promise<void> {
  const files = names.flatMap((n) => ['-f', join(migrations, n, 'migration.sql')]);
  await run('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url, ...files], {
    timeout: 600_000,
    maxBuffer: 64 * 1024 * 1024,
  });
}

/** The schema as pg_dump sees it, without dbops' schema and Prisma's table. */
async function schemaDump(url: string): Promise<string> {
  const { stdout } = await run(
    'pg_dump',
    [
      '--schema-only',
      '--no-owner',
      '--no-privileges',
      '--exclude-schema=dbops',
      '--exclude-table=public._prisma_migrations',
      '-d',
      url,
    ],
    { maxBuffer: 256 * 1024 * 1024 },
  );
  return withoutRestrictKey(stdout);
}

/** pg_dump 15.x prints a random \restrict key on each run in newer minor versions. */
function withoutRestrictKey(dump: string): string {
  return dump
    .split('\n')
    .filter((line) => !/^\\(un)?restrict /.test(line))
    .join('\n');
}

async function historyTable(url: string): Promise<{ ddl: string; rows: unknown[] }> {
  const { stdout } = await run('pg_dump', [
    '--schema-only',
    '--no-owner',
    '--no-privileges',
    '-t',
    'public._prisma_migrations',
    '-d',
    url,
  ]);
  const rows = await withClient(url, async (c) => {
    const r = await c.query(
      `SELECT migration_name, checksum, logs, rolled_back_at, applied_steps_count, finished_at IS NOT NULL AS finished,
              finished_at >= started_at AS ordered, length(id) AS id_length
         FROM "_prisma_migrations" ORDER BY started_at, migration_name`,
    );
    return r.rows;
  });
  return { ddl: withoutRestrictKey(stdout), rows };
}

const histories: (History | { label: string; load: () => Promise<History> })[] = [
  {
    label: `${LEGAL_AI_PRISMA_DB.pkg}@${LEGAL_AI_PRISMA_DB.version}`,
    load: () => migrationHistory(LEGAL_AI_PRISMA_DB),
  },
  ...localHistories(process.env.DBOPS_REAL_HISTORIES),
];
if (!process.env.DBOPS_REAL_HISTORIES) {
  process.stderr.write(
    'note: DBOPS_REAL_HISTORIES is not set: only the npm-published history runs here (set it to a folder of <app>/{migrations,schema.prisma} to run longer ones)\n',
  );
}

describe.each(histories)('a real application’s complete history: $label', (entry) => {
  let h: History;
  let names: string[];
  let project: string;
  beforeAll(async () => {
    h = 'load' in entry ? await entry.load() : entry;
    names = migrationNames(h.migrations);
    project = prismaProject(forPrisma7(readFileSync(h.schema, 'utf8')), h.migrations);
    cleanups.push(() => rmSync(project, { recursive: true, force: true }));
  }, 600_000);

  it('dbops migrate up --with-schema on an empty database: the schema psql builds, the history prisma migrate deploy writes, and Prisma finds nothing to say', async (ctx) => {
    if (!services().pg15) return ctx.skip('PostgreSQL 15 is not installed (pg_dump 15 compares the schemas)');
    expect(names.length).toBeGreaterThanOrEqual(50);
    const [byPsql, byDbops, byPrisma] = [await emptyDatabase(), await emptyDatabase(), await emptyDatabase()];
    const data = mkdtempSync(join(tmpdir(), 'dbops-real-history-data-'));
    cleanups.push(() => rmSync(data, { recursive: true, force: true }));

    await psqlHistory(byPsql.url, h.migrations, names);
    const up = await runDbops(['migrate', 'up', '--with-schema'], {
      env: cleanEnv({
        DATABASE_URL: byDbops.url,
        DBOPS_PRISMA_MIGRATIONS_DIR: h.migrations,
        DBOPS_MIGRATIONS_DIR: data,
      }),
      timeoutMs: 600_000,
    });
    expect(up.code, up.stderr.slice(-2000)).toBe(0);
    expect(up.stdout).toContain(`${names.length} applied`);
    const deploy = await prismaCli(project, ['migrate', 'deploy'], byPrisma.url);
    expect(deploy.code, deploy.stderr).toBe(0);

    // the same schema as psql builds
    expect(await schemaDump(byDbops.url)).toBe(await schemaDump(byPsql.url));
    // the same history as prisma migrate deploy writes
    const [ours, prismas] = [await historyTable(byDbops.url), await historyTable(byPrisma.url)];
    expect(ours.ddl).toBe(prismas.ddl);
    expect(ours.rows).toEqual(prismas.rows);
    expect(ours.rows).toHaveLength(names.length);

    // Prisma's own CLI: no drift from the history, and on the application's own schema.prisma and on
    // the schema the migrations build (db pull of the psql database), word for word what it says of
    // the database it deployed itself (where an application's schema.prisma is not in sync with its
    // own migrations, or db pull cannot round-trip it, Prisma says so of both alike)
    const pulled = await prismaCli(project, ['db', 'pull', '--print'], byPsql.url);
    expect(pulled.code, pulled.stderr).toBe(0);
    const inSync = prismaProject(pulled.stdout, h.migrations);
    cleanups.push(() => rmSync(inSync, { recursive: true, force: true }));
    const said = (text: string, db: { name: string }) =>
      text.replaceAll(db.name, '<db>').replace(/\d{14}_after_dbops/g, '<now>_after_dbops');
    const clean: Record<string, boolean> = {};
    for (const [which, dir] of [
      ['schema.prisma', project],
      ['pulled schema', inSync],
    ] as const) {
      const [verdict, reference] = [await prismaVerdict(dir, byDbops.url), await prismaVerdict(dir, byPrisma.url)];
      expect(verdict.status.code, verdict.status.stdout + verdict.status.stderr).toBe(0);
      expect(verdict.status.stdout).toContain('Database schema is up to date!');
      expect(verdict.drift.code, verdict.drift.stdout + verdict.drift.stderr).toBe(0);
      expect(verdict.drift.stdout).toContain('No difference detected.');
      expect(verdict.dev.stdout + verdict.dev.stderr).not.toMatch(/Drift detected|We need to reset/);
      expect(verdict.pull.stdout).not.toMatch(/data_migrations|backfill_checkpoints|"dbops"/);
      for (const command of ['validate', 'diff', 'dev', 'pull'] as const) {
        expect(verdict[command].code, `${which}: ${command}`).toBe(reference[command].code);
        expect(said(verdict[command].stdout, byDbops), `${which}: ${command}`).toBe(
          said(reference[command].stdout, byPrisma),
        );
      }
      expect(verdict.created.map((m) => m.sql)).toEqual(reference.created.map((m) => m.sql));
      clean[which] =
        verdict.validate.code === 0 &&
        verdict.diff.code === 0 &&
        verdict.dev.code === 0 &&
        verdict.created.every((m) => /empty migration/.test(m.sql));
    }
    process.stderr.write(`${h.label}: ${names.length} migrations; Prisma clean on ${JSON.stringify(clean)}\n`);
  }, 1_800_000);
});
