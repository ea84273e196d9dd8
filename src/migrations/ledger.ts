/**
 * The ledger: one row per applied data migration in `_dbops_data_migrations`. Every write is
 * parameterised and runs on the caller's connection, inside the caller's transaction, so the
 * row commits (or rolls back) together with the migration it records.
 */
import type { ClientBase } from 'pg';
import { quoteQualified } from '../db/pg.js';
import type { LedgerRow, RunnerIdentity } from './types.js';

export const DEFAULT_LEDGER_TABLE = '_dbops_data_migrations';

/** Key (two int4) of the transaction-scoped advisory lock that serialises ledger creation. */
const CREATE_LOCK: [number, number] = [0x64626f70, 1];

export function ledgerDdl(table: string): string {
  const t = quoteQualified(table);
  return `CREATE TABLE IF NOT EXISTS ${t} (
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
  dbops_version text
)`;
}

/** Does the ledger table exist? (Read-only commands never create it.) */
export async function ledgerExists(client: ClientBase, table: string): Promise<boolean> {
  const { rows } = await client.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [quoteQualified(table)]);
  return Boolean(rows[0]?.t);
}

/**
 * Creates the ledger if needed. Concurrent `CREATE TABLE IF NOT EXISTS` can fail with a unique
 * violation in pg_type, so creators serialise on a transaction-scoped advisory lock (safe through
 * PgBouncer: the whole transaction runs on one server connection). Run inside a transaction.
 */
export async function ensureLedgerInTransaction(client: ClientBase, table: string): Promise<void> {
  if (await ledgerExists(client, table)) return;
  await client.query(`SELECT pg_advisory_xact_lock(${CREATE_LOCK[0]}, ${CREATE_LOCK[1]})`);
  await client.query(ledgerDdl(table));
}

/** Creates the ledger in a short transaction of its own. */
export async function ensureLedger(client: ClientBase, table: string): Promise<void> {
  if (await ledgerExists(client, table)) return;
  await client.query('BEGIN');
  try {
    await ensureLedgerInTransaction(client, table);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

interface Row {
  name: string;
  checksum: string;
  description: string | null;
  transactional: boolean;
  marked_only: boolean;
  started_at: Date;
  finished_at: Date;
  duration_ms: number;
  applied_by: string | null;
  applied_host: string | null;
  ci_job: string | null;
  db_user: string | null;
  dbops_version: string | null;
}

/** Every ledger row, by name; empty when the table does not exist. */
export async function readLedger(client: ClientBase, table: string): Promise<LedgerRow[]> {
  if (!(await ledgerExists(client, table))) return [];
  const { rows } = await client.query<Row>(
    `SELECT name, checksum, description, transactional, marked_only, started_at, finished_at, duration_ms,
            applied_by, applied_host, ci_job, db_user, dbops_version
       FROM ${quoteQualified(table)} ORDER BY name`,
  );
  return rows.map((r) => ({
    name: r.name,
    checksum: r.checksum,
    description: r.description,
    transactional: r.transactional,
    markedOnly: r.marked_only,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    durationMs: r.duration_ms,
    appliedBy: r.applied_by,
    appliedHost: r.applied_host,
    ciJob: r.ci_job,
    dbUser: r.db_user,
    dbopsVersion: r.dbops_version,
  }));
}

/** Names in the ledger (cheaper than readLedger, used after taking the lock). */
export async function appliedNames(client: ClientBase, table: string): Promise<Set<string>> {
  const { rows } = await client.query<{ name: string }>(`SELECT name FROM ${quoteQualified(table)}`);
  return new Set(rows.map((r) => r.name));
}

export interface LedgerInsert {
  name: string;
  checksum: string;
  description: string | undefined;
  transactional: boolean;
  markedOnly: boolean;
  startedAt: Date;
  durationMs: number;
  identity: RunnerIdentity;
}

export async function insertLedgerRow(client: ClientBase, table: string, row: LedgerInsert): Promise<void> {
  await client.query(
    `INSERT INTO ${quoteQualified(table)}
       (name, checksum, description, transactional, marked_only, started_at, finished_at, duration_ms,
        applied_by, applied_host, ci_job, dbops_version)
     VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp(), $7, $8, $9, $10, $11)`,
    [
      row.name,
      row.checksum,
      row.description ?? null,
      row.transactional,
      row.markedOnly,
      row.startedAt,
      Math.round(row.durationMs),
      row.identity.user,
      row.identity.host,
      row.identity.ciJob ?? null,
      row.identity.dbopsVersion,
    ],
  );
}

export async function deleteLedgerRow(client: ClientBase, table: string, name: string): Promise<number> {
  const res = await client.query(`DELETE FROM ${quoteQualified(table)} WHERE name = $1`, [name]);
  return res.rowCount ?? 0;
}
