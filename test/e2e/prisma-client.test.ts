/**
 * ctx.prisma on a Prisma 7 application whose client comes from the `prisma-client-js` generator
 * with a custom output: found from the schema (no DBOPS_PRISMA_CLIENT), or named as a package or a
 * folder; its queries run inside the migration's transaction. The client is generated for real
 * (Prisma 7.10 through the offline engine shim) into a throwaway copy of the example application.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, ROOT, runDbops } from '../helpers/cli.js';
import { withClient } from '../helpers/migrations.js';
import { createTestDatabase, type TestDatabase } from '../helpers/services.js';

const MIGRATION = `export default {
  async up({ prisma, sql }) {
    await sql\`INSERT INTO "User" ("id", "email", "updatedAt") VALUES ('u1', 'a@example.com', now()), ('u2', 'b@example.com', now())\`;
    await prisma.user.updateMany({ where: { role: null }, data: { role: 'USER' } });
  },
  async validate({ prisma }) {
    return (await prisma.user.count({ where: { role: null } })) === 0;
  },
};
`;

describe('ctx.prisma with a prisma-client-js client (Prisma 7, custom output)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dbops-client-js-'));
  const dbs: TestDatabase[] = [];
  beforeAll(() => {
    cpSync(join(ROOT, 'prisma'), join(dir, 'prisma'), { recursive: true });
    cpSync(join(ROOT, 'prisma.config.ts'), join(dir, 'prisma.config.ts'));
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    const schemaFile = join(dir, 'prisma', 'schema.prisma');
    const schema = readFileSync(schemaFile, 'utf8');
    const start = schema.indexOf('generator client {');
    const end = schema.indexOf('}', start) + 1;
    writeFileSync(
      schemaFile,
      `${schema.slice(0, start)}generator client {\n  provider = "prisma-client-js"\n  output   = "../generated/db"\n}${schema.slice(end)}`,
    );
    mkdirSync(join(dir, 'data-migrations'));
    writeFileSync(join(dir, 'data-migrations', '20240101000000_roles.mjs'), MIGRATION);
    execFileSync(process.execPath, [join(ROOT, 'node_modules', 'prisma', 'build', 'index.js'), 'generate'], {
      cwd: dir,
      env: cleanEnv({
        PRISMA_SCHEMA_ENGINE_BINARY: join(ROOT, 'scripts', 'prisma-engine-shim.mjs'),
        CHECKPOINT_DISABLE: '1',
        PRISMA_HIDE_UPDATE_MESSAGE: '1',
      }),
      stdio: 'ignore',
    });
  }, 120_000);
  afterAll(async () => {
    for (const db of dbs) await db.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function migrateUp(
    extraEnv: Record<string, string> = {},
  ): Promise<{ code: number | null; stderr: string; roles: (string | null)[] }> {
    const db = await createTestDatabase();
    dbs.push(db);
    const r = await runDbops(['migrate', 'up'], { cwd: dir, env: cleanEnv({ DATABASE_URL: db.url, ...extraEnv }) });
    const roles = await withClient(db.url, async (c) =>
      (await c.query<{ role: string | null }>('SELECT "role" FROM "User" ORDER BY "id"')).rows.map((x) => x.role),
    );
    return { code: r.code, stderr: r.stderr, roles };
  }

  it('is found from the generator in schema.prisma', async () => {
    const r = await migrateUp();
    expect(r.stderr).toContain('validate ok');
    expect(r.code).toBe(0);
    expect(r.roles).toEqual(['USER', 'USER']);
  });

  it('DBOPS_PRISMA_CLIENT names it as a folder, and a wrong package name is reported as such', async () => {
    const byFolder = await migrateUp({ DBOPS_PRISMA_CLIENT: 'generated/db' });
    expect(byFolder.code).toBe(0);
    expect(byFolder.roles).toEqual(['USER', 'USER']);

    const wrong = await migrateUp({ DBOPS_PRISMA_CLIENT: '@acme/db-client' });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('DBOPS_PRISMA_CLIENT=@acme/db-client: no file');
    expect(wrong.stderr).toContain('no package @acme/db-client installed');
    expect(wrong.stderr).toContain('npm install @acme/db-client');
    // the migration's own INSERT was rolled back with it
    expect(wrong.roles).toEqual([]);
  });
});
