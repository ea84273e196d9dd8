/**
 * dbops' own tables live in a PostgreSQL schema of their own (default `dbops`, `DBOPS_SCHEMA` or the
 * runner's `schema` option), as Flyway lets you choose its history table's schema. Prisma looks only
 * at the application's schema (`public`, or the URL's `?schema=`): `migrate dev` sees no drift,
 * `migrate diff` no difference, `db pull` no model, and `migrate deploy` finds an empty schema on a
 * first deploy, with no configuration in the application.
 *
 * The tables: the ledger (`data_migrations`), the backfill checkpoints (`backfill_checkpoints`), and
 * whatever else dbops keeps (a cache-invalidation outbox). Each is created with `ensureDbopsTable`,
 * inside the caller's transaction, so a first run that fails leaves nothing behind.
 *
 * dbops 0.1.0 kept the ledger and the checkpoints in the search path (`public._dbops_data_migrations`,
 * `public._dbops_backfill_checkpoints`). `moveLegacyTables` moves them here, under the migration lock,
 * and leaves a composite type of the old ledger's name behind: a 0.1.0 runner that starts later finds
 * "the ledger", cannot read it and stops, instead of creating an empty one and applying everything
 * again. A composite type is invisible to Prisma (neither `db pull` nor `migrate diff` reads them).
 */
import type { ClientBase } from 'pg';
import { quoteIdent } from '../db/pg.js';
import { ConfigError } from '../errors.js';

export const DEFAULT_DBOPS_SCHEMA = 'dbops';

/** The tables dbops keeps in its schema. */
export const DBOPS_TABLES = {
  ledger: 'data_migrations',
  checkpoints: 'backfill_checkpoints',
  outbox: 'cache_invalidations',
} as const;

/** Their columns (the body of CREATE TABLE). The ledger's `repairs` is the audit trail of `migrate repair`. */
export const DBOPS_DDL = {
  ledger: `(
  name text PRIMARY KEY,
  checksum text NOT NULL,
  description text,
  transactional boolean NOT NULL DEFAULT true,
  marked_only boolean NOT NULL DEFAULT false,
  started_at timestamptz NOT NULL,
  finished_at timestamptz NOT NULL DEFAULT now(),
  duration_ms integer NOT NULL DEFAULT 0,
  applied_by text,
  applied_host text,
  ci_job text,
  db_user text NOT NULL DEFAULT current_user,
  dbops_version text,
  repairs jsonb NOT NULL DEFAULT '[]'::jsonb
)`,
  checkpoints: `(
  migration       text        NOT NULL,
  table_name      text        NOT NULL,
  key_column      text        NOT NULL,
  spec_hash       text,
  last_key        text,
  rows_done       bigint      NOT NULL DEFAULT 0,
  batches         bigint      NOT NULL DEFAULT 0,
  estimated_total bigint,
  started_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  finished_at     timestamptz,
  PRIMARY KEY (migration, table_name)
)`,
  outbox: `(
  id              bigserial   PRIMARY KEY,
  migration       text        NOT NULL,
  direction       text        NOT NULL,
  batch           integer,
  prefix          text,
  patterns        text[]      NOT NULL DEFAULT '{}',
  keys            jsonb       NOT NULL DEFAULT '[]',
  created_at      timestamptz NOT NULL DEFAULT now(),
  done_at         timestamptz,
  keys_removed    bigint,
  replica_wait_ms integer,
  replica_wait    jsonb,
  attempts        integer     NOT NULL DEFAULT 0,
  last_error      text
)`,
} as const;

/** The columns dbops 0.1.0's tables had (copied when they are moved). */
const LEGACY_COLUMNS = {
  ledger: [
    'name',
    'checksum',
    'description',
    'transactional',
    'marked_only',
    'started_at',
    'finished_at',
    'duration_ms',
    'applied_by',
    'applied_host',
    'ci_job',
    'db_user',
    'dbops_version',
  ],
  checkpoints: [
    'migration',
    'table_name',
    'key_column',
    'spec_hash',
    'last_key',
    'rows_done',
    'batches',
    'estimated_total',
    'started_at',
    'updated_at',
    'finished_at',
  ],
} as const;

/** Where dbops 0.1.0 kept them: unqualified names, found through the search path. */
export const LEGACY_TABLES = {
  ledger: '_dbops_data_migrations',
  checkpoints: '_dbops_backfill_checkpoints',
} as const;

/**
 * The migration lock's key is derived from this name whatever the schema: it is the key dbops 0.1.0
 * took (its ledger's name), so a 0.1.0 runner and a current one exclude each other while both may
 * run during an upgrade. (Runners of two dbops schemas in one database therefore take turns too.)
 */
export const MIGRATION_LOCK_NAME = LEGACY_TABLES.ledger;

/** Key (two int4) of the transaction-scoped advisory lock that serialises creating dbops' objects (the key of 0.1.0's ledger creation). */
const CREATE_LOCK: [number, number] = [0x64626f70, 1];

/** A schema name dbops may use: not the application's `public`, not a system schema. */
export function checkDbopsSchema(schema: string): string {
  const s = schema.trim();
  if (!s)
    throw new ConfigError('the dbops schema name is empty', {
      hint: 'set DBOPS_SCHEMA to a schema name, e.g. dbops (the default)',
    });
  if (s === 'public' || s === 'information_schema' || s.startsWith('pg_')) {
    throw new ConfigError(`DBOPS_SCHEMA=${s}: dbops keeps its tables in a schema of its own, not in ${s}`, {
      hint: 'choose a schema only dbops uses, e.g. dbops (the default): Prisma then never sees dbops’ tables',
    });
  }
  return s;
}

