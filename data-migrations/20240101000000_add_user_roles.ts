/**
 * The original design's AddUserRoles migration, done right: one set-based UPDATE instead of a
 * per-user loop, a post-condition checked inside the same transaction, and a way back.
 * (In your own project: `import { defineDataMigration } from 'dbops';`.)
 */
import type { PrismaClient } from '../src/generated/prisma/client.js';
import { defineDataMigration } from '../src/migrations/define.js';

export default defineDataMigration<PrismaClient>({
  description: "give every user without a role the role 'USER'",

  async up({ sql, log }) {
    // Records which rows we filled, so down() reverts exactly those and nothing a user set since.
    await sql`CREATE TABLE IF NOT EXISTS "_dbops_add_user_roles_backup" ("id" text PRIMARY KEY)`;
    await sql`INSERT INTO "_dbops_add_user_roles_backup" ("id") SELECT "id" FROM "User" WHERE "role" IS NULL ON CONFLICT DO NOTHING`;
    const { rowCount } = await sql`UPDATE "User" SET "role" = ${'USER'}, "updatedAt" = now() WHERE "role" IS NULL`;
    log.info(`gave ${rowCount} user(s) the role USER`);
  },

  async validate({ prisma }) {
    // Typed access through the project's generated client, inside the migration's transaction.
    const missing = await prisma.user.count({ where: { isActive: true, deletedAt: null, role: null } });
    return missing === 0;
  },

  async down({ sql }) {
    await sql`UPDATE "User" u SET "role" = NULL FROM "_dbops_add_user_roles_backup" b WHERE b."id" = u."id" AND u."role" = ${'USER'}`;
    await sql`DROP TABLE IF EXISTS "_dbops_add_user_roles_backup"`;
  },
});
