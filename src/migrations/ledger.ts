/**
 * The ledger seam: where applied data migrations are recorded (umzug's storage contract, with one
 * difference: every write goes through the migration's transaction handle, so the row commits or
 * rolls back with the migration). `PostgresLedger` (ledger-pg.ts) is the real one; `memoryLedger`
 * serves unit tests of the runner.
 */
import type { Db, Tx } from './session.js';
import type { ChecksumRepair, LedgerRow, RunnerIdentity } from './types.js';

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
  /** Where it lives, for messages. */
  readonly location: string;
  /** Every row, by name; null while the ledger does not exist (reading never creates or moves it). */
  read(db: Db): Promise<LedgerRow[] | null>;
  /** Where an older dbops' ledger still is, which `ensure` would move here; null when there is none. */
  legacy(db: Db): Promise<string | null>;
  /**
   * Creates it (or moves an older dbops' ledger here) if needed, inside `tx`, which holds the
   * migration lock. Returns a line for each thing it moved.
   */
  ensure(tx: Tx): Promise<string[]>;
  /** The names recorded, as `tx` sees them (re-read under the migration lock); empty while it does not exist. */
  applied(tx: Tx): Promise<Set<string>>;
  /** Records a migration, creating the ledger first if needed (in `tx`: a first run that fails leaves none). */
  record(tx: Tx, row: LedgerInsert): Promise<void>;
  /** Forgets a migration and its backfill checkpoints (a later `up` starts afresh). */
  remove(tx: Tx, name: string): Promise<void>;
  /**
   * Accepts a changed file: records its new checksum and appends who, when and the checksum before
   * to the row's audit trail; false (nothing written) when the row no longer has `previousChecksum`.
   */
  repair(tx: Tx, name: string, repair: RepairInsert): Promise<boolean>;
}

/** An accepted change to record: the checksums, and who accepted it. */
export interface RepairInsert {
  previousChecksum: string;
  checksum: string;
  identity: RunnerIdentity;
}

/** A ledger in memory, for tests: writes are undone when their transaction rolls back. */
export function memoryLedger(rows: LedgerRow[] | null = null): Ledger {
  let table = rows === null ? null : new Map(rows.map((row) => [row.name, row]));
  const existing = () => (table ??= new Map());
  const ensure = (tx: Tx) => {
    if (table !== null) return;
    existing();
    tx.onRollback(() => (table = null));
  };
  return {
    location: 'memory',
    read: async () => (table === null ? null : [...table.values()].sort((a, b) => (a.name < b.name ? -1 : 1))),
    legacy: async () => null,
    ensure: async (tx) => {
      ensure(tx);
      return [];
    },
    applied: async () => new Set(table?.keys() ?? []),
    record: async (tx, { identity, ...row }) => {
      ensure(tx);
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
        repairs: [],
      });
      tx.onRollback(() => table?.delete(row.name));
    },
    repair: async (tx, name, { previousChecksum, checksum, identity }) => {
      const old = table?.get(name);
      if (old?.checksum !== previousChecksum) return false;
      const entry: ChecksumRepair = {
        at: new Date(),
        by: identity.user,
        host: identity.host,
        dbUser: null,
        ciJob: identity.ciJob ?? null,
        dbopsVersion: identity.dbopsVersion,
        previousChecksum,
        checksum,
      };
      table?.set(name, { ...old, checksum, repairs: [...old.repairs, entry] });
      tx.onRollback(() => table?.set(name, old));
      return true;
    },
    remove: async (tx, name) => {
      const old = table?.get(name);
      table?.delete(name);
      if (old) tx.onRollback(() => table?.set(name, old));
    },
  };
}
