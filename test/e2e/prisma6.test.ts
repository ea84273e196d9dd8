/**
 * A Prisma 6 application (test/fixtures/prisma6-app) adopting dbops: its schema migrations go
 * through dbops' WebAssembly schema engine, its SQL data migrations and its ctx.prisma migrations
 * (the application's own Prisma 6 client, found from its schema) run in the migration's
 * transaction. Prisma 6 is installed from npm at test time (test/helpers/prisma-app.ts).
 */
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applySchemaMigrations } from '../../src/db/prisma-migrations.js';
import { cleanEnv, runDbops } from '../helpers/cli.js';
import { withClient } from '../helpers/migrations.js';
import { appFrom, installPrisma, type PrismaInstall, ROOT } from '../helpers/prisma-app.js';
import { createTestDatabase, type TestDatabase } from '../helpers/services.js';

const FIXTURE = join(ROOT, 'test', 'fixtures', 'prisma6-app');
const SCHEMA = readFileSync(join(FIXTURE, 'prisma', 'schema.prisma'), 'utf8');
const INIT = '20240101000000_init';
const ADD_ROLE = '20240201000000_add_role';

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

async function app(install: PrismaInstall): Promise<string> {
  const dir = await appFrom(FIXTURE, install);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * An empty database with the first schema migration applied. (A first deploy on a database with
 * nothing at all is issue 11 part B; it is the same call once dbops' ledger no longer sits in public.)
 */
async function database(dir: string): Promise<TestDatabase> {
  const db = await createTestDatabase({ empty: true });
  cleanups.push(() => db.drop());
  await applySchemaMigrations({
    connectionString: db.url,
    migrationsDir: join(dir, 'prisma', 'migrations'),
    names: [INIT],
  });
  return db;
}

async function roles(url: string): Promise<Record<string, string | null>> {
  return withClient(url, async (c) => {
    const { rows } = await c.query<{ email: string; role: string | null }>(
      'SELECT "email", "role" FROM "User" ORDER BY "email"',
    );
    return Object.fromEntries(rows.map((r) => [r.email, r.role]));
  });
}

describe('a Prisma 6 application', () => {
  let prisma6: PrismaInstall;
  beforeAll(async () => {
    prisma6 = await installPrisma('6.19.3', SCHEMA);
  }, 600_000);

  it('migrate up --with-schema: schema migrations, a SQL data migration and a ctx.prisma migration on the Prisma 6 client', async () => {
    const dir = await app(prisma6);
    const db = await database(dir);
    const up = await runDbops(['migrate', 'up', '--with-schema'], {
      cwd: dir,
      env: cleanEnv({ DATABASE_URL: db.url }),
    });
    expect(up.stderr).toContain('20240301000000_roles_with_prisma: gave 3 user(s) the role USER');
    expect(up.code).toBe(0);
    // ctx.prisma's writes, its nested $transaction included, are committed with the migration
    expect(await roles(db.url)).toEqual({
      'ada@example.com': 'ADMIN',
      'edsger@example.com': 'USER',
      'grace@example.com': 'USER',
    });
    // _prisma_migrations as Prisma writes it: the SHA-256 of each migration.sql
    const rows = await withClient(db.url, (c) =>
      c.query<{ migration_name: string; checksum: string }>(
        'SELECT migration_name, checksum FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL ORDER BY migration_name',
      ),
    );
    const sha = (name: string) =>
      createHash('sha256')
        .update(readFileSync(join(dir, 'prisma', 'migrations', name, 'migration.sql')))
        .digest('hex');
    expect(rows.rows.map((r) => [r.migration_name, r.checksum])).toEqual([
      [INIT, sha(INIT)],
      [ADD_ROLE, sha(ADD_ROLE)],
    ]);
    const again = await runDbops(['migrate', 'up', '--with-schema'], {
      cwd: dir,
      env: cleanEnv({ DATABASE_URL: db.url }),
    });
    expect(again.code).toBe(0);
    expect(await roles(db.url)).toEqual({
      'ada@example.com': 'ADMIN',
      'edsger@example.com': 'USER',
      'grace@example.com': 'USER',
    });
  });

  it("ctx.prisma's writes are rolled back with the migration when its validate fails", async () => {
    const dir = await app(prisma6);
    writeFileSync(
      join(dir, 'data-migrations', '20240301000000_roles_with_prisma.mjs'),
      `export default {
  async up({ prisma }) {
    await prisma.user.updateMany({ data: { role: 'TEMP' } });
  },
  async validate({ prisma }) {
    return (await prisma.user.count({ where: { role: 'TEMP' } })) === 0;
  },
};
`,
    );
    const db = await database(dir);
    const up = await runDbops(['migrate', 'up', '--with-schema'], {
      cwd: dir,
      env: cleanEnv({ DATABASE_URL: db.url }),
    });
    expect(up.code).toBe(1);
    expect(up.stderr).toContain('20240301000000_roles_with_prisma');
    // the SQL migration before it is applied; nothing ctx.prisma wrote survived
    expect(await roles(db.url)).toEqual({
      'ada@example.com': null,
      'edsger@example.com': null,
      'grace@example.com': null,
    });
  });

  it('no generated client: the user is told where dbops looked and how to point it at the client', async () => {
    const dir = await app(prisma6);
    const schema = join(dir, 'prisma', 'schema.prisma');
    writeFileSync(
      schema,
      readFileSync(schema, 'utf8').replace(
        'provider   = "prisma-client-js"',
        'provider   = "prisma-client"\n  output     = "../src/db"',
      ),
    );
    const db = await database(dir);
    const up = await runDbops(['migrate', 'up', '--with-schema'], {
      cwd: dir,
      env: cleanEnv({ DATABASE_URL: db.url }),
    });
    expect(up.code).toBe(1);
    expect(up.stderr).toContain(
      'ctx.prisma: no generated Prisma client found (looked at generator client (prisma-client) in prisma/schema.prisma: src/db/client.ts (not generated))',
    );
    expect(up.stderr).toContain(
      'run prisma generate, or set DBOPS_PRISMA_CLIENT (or --prisma-client) to the client module',
    );
    expect(up.stderr).not.toContain('fix the migration and run again');
  });

  it('a Prisma 6 client without driver adapters: the error says plainly why ctx.prisma cannot share the transaction', async () => {
    // Prisma before 6.16 needs the driverAdapters preview feature to take an adapter at all.
    const schema = SCHEMA.replace(
      'engineType = "client"',
      'engineType      = "client"\n  previewFeatures = ["queryCompiler"]',
    );
    const prisma615 = await installPrisma('6.15.0', schema, []);
    const dir = await app(prisma615);
    const db = await database(dir);
    const up = await runDbops(['migrate', 'up', '--with-schema'], {
      cwd: dir,
      env: cleanEnv({ DATABASE_URL: db.url }),
    });
    expect(up.code).not.toBe(0);
    expect(up.stderr).toContain(
      '(Prisma 6.15.0) was generated without driver adapters, so it cannot run on the migration',
    );
    expect(up.stderr).toContain('previewFeatures = ["driverAdapters"]');
    expect(up.stderr).not.toContain('fix the migration and run again');
    expect(await roles(db.url)).toEqual({
      'ada@example.com': null,
      'edsger@example.com': null,
      'grace@example.com': null,
    });
  }, 600_000);
});
