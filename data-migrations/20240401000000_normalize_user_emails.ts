/**
 * Lower-case users' e-mail addresses, and invalidate exactly the cached users it changed.
 *
 * The application caches each user cache-aside as `user:<id>` (five minutes). Rewriting rows behind
 * its back would leave the old e-mail in the cache until the TTL; a `cache flush 'user:*'` would
 * throw away every user. Here the `UPDATE ... RETURNING id` says which users changed, and
 * `invalidate('user:{id}', rows)` owes exactly their keys: recorded in dbops' outbox in this
 * transaction, removed after the commit once the read replicas replayed it
 * (docs/cache-invalidation.md). An address whose lower-case form another user already has is left
 * alone (the column is unique) and reported.
 * (In your own project: `import { defineDataMigration } from 'dbops';`.)
 */
import type { PrismaClient } from '../src/generated/prisma/client.js';
import { defineDataMigration } from '../src/migrations/define.js';

export default defineDataMigration<PrismaClient>({
  description: 'lower-case user e-mail addresses; invalidate the changed users’ user:<id> cache keys',

  async up({ sql, log, invalidate }) {
    // The original addresses, so down() restores exactly the rows this changed.
    await sql`CREATE TABLE IF NOT EXISTS "_dbops_normalize_user_emails_backup" ("id" text PRIMARY KEY, "email" text NOT NULL)`;
    const { rows } = await sql<{ id: string }>`
      WITH changed AS (
        INSERT INTO "_dbops_normalize_user_emails_backup" ("id", "email")
        SELECT u."id", u."email" FROM "User" u
         WHERE u."email" <> lower(u."email")
           AND NOT EXISTS (SELECT 1 FROM "User" o WHERE o."id" <> u."id" AND lower(o."email") = lower(u."email"))
        ON CONFLICT DO NOTHING
        RETURNING "id"
      )
      UPDATE "User" u SET "email" = lower(u."email"), "updatedAt" = now() FROM changed c WHERE c."id" = u."id"
      RETURNING u."id"`;
    invalidate('user:{id}', rows);
    log.info(`lower-cased ${rows.length} e-mail address(es)`);
  },

  async validate({ prisma }) {
    // Typed access through the generated client, inside the migration's transaction: every
    // address left in mixed case has a lower-case twin (those are the ones reported, not changed).
    const mixed = await prisma.$queryRaw<{ n: number }[]>`
      SELECT count(*)::int AS n FROM "User" u
       WHERE u."email" <> lower(u."email")
         AND NOT EXISTS (SELECT 1 FROM "User" o WHERE o."id" <> u."id" AND lower(o."email") = lower(u."email"))`;
    return mixed[0]?.n === 0;
  },

  async down({ sql, invalidate }) {
    const { rows } = await sql<{ id: string }>`
      UPDATE "User" u SET "email" = b."email", "updatedAt" = now()
        FROM "_dbops_normalize_user_emails_backup" b
       WHERE b."id" = u."id" AND u."email" = lower(b."email")
      RETURNING u."id"`;
    invalidate('user:{id}', rows);
    await sql`DROP TABLE IF EXISTS "_dbops_normalize_user_emails_backup"`;
  },
});