/** `"schema"."table"` */
export function dbopsTable(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

/**
 * Makes sure dbops' schema exists, inside the caller's open transaction (it commits or rolls back
 * with it). Concurrent `CREATE SCHEMA IF NOT EXISTS` can fail with a unique violation, so creators
 * serialise on a transaction-scoped advisory lock (safe through PgBouncer: one transaction, one
 * server connection). Needs the CREATE privilege on the database the first time.
 */
export async function ensureDbopsSchema(client: ClientBase, schema: string): Promise<void> {
  if (await schemaExists(client, schema)) return;
  await client.query('SELECT pg_advisory_xact_lock($1, $2)', CREATE_LOCK);
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
}

/**
 * Makes sure `schema.table` exists (and its schema), inside the caller's open transaction. `ddl`
 * is the body of `CREATE TABLE` (the parenthesised column list). Returns true when this call created
 * it. The one way dbops creates a table of its own: the ledger, the checkpoints, an outbox.
 */
export async function ensureDbopsTable(
  client: ClientBase,
  schema: string,
  table: string,
  ddl: string,
): Promise<boolean> {
  if (await dbopsTableExists(client, schema, table)) return false;
  await client.query('SELECT pg_advisory_xact_lock($1, $2)', CREATE_LOCK);
  if (await dbopsTableExists(client, schema, table)) return false;
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
  await client.query(`CREATE TABLE ${dbopsTable(schema, table)} ${ddl}`);
  return true;
}

/**
 * Does `schema.table` exist? Read from the catalog tables (a fresh snapshot per statement), not
 * with to_regclass: a name looked up earlier in the same transaction stays cached as missing after
 * waiting on an advisory lock for another session to create it.
 */
export async function dbopsTableExists(client: ClientBase, schema: string, table: string): Promise<boolean> {
  const { rows } = await client.query(
    `SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
    [schema, table],
  );
  return rows.length > 0;
}

async function schemaExists(client: ClientBase, schema: string): Promise<boolean> {
  const { rows } = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
  return rows.length > 0;
}

/** A table of dbops 0.1.0 still in use: its qualified name, as its search path found it. */
export interface LegacyTable {
  /** `"public"."_dbops_data_migrations"` */
  name: string;
  /** `public._dbops_data_migrations`, for messages. */
  display: string;
  schema: string;
}

/**
 * A read of dbops' table, or of dbops 0.1.0's before the move. Readers do not hold the migration
 * lock: another dbops may move the old table (copy, drop, a composite type in its place) between
 * the lookup and the SELECT, which then fails with "relation does not exist" or "cannot open
 * relation". The read is tried again and finds the table where it now is.
 */
export async function readMovable<T>(read: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await read();
    } catch (error) {
      if (attempt >= 3 || !movedAway(error)) throw error;
    }
  }
}

function movedAway(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: string; message?: string };
  // 42P01 undefined_table, 42809 wrong_object_type (the composite type left in the old table's place).
  return code === '42P01' || code === '42809' || /cannot open relation/.test(message ?? '');
}

/** dbops 0.1.0's table `name` when it is still a table (not the composite type left after the move). */
export async function findLegacyTable(client: ClientBase, name: string): Promise<LegacyTable | null> {
  const { rows } = await client.query<{ nsp: string; rel: string }>(
    `SELECT n.nspname AS nsp, c.relname AS rel
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = to_regclass($1) AND c.relkind = 'r'`,
    [quoteIdent(name)],
  );
  const r = rows[0];
  return r ? { name: `${quoteIdent(r.nsp)}.${quoteIdent(r.rel)}`, display: `${r.nsp}.${r.rel}`, schema: r.nsp } : null;
}

export interface LegacyMove {
  table: string;
  from: string;
  to: string;
  rows: number;
}

/**
 * Moves dbops 0.1.0's ledger and checkpoints into `schema`, inside the caller's transaction, which
 * must hold the migration lock (0.1.0 runners take the same lock: none is between two statements
 * of its own while this runs). Rows are copied (a row already there wins: nothing is overwritten),
 * the old table is dropped, and in the old ledger's place a composite type of the same name stops
 * any 0.1.0 runner that starts later. Returns what moved; [] when nothing was left to move.
 */
export async function moveLegacyTables(client: ClientBase, schema: string): Promise<LegacyMove[]> {
  const moves: LegacyMove[] = [];
  for (const kind of ['ledger', 'checkpoints'] as const) {
    const legacy = await findLegacyTable(client, LEGACY_TABLES[kind]);
    if (!legacy) continue;
    await ensureDbopsTable(client, schema, DBOPS_TABLES[kind], DBOPS_DDL[kind]);
    const cols = LEGACY_COLUMNS[kind].map(quoteIdent).join(', ');
    const { rowCount } = await client.query(
      `INSERT INTO ${dbopsTable(schema, DBOPS_TABLES[kind])} (${cols}) SELECT ${cols} FROM ${legacy.name} ON CONFLICT DO NOTHING`,
    );
    await client.query(`DROP TABLE ${legacy.name}`);
    if (kind === 'ledger') {
      const tombstone = `${quoteIdent(legacy.schema)}.${quoteIdent(LEGACY_TABLES.ledger)}`;
      await client.query(`CREATE TYPE ${tombstone} AS (moved_to text)`);
      const note = `dbops moved its ledger to ${schema}.${DBOPS_TABLES.ledger}. This type stops a dbops 0.1.0 runner from starting an empty ledger here: upgrade it.`;
      await client.query(`COMMENT ON TYPE ${tombstone} IS ${quoteLiteral(note)}`);
    }
    moves.push({ table: kind, from: legacy.display, to: `${schema}.${DBOPS_TABLES[kind]}`, rows: rowCount ?? 0 });
  }
  return moves;
}

/** A SQL string literal for text we wrote ourselves (COMMENT takes no parameters). */
function quoteLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}
