/**
 * A real application's complete Prisma migration history (fetched from npm at test time, see
 * test/helpers/migration-history.ts), applied to EMPTY databases: with psql, one migration.sql
 * after another as a person would, and with dbops' schema engine. Both must give the same schema.
 * PostgreSQL 15 (Debian's), so that Debian's pg_dump can compare the two.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applySchemaMigrations, readAppliedSchemaMigrations } from '../../src/db/prisma-migrations.js';
import { LEGAL_AI_PRISMA_DB, migrationHistory, migrationNames } from '../helpers/migration-history.js';
import { withClient } from '../helpers/migrations.js';
import { createTestDatabase, type TestDatabase } from '../helpers/services.js';

const run = promisify(execFile);
const dbs: TestDatabase[] = [];
afterAll(async () => {
  for (const db of dbs) await db.drop();
});

async function emptyDatabase(): Promise<TestDatabase> {
  const db = await createTestDatabase({ empty: true, server: 'pg15' });
  dbs.push(db);
  return db;
}

/** psql, as a person applies a migration by hand: stop at the first error. */
async function psqlFile(url: string, file: string): Promise<void> {
  await run('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url, '-f', file], { timeout: 120_000 });
}

/** The schema as pg_dump sees it, without Prisma's own table. */
async function schemaDump(url: string): Promise<string> {
  const { stdout } = await run('pg_dump', ['--schema-only', '--no-owner', '--no-privileges', '--exclude-table=_prisma_migrations', '-d', url], {
    maxBuffer: 64 * 1024 * 1024,
  });
  // pg_dump 15.x prints a random \restrict key on each run in newer minor versions
  return stdout
    .split('\n')
    .filter((line) => !/^\\(un)?restrict /.test(line))
    .join('\n');
}

describe(`a real migration history: ${LEGAL_AI_PRISMA_DB.pkg}@${LEGAL_AI_PRISMA_DB.version} (${LEGAL_AI_PRISMA_DB.license}, Prisma ${LEGAL_AI_PRISMA_DB.prisma})`, () => {
  let dir: string;
  let names: string[];
  beforeAll(async () => {
    dir = await migrationHistory(LEGAL_AI_PRISMA_DB);
    names = migrationNames(dir);
  }, 300_000);

  it('is the complete history, applied with psql to an empty database', async () => {
    expect(names.length).toBeGreaterThanOrEqual(50);
    const db = await emptyDatabase();
    for (const name of names) await psqlFile(db.url, join(dir, name, 'migration.sql'));
    const tables = await withClient(
      db.url,
      async (c) => (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'`)).rows[0]?.n,
    );
    expect(tables).toBeGreaterThan(10);
  });

  it("dbops' schema engine applies it to an empty database: the same schema as psql, recorded as Prisma records it", async () => {
    const byPsql = await emptyDatabase();
    for (const name of names) await psqlFile(byPsql.url, join(dir, name, 'migration.sql'));
    const byDbops = await emptyDatabase();
    const { applied } = await applySchemaMigrations({ connectionString: byDbops.url, migrationsDir: dir });
    expect(applied).toEqual(names);
    expect(await schemaDump(byDbops.url)).toBe(await schemaDump(byPsql.url));
    const rows = await withClient(byDbops.url, (c) => readAppliedSchemaMigrations(c));
    expect(rows.map((r) => [r.name, r.checksum])).toEqual(
      names.map((n) => [
        n,
        createHash('sha256')
          .update(readFileSync(join(dir, n, 'migration.sql')))
          .digest('hex'),
      ]),
    );
  });
});
