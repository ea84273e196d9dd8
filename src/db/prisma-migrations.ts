/**
 * Prisma's migration history on PostgreSQL, applied by dbops as `prisma migrate deploy` applies it:
 * the same `_prisma_migrations` table and rows (Prisma's checksums, `applied_steps_count` 1, no logs),
 * the same checks first (P3005: a first deploy onto a schema that already has tables; P3009: a failed
 * migration not yet resolved), the same advisory lock (so a concurrent `prisma migrate deploy` waits
 * for us or we for it), and each `migration.sql` sent as Prisma's engine sends it: the whole script in
 * one simple-protocol query, which PostgreSQL runs as one implicit transaction (a script's own
 * `BEGIN; ... COMMIT;` works as it does under Prisma).
 *
 * Why not Prisma's schema engine here: it works (scripts/prisma-engine-shim.mjs serves the official
 * CLI with it), but its WebAssembly build costs four round trips per migration through a driver
 * adapter, several times what the SQL itself takes on a long history, and it applies a batch without
 * saying when each migration starts and ends. Here a migration is one round trip: its script and its
 * row, committed together; a failed one leaves the row Prisma leaves (finished_at NULL, the error in
 * `logs`), so `prisma migrate status` and `prisma migrate resolve` work on it as usual.
 *
 * `rehearseSchemaMigration` runs the same steps inside a rehearsal's transaction (rolled back by the
 * caller): the script through `rehearsalPlan` (sql-script.ts), so its COMMIT commits nothing.
 */
import type pg from 'pg';
import { messageOf } from '../errors.js';
import { quoteIdent } from './pg.js';

export interface SchemaMigrationFile {
  name: string;
  dir: string;
  sql: string;
  checksum: string;
}

export interface AppliedSchemaMigration {
  name: string;
  checksum: string;
  startedAt: Date;
  finishedAt: Date | null;
  rolledBackAt: Date | null;
  logs: string | null;
}

const MIGRATION_FILE = 'migration.sql';

/** The key of the session advisory lock Prisma's engine holds while it applies migrations (prisma-engines' `ADVISORY_LOCK_TIMEOUT` lock). */
export const PRISMA_ADVISORY_LOCK = 72707369;

/** Prisma's table, as its engine creates it (pg_dump shows the same definition). */
function migrationsTableDdl(table: string): string {
  return `CREATE TABLE IF NOT EXISTS ${table} (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`;
}

/** `"public"."_prisma_migrations"` */
export function prismaMigrationsTable(schema = 'public'): string {
  return `${quoteIdent(schema)}.${quoteIdent('_prisma_migrations')}`;
}

/** The PostgreSQL schema Prisma uses for a datasource URL: its `?schema=` parameter, else `public`. */
export function prismaSchemaOf(url: string | undefined): string {
  if (!url) return 'public';
  try {
    return new URL(url).searchParams.get('schema') || 'public';
  } catch {
    return 'public';
  }
}

/**
 * The checksum Prisma stores in `_prisma_migrations.checksum`: SHA-256 of the script's UTF-8 text,
 * lower-case hex (prisma-engines `checksum::render_checksum`). No line-ending normalisation is
 * applied when the checksum is written; `migrate status` only tolerates CRLF/LF differences when
 * comparing.
 */
async function checksumOf(sql: string): Promise<string> {
  const { createHash } = await import('node:crypto');
  return createHash('sha256').update(sql, 'utf8').digest('hex');
}

/** Prisma's own ordering of migration folders (`localeCompare`, as in the CLI's `listMigrations`). */
function byName(a: { name: string }, b: { name: string }): number {
  return a.name.localeCompare(b.name);
}

export async function listSchemaMigrations(migrationsDir: string): Promise<SchemaMigrationFile[]> {
  const fs = await import('node:fs/promises');
  const path = await import('node:path');
  const base = path.resolve(migrationsDir);
  let entries: import('node:fs').Dirent[];
  try {
    entries = await fs.readdir(base, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new Error(`cannot read the migrations folder ${base}: ${messageOf(error)}`);
  }
  // Read concurrently: one at a time, many small files mostly wait on the thread pool.
  const out = await Promise.all(
    entries
      .filter((entry) => entry.isDirectory())
      .map(async (entry): Promise<SchemaMigrationFile> => {
        const dir = path.join(base, entry.name);
        let sql: string;
        try {
          sql = await fs.readFile(path.join(dir, MIGRATION_FILE), 'utf8');
        } catch (error) {
          throw new Error(`migration ${entry.name}: cannot read ${MIGRATION_FILE}: ${messageOf(error)}`);
        }
        return { name: entry.name, dir, sql, checksum: await checksumOf(sql) };
      }),
  );
  return out.sort(byName);
}

interface MigrationRow {
  migration_name: string;
  checksum: string;
  started_at: Date;
  finished_at: Date | null;
  rolled_back_at: Date | null;
  logs: string | null;
}

export async function readAppliedSchemaMigrations(
  client: pg.ClientBase,
  schema = 'public',
): Promise<AppliedSchemaMigration[]> {
  const table = prismaMigrationsTable(schema);
  const exists = await client.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [table]);
  if (!exists.rows[0]?.t) return [];
  const { rows } = await client.query<MigrationRow>(
    `SELECT migration_name, checksum, started_at, finished_at, rolled_back_at, logs FROM ${table} ORDER BY started_at, migration_name`,
  );
  return rows.map((r) => ({
    name: r.migration_name,
    checksum: r.checksum,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    rolledBackAt: r.rolled_back_at,
    logs: r.logs,
  }));
}

