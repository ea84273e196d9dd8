/**
 * The ledger seam: where applied data migrations are recorded (umzug's storage contract, with one
 * difference: every write goes through the migration's transaction handle, so the row commits or
 * rolls back with the migration). `PostgresLedger` (ledger-pg.ts) is the real one; `memoryLedger`
 * serves unit tests of the runner.
 */
import type { Db, Tx } from './session.js';
import type { LedgerRow, RunnerIdentity } from './types.js';

/** A row to record: the migration, and who applied it. */
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

export interface Ledger {
  /** Where it lives, for messages; the migration lock is keyed on it. */
  readonly location: string;
  /** Every row, by name; null while the ledger does not exist (reading never creates it). */
  read(db: Db): Promise<LedgerRow[] | null>;
  /** Creates it if needed, inside `tx`. */
  ensure(tx: Tx): Promise<void>;
  /** The names recorded, as `tx` sees them (re-read under the migration lock). */
  applied(tx: Tx): Promise<Set<string>>;
  record(tx: Tx, row: LedgerInsert): Promise<void>;
  remove(tx: Tx, name: string): Promise<void>;
}

/** A ledger in memory, for tests: writes are undone when their transaction rolls back. */
export function memoryLedger(rows: LedgerRow[] | null = null): Ledger {
  let table = rows === null ? null : new Map(rows.map((row) => [row.name, row]));
  const existing = () => (table ??= new Map());
  return {
    location: 'memory',
    read: async () => (table === null ? null : [...table.values()].sort((a, b) => (a.name < b.name ? -1 : 1))),
    ensure: async (tx) => {
      if (table !== null) return;
      existing();
      tx.onRollback(() => (table = null));
    },
    applied: async () => new Set(existing().keys()),
    record: async (tx, { identity, ...row }) => {
      existing().set(row.name, {
        ...row,
        description: row.description ?? null,
        finishedAt: new Date(),
        durationMs: Math.round(row.durationMs),
        appliedBy: identity.user,
        appliedHost: identity.host,
        ciJob: identity.ciJob ?? null,
        dbUser: null,
        dbopsVersion: identity.dbopsVersion,
      });
      tx.onRollback(() => table?.delete(row.name));
    },
    remove: async (tx, name) => {
      const old = table?.get(name);
      table?.delete(name);
      if (old) tx.onRollback(() => table?.set(name, old));
    },
  };
}
