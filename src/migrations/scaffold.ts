/** `dbops migrate create <name>`: writes a timestamped migration skeleton. */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { UsageError } from '../errors.js';

/** UTC `YYYYMMDDHHMMSS`. */
export function utcTimestamp(d: Date = new Date()): string {
  return d.toISOString().replace(/[-:T]/g, '').slice(0, 14);
}

/**
 * The line every template starts its up() with: a scaffold run before it is edited fails with this
 * message (in a rehearsal, in up, before it touches anything) rather than running an example
 * against a table that does not exist, or recording an empty migration as applied.
 */
export const TEMPLATE_GUARD = 'is still the template of dbops migrate create';

function guard(): string {
  return `throw new Error('this migration ${TEMPLATE_GUARD}: write up(), validate() and down(), then delete this line');`;
}

export function template(name: string, transaction: boolean): string {
  const description = name.replace(/_/g, ' ');
  if (!transaction) {
    return `import { defineDataMigration } from 'dbops';

// transaction: false — each batch commits on its own and progress is checkpointed, so an
// interrupted run resumes. The ledger row is written only after validate() passes.
export default defineDataMigration({
  description: '${description}',
  transaction: false,

  async up({ backfill }) {
    ${guard()}
    // For example: set a new column in batches of rows, by primary key.
    await backfill({ table: 'TableName', key: 'id', where: '"column" IS NULL', set: '"column" = 0' });
  },

  // Post-condition after the last batch: return false (or throw) and the migration stays unrecorded.
  async validate({ sql }) {
    const { rows } = await sql<{ n: number }>\`SELECT count(*)::int AS n FROM "TableName" WHERE "column" IS NULL\`;
    return rows[0]?.n === 0;
  },

  // Undo, in batches too (dbops migrate down). Delete it if the change cannot be undone.
  async down({ backfill }) {
    await backfill({ table: 'TableName', key: 'id', where: '"column" = 0', set: '"column" = NULL' });
  },
});
`;
  }
  return `import { defineDataMigration } from 'dbops';
// For typed ctx.prisma: import type { PrismaClient } from '../src/generated/prisma/client.js';
// and write defineDataMigration<PrismaClient>({ ... }).

export default defineDataMigration({
  description: '${description}',

  // Runs in one transaction with validate() and the ledger row: all or nothing.
  async up({ sql, log }) {
    ${guard()}
    // For example:
    const { rowCount } = await sql\`UPDATE "TableName" SET "column" = \${'value'} WHERE "column" IS NULL\`;
    log.info(\`updated \${rowCount} row(s)\`);
  },

  // Post-condition, checked before commit: return false (or throw) to roll everything back.
  async validate({ sql }) {
    const { rows } = await sql<{ n: number }>\`SELECT count(*)::int AS n FROM "TableName" WHERE "column" IS NULL\`;
    return rows[0]?.n === 0;
  },

  async down({ sql }) {
    await sql\`UPDATE "TableName" SET "column" = NULL WHERE "column" = \${'value'}\`;
  },
});
`;
}

export async function scaffoldMigration(
  dir: string,
  rawName: string,
  opts: { transaction: boolean; now?: Date },
): Promise<{ name: string; path: string }> {
  const name = rawName.trim();
  if (!/^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$/.test(name)) {
    const suggestion = name
      .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '_')
      .replace(/^_+|_+$/g, '');
    throw new UsageError(`migration name "${rawName}" must be snake_case (lower-case letters, digits, underscores)`, {
      hint: suggestion ? `try: dbops migrate create ${suggestion}` : 'e.g. dbops migrate create backfill_order_totals',
    });
  }
  const base = resolve(dir);
  await mkdir(base, { recursive: true });
  const existing = await readdir(base);
  const clash = existing.find((f) => f.replace(/\.[cm]?[jt]s$/, '').slice(15) === name);
  if (clash)
    throw new UsageError(`a migration named ${name} already exists: ${join(base, clash)}`, {
      hint: 'choose another name',
    });
  const full = `${utcTimestamp(opts.now)}_${name}`;
  const path = join(base, `${full}.ts`);
  await writeFile(path, template(name, opts.transaction), { flag: 'wx' });
  return { name: full, path };
}