/** A refusal or failure of Prisma's kind, with Prisma's error code (P3005, P3009, P3018). */
export class PrismaMigrateError extends Error {
  constructor(
    readonly code: 'P3005' | 'P3009' | 'P3018',
    message: string,
    /** The migration it concerns. */
    readonly migration?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * What Prisma's engine checks before it applies anything, on `client` (a connection of its own, or a
 * rehearsal's transaction): the history table exists, or is created when the schema has no table yet
 * (P3005 otherwise: the database needs a baseline); no migration failed without being resolved (P3009).
 */
export async function prepareSchemaHistory(client: pg.ClientBase, schema = 'public'): Promise<void> {
  const table = prismaMigrationsTable(schema);
  const { rows } = await client.query<{ history: boolean; tables: boolean; nsp: boolean }>(
    `SELECT to_regclass($1) IS NOT NULL AS history,
            EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $2) AS nsp,
            EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = $2 AND c.relkind IN ('r', 'p')) AS tables`,
    [table, schema],
  );
  const state = rows[0];
  if (!state?.history) {
    if (state?.tables) {
      throw new PrismaMigrateError(
        'P3005',
        `The database schema is not empty. Read more about how to baseline an existing production database: https://pris.ly/d/migrate-baseline`,
      );
    }
    if (!state?.nsp) await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
    await client.query(migrationsTableDdl(table));
    return;
  }
  const failed = await client.query<{ migration_name: string; started_at: Date }>(
    `SELECT migration_name, started_at FROM ${table} WHERE finished_at IS NULL AND rolled_back_at IS NULL ORDER BY started_at LIMIT 1`,
  );
  const f = failed.rows[0];
  if (f) {
    throw new PrismaMigrateError(
      'P3009',
      `migrate found failed migrations in the target database, new migrations will not be applied. Read more about how to resolve migration issues in a production database: https://pris.ly/d/migrate-resolve\nThe \`${f.migration_name}\` migration started at ${f.started_at.toISOString()} failed`,
      f.migration_name,
    );
  }
}

/** The statement that records `file` as applied, started when its query arrived and finished now. */
function recordApplied(client: pg.ClientBase, table: string, file: SchemaMigrationFile, id: string): string {
  const lit = (text: string) => client.escapeLiteral(text);
  return `INSERT INTO ${table} ("id", "checksum", "started_at", "finished_at", "migration_name", "applied_steps_count")
VALUES (${lit(id)}, ${lit(file.checksum)}, date_trunc('milliseconds', statement_timestamp()), date_trunc('milliseconds', clock_timestamp()), ${lit(file.name)}, 1)`;
}

/**
 * Applies one migration on `client` (not inside a transaction): its script and its row in one
 * query. Returns its own duration (ms). On failure, leaves Prisma's failed row and throws P3018.
 */
export async function applySchemaMigration(
  client: pg.ClientBase,
  file: SchemaMigrationFile,
  schema = 'public',
): Promise<number> {
  const table = prismaMigrationsTable(schema);
  const id = globalThis.crypto.randomUUID();
  const t0 = performance.now();
  try {
    try {
      // The script ends where the file ends: a trailing comment or a missing semicolon is closed first.
      await client.query(`${file.sql}\n;\n${recordApplied(client, table, file, id)}`);
    } catch (error) {
      // A statement that cannot run in a transaction block (CREATE INDEX CONCURRENTLY) fails before
      // anything runs when it is the script's only statement: the engine sends such a script alone.
      if ((error as { code?: string }).code !== '25001' || !(await isSingleStatement(file.sql))) throw error;
      await client.query(file.sql);
      await client.query(recordApplied(client, table, file, id));
    }
  } catch (error) {
    await recordFailed(client, table, file, id, error, performance.now() - t0);
    throw new PrismaMigrateError('P3018', `migration ${file.name} failed: ${pgErrorText(error)}`, file.name, {
      cause: error,
    });
  }
  return performance.now() - t0;
}

/** Runs one migration inside a rehearsal's open transaction, as `applySchemaMigration` would; the caller rolls back. */
export async function rehearseSchemaMigration(
  client: pg.ClientBase,
  file: SchemaMigrationFile,
  schema = 'public',
): Promise<{ durationMs: number; notes: string[]; enumValues: string[] }> {
  const { rehearsalPlan } = await import('./sql-script.js');
  const t0 = performance.now();
  const plan = await rehearsalPlan(file.sql);
  if (plan.kind === 'fails') {
    const error = Object.assign(new Error(plan.message), { code: plan.code, severity: 'ERROR' });
    throw new PrismaMigrateError('P3018', `migration ${file.name} failed: ${pgErrorText(error)}`, file.name, {
      cause: error,
    });
  }
  // No savepoint around it: the rehearsal stops at the first failure and rolls everything back, and
  // a savepoint would make an enum value added by an earlier migration unusable in this one.
  try {
    if (plan.kind === 'whole') await client.query(file.sql);
    else for (const statement of plan.statements) await client.query(statement);
    await client.query(recordApplied(client, prismaMigrationsTable(schema), file, globalThis.crypto.randomUUID()));
  } catch (error) {
    throw new PrismaMigrateError('P3018', `migration ${file.name} failed: ${pgErrorText(error)}`, file.name, {
      cause: error,
    });
  }
  return {
    durationMs: performance.now() - t0,
    notes: plan.kind === 'statements' ? plan.notes : [],
    enumValues: plan.enumValues,
  };
}

async function isSingleStatement(sql: string): Promise<boolean> {
  const { splitScript } = await import('./sql-script.js');
  return (await splitScript(sql))?.length === 1;
}

/** Prisma's failed row: started, never finished, the error in `logs` (what `migrate status` reports). */
async function recordFailed(
  client: pg.ClientBase,
  table: string,
  file: SchemaMigrationFile,
  id: string,
  error: unknown,
  elapsedMs: number,
): Promise<void> {
  const code = (error as { code?: string }).code;
  const logs = `Migration name: ${file.name}\n\nDatabase error code: ${code ?? 'unknown'}\n\nDatabase error:\n${pgErrorText(error)}\n`;
  await client
    .query(
      `INSERT INTO ${table} ("id", "checksum", "started_at", "migration_name", "logs", "applied_steps_count")
       VALUES ($1, $2, date_trunc('milliseconds', clock_timestamp() - $3 * interval '1 millisecond'), $4, $5, 0)
       ON CONFLICT ("id") DO UPDATE SET "finished_at" = NULL, "applied_steps_count" = 0, "logs" = EXCLUDED."logs"`,
      [id, file.checksum, Math.round(elapsedMs), file.name, logs],
    )
    .catch(() => {
      // the connection is gone: the error that got us here says why
    });
}

/** PostgreSQL's error as psql shows it: `ERROR: ...`, with its detail and hint. */
function pgErrorText(error: unknown): string {
  const e = error as { message?: string; detail?: string; hint?: string; severity?: string };
  const lines = [`${e.severity ?? 'ERROR'}: ${messageOf(error)}`];
  if (e.detail) lines.push(`DETAIL: ${e.detail}`);
  if (e.hint) lines.push(`HINT: ${e.hint}`);
  return lines.join('\n');
}

/**
 * `prisma migrate deploy`, in-process: applies the pending migrations of `migrationsDir` (with
 * `names`, exactly these, which must be the oldest pending, in order) on a connection of its own,
 * holding Prisma's advisory lock. For a setup step (the embedded database, tests, benchmarks); the
 * migration runner applies schema migrations under its own lock through `applySchemaMigration`.
 */
export async function applySchemaMigrations(opts: {
  connectionString: string;
  migrationsDir: string;
  names?: string[];
}): Promise<{ applied: string[] }> {
  const { connectPg } = await import('./pg.js');
  const all = await listSchemaMigrations(opts.migrationsDir);
  if (opts.names && opts.names.length === 0) return { applied: [] };
  const schema = prismaSchemaOf(opts.connectionString);
  const client = await connectPg({
    connectionString: opts.connectionString,
    timeoutMs: 10_000,
    applicationName: 'dbops schema migrations',
  });
  try {
    if (schema !== 'public') await client.query(`SELECT set_config('search_path', $1, false)`, [quoteIdent(schema)]);
    await client.query('SELECT pg_advisory_lock($1)', [PRISMA_ADVISORY_LOCK]);
    await prepareSchemaHistory(client, schema);
    const done = new Set(
      (await readAppliedSchemaMigrations(client, schema))
        .filter((a) => a.finishedAt !== null && a.rolledBackAt === null)
        .map((a) => a.name),
    );
    const pending = all.filter((m) => !done.has(m.name));
    const todo = opts.names ? selectOldestPending(all, pending, done, opts.names) : pending;
    for (const file of todo) await applySchemaMigration(client, file, schema);
    return { applied: todo.map((m) => m.name) };
  } finally {
    await client.end().catch(() => {});
  }
}

/** With `names`, only the oldest pending migrations may be applied, in order. */
function selectOldestPending(
  all: SchemaMigrationFile[],
  pending: SchemaMigrationFile[],
  done: Set<string>,
  names: string[],
): SchemaMigrationFile[] {
  const known = new Set(all.map((m) => m.name));
  for (const name of names) {
    if (!known.has(name)) throw new Error(`migration ${name}: no such folder in the migrations directory`);
    if (done.has(name)) throw new Error(`migration ${name}: already applied`);
  }
  const expected = pending.slice(0, names.length);
  if (expected.map((m) => m.name).join('\n') !== names.join('\n')) {
    throw new Error(
      `migrations must be applied oldest first and in order: asked for ${names.join(', ')}, the next pending are ${expected.map((m) => m.name).join(', ') || '(none)'}`,
    );
  }
  return expected;
}
