/**
 * The ledger on PostgreSQL: one row per applied data migration in a table (by default
 * `_dbops_data_migrations`). Its location is this class's business alone: the runner, the lock and
 * the status only see the `Ledger` contract. Every statement is parameterised and runs on the
 * caller's transaction, so a row commits (or rolls back) with the migration it records.
 */
import type { ClientBase } from 'pg';
import { quoteQualified } from '../db/pg.js';
import type { Ledger, LedgerInsert } from './ledger.js';
import type { Db, Tx } from './session.js';
import type { LedgerRow } from './types.js';

export const DEFAULT_LEDGER_TABLE = '_dbops_data_migrations';

/** Key (two int4) of the transaction-scoped advisory lock that serialises ledger creation. */
const CREATE_LOCK: [number, number] = [0x64626f70, 1];

function ledgerDdl(table: string): string {
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

export class PostgresLedger implements Ledger {
  /** `table` may be schema-qualified (`dbops.data_migrations`). */
  constructor(readonly location: string = DEFAULT_LEDGER_TABLE) {}

  private get table(): string {
    return quoteQualified(this.location);
  }

  async read({ client }: Db): Promise<LedgerRow[] | null> {
    if (!(await this.exists(client))) return null;
    const { rows } = await client.query<Row>(
      `SELECT name, checksum, description, transactional, marked_only, started_at, finished_at, duration_ms,
              applied_by, applied_host, ci_job, db_user, dbops_version
         FROM ${this.table} ORDER BY name`,
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

  /**
   * Concurrent `CREATE TABLE IF NOT EXISTS` can fail with a unique violation in pg_type, so
   * creators serialise on a transaction-scoped advisory lock (safe through PgBouncer: the whole
   * transaction runs on one server connection).
   */
  async ensure({ client }: Tx): Promise<void> {
    if (await this.exists(client)) return;
    await client.query(`SELECT pg_advisory_xact_lock(${CREATE_LOCK[0]}, ${CREATE_LOCK[1]})`);
    await client.query(ledgerDdl(this.location));
  }

  async applied({ client }: Tx): Promise<Set<string>> {
    const { rows } = await client.query<{ name: string }>(`SELECT name FROM ${this.table}`);
    return new Set(rows.map((r) => r.name));
  }

  async record({ client }: Tx, row: LedgerInsert): Promise<void> {
    await client.query(
      `INSERT INTO ${this.table}
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

  async remove({ client }: Tx, name: string): Promise<void> {
    await client.query(`DELETE FROM ${this.table} WHERE name = $1`, [name]);
  }

  private async exists(client: ClientBase): Promise<boolean> {
    const { rows } = await client.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [this.table]);
    return Boolean(rows[0]?.t);
  }
}
