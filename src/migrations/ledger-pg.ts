/**
 * The ledger on PostgreSQL: one row per applied data migration in `<schema>.data_migrations`, in
 * dbops' own schema (dbops-schema.ts; default `dbops`), where Prisma never looks. Its location is
 * this class's business alone: the runner and the status only see the `Ledger` contract. Every
 * statement is parameterised and runs on the caller's transaction, so a row commits (or rolls back)
 * with the migration it records, and so does the table the first time it is created.
 *
 * A database that still has dbops 0.1.0's ledger (`public._dbops_data_migrations`) is read there
 * until a command that writes moves it (`ensure`, under the migration lock).
 */
import type { ClientBase } from 'pg';
import {
  DBOPS_DDL,
  DBOPS_TABLES,
  DEFAULT_DBOPS_SCHEMA,
  dbopsTable,
  dbopsTableExists,
  ensureDbopsTable,
  findLegacyTable,
  LEGACY_TABLES,
  moveLegacyTables,
  readMovable,
} from './dbops-schema.js';
import type { Ledger, LedgerInsert, RepairInsert } from './ledger.js';
import type { Db, Tx } from './session.js';
import type { ChecksumRepair, LedgerRow } from './types.js';

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
  repairs: (Omit<ChecksumRepair, 'at'> & { at: string })[] | null;
}

const COLUMNS = `name, checksum, description, transactional, marked_only, started_at, finished_at, duration_ms,
       applied_by, applied_host, ci_job, db_user, dbops_version`;

export class PostgresLedger implements Ledger {
  readonly location: string;
  private readonly table: string;
  /** The table is known to exist (it cannot vanish while we hold the lock). */
  private known = false;

  /** `schema`: dbops' own schema (default `dbops`). */
  constructor(private readonly schema: string = DEFAULT_DBOPS_SCHEMA) {
    this.location = `${schema}.${DBOPS_TABLES.ledger}`;
    this.table = dbopsTable(schema, DBOPS_TABLES.ledger);
  }

  read({ client }: Db): Promise<LedgerRow[] | null> {
    return readMovable(() => this.readOnce(client));
  }

  private async readOnce(client: ClientBase): Promise<LedgerRow[] | null> {
    let from = (await this.exists(client)) ? this.table : null;
    let repairs = 'repairs';
    if (!from) {
      from = (await findLegacyTable(client, LEGACY_TABLES.ledger))?.name ?? null;
      repairs = 'NULL::jsonb AS repairs';
    }
    if (!from) return null;
    const { rows } = await client.query<Row>(`SELECT ${COLUMNS}, ${repairs} FROM ${from} ORDER BY name`);
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
      repairs: (r.repairs ?? []).map((x) => ({ ...x, at: new Date(x.at) })),
    }));
  }

  async legacy({ client }: Db): Promise<string | null> {
    return (await findLegacyTable(client, LEGACY_TABLES.ledger))?.display ?? null;
  }

  async ensure(tx: Tx): Promise<string[]> {
    const moves = await moveLegacyTables(tx.client, this.schema);
    await this.create(tx);
    return moves.map(
      (m) =>
        `moved dbops 0.1.0's ${m.table === 'ledger' ? 'ledger' : 'backfill checkpoints'} ${m.from} (${m.rows} row(s)) to ${m.to}`,
    );
  }

  async applied(tx: Tx): Promise<Set<string>> {
    if (!(await this.exists(tx.client))) return new Set();
    const { rows } = await tx.client.query<{ name: string }>(`SELECT name FROM ${this.table}`);
    return new Set(rows.map((r) => r.name));
  }

  async record(tx: Tx, row: LedgerInsert): Promise<void> {
    await this.create(tx);
    await tx.client.query(
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

  async remove(tx: Tx, name: string): Promise<void> {
    if (await this.exists(tx.client)) await tx.client.query(`DELETE FROM ${this.table} WHERE name = $1`, [name]);
    const { resetBackfill } = await import('./backfill.js');
    await resetBackfill(tx.client, name, this.schema);
  }

  async repair(tx: Tx, name: string, { previousChecksum, checksum, identity }: RepairInsert): Promise<boolean> {
    const { rowCount } = await tx.client.query(
      `UPDATE ${this.table}
          SET checksum = $3,
              repairs = repairs || jsonb_build_array(jsonb_build_object(
                'at', clock_timestamp(), 'by', $4::text, 'host', $5::text, 'dbUser', current_user::text,
                'ciJob', $6::text, 'dbopsVersion', $7::text, 'previousChecksum', $2::text, 'checksum', $3::text))
        WHERE name = $1 AND checksum = $2`,
      [name, previousChecksum, checksum, identity.user, identity.host, identity.ciJob ?? null, identity.dbopsVersion],
    );
    return rowCount === 1;
  }

  /** Creates the table (and dbops' schema) in `tx` unless it exists; checked again if `tx` rolls back. */
  private async create(tx: Tx): Promise<void> {
    if (this.known) return;
    await ensureDbopsTable(tx.client, this.schema, DBOPS_TABLES.ledger, DBOPS_DDL.ledger);
    this.known = true;
    tx.onRollback(() => {
      this.known = false;
    });
  }

  private async exists(client: ClientBase): Promise<boolean> {
    if (this.known) return true;
    return dbopsTableExists(client, this.schema, DBOPS_TABLES.ledger);
  }
}
