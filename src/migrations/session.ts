/**
 * The session: everything a migration's steps need from the database server besides the ledger.
 * Connections, the lock transaction and its settings, deadlines, events and rollback, as one value
 * handed to the step code (apply.ts), so that no step reaches back into the runner.
 *
 * `PgSession` (session-pg.ts) is the real one; a unit test hands the runner a small in-memory one.
 */
import { hostname, userInfo } from 'node:os';
import type { ClientBase } from 'pg';
import { StepFailure } from './outcome.js';
import type { TransactionLostError } from './tx-guard.js';
import type { LockHolder, MigrationStep, RunEvent, RunnerIdentity } from './types.js';

/** A connection to read through, outside any transaction. */
export interface Db {
  readonly client: ClientBase;
}

/** An open transaction: statements sent on `client` are inside it. The ledger writes through it. */
export interface Tx extends Db {
  /**
   * Runs once the transaction has committed and its outcome is recorded, never when it rolls
   * back: the hook point after a migration's commit. A hook that throws stops the run; the
   * migration stays committed.
   */
  afterCommit(fn: () => Promise<void> | void): void;
  /** Runs when it rolls back (an in-memory ledger undoes its writes there). */
  onRollback(fn: () => void): void;
  /**
   * Aborted when the transaction ended behind dbops' back: its lock was lost (a server or pooler
   * guard, or `migrate unlock`, ended the session) or a statement left it. `lostError()` says how.
   */
  readonly lost: AbortSignal;
}

/** How a session lets a transaction ask the server about itself (a memory session has none). */
export interface TxChecks {
  /** Before the ledger row is written: the connection is still inside this transaction, which still holds the lock. */
  verify(): Promise<void>;
  /** From another connection (a backfill batch): the lock is still held by this transaction's session. */
  holds(client: ClientBase): Promise<void>;
}

/**
 * What a transaction is opened for: a migration under the migration lock (`bounded`: its
 * statements and idle time are bounded by the transaction timeout), a read-only re-run of a
 * validate(), or plain bookkeeping (creating the ledger).
 */
export type TxKind = { lock: true; bounded: boolean } | { readOnly: true } | { plain: true };

export interface Session {
  readonly identity: RunnerIdentity;
  /** Aborted on SIGINT/SIGTERM: the runner stops between migrations, long steps at a safe point. */
  readonly signal: AbortSignal | undefined;
  /** Bound on one migration's transaction and each of its steps (ms). */
  readonly transactionTimeoutMs: number;
  emit(event: RunEvent): void;
  /** The connection that reads and holds the lock (opened on first use). */
  reader(): Promise<Db>;
  /** The second connection a `transaction: false` migration works on while the lock transaction stays open. */
  aux(): Promise<ClientBase>;
  /** Opens a transaction of that kind on the main connection: the one place BEGIN is sent. */
  begin(kind: TxKind): Promise<Transaction>;
  /** Commits; from then on a rollback of `tx` undoes nothing (its afterCommit hooks are the caller's to run). */
  commit(tx: Transaction): Promise<void>;
  /** Rolls back and never throws (the failure that led here is what the user needs to see). */
  rollback(tx: Transaction): Promise<void>;
  /** A step whose code outlived its deadline: drop its connection (closing it makes the server roll back). */
  abandon(client: ClientBase): void;
  lockHolder(): Promise<LockHolder | null>;
  unlock(backendPid: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * The hooks of one transaction. A session calls `committed()` after COMMIT and `runOnRollback()`
 * after ROLLBACK; apply.ts runs `runAfterCommit()` once the migration's outcome is recorded.
 */
export class Transaction implements Tx {
  private readonly commitHooks: Array<() => Promise<void> | void> = [];
  private readonly rollbackHooks: Array<() => void> = [];
  private done = false;
  private readonly lostController = new AbortController();
  private lostWith: TransactionLostError | undefined;
  /** Set by the session that opened the transaction. */
  checks: TxChecks | undefined;

  constructor(readonly client: ClientBase) {}

  get lost(): AbortSignal {
    return this.lostController.signal;
  }

  /** Why the transaction was lost (undefined while it is not). */
  lostError(): TransactionLostError | undefined {
    return this.lostWith;
  }

  /** The session saw it end behind dbops' back; the first report wins. */
  markLost(error: TransactionLostError): void {
    if (this.lostWith) return;
    this.lostWith = error;
    this.lostController.abort(error);
  }

  /** Throws the lost error, if any; else asks the server (see TxChecks.verify). */
  async verify(): Promise<void> {
    if (this.lostWith) throw this.lostWith;
    await this.checks?.verify();
    if (this.lostWith) throw this.lostWith;
  }

  /** Throws the lost error, if any; else asks the server from `client` whether the lock is still held. */
  async holds(client: ClientBase): Promise<void> {
    if (this.lostWith) throw this.lostWith;
    await this.checks?.holds(client);
    if (this.lostWith) throw this.lostWith;
  }

  afterCommit(fn: () => Promise<void> | void): void {
    this.commitHooks.push(fn);
  }

  onRollback(fn: () => void): void {
    this.rollbackHooks.push(fn);
  }

  /** COMMIT went through: nothing is to be undone any more (a later ROLLBACK is a no-op). */
  committed(): void {
    this.done = true;
    this.rollbackHooks.length = 0;
  }

  async runAfterCommit(): Promise<void> {
    for (const fn of this.commitHooks.splice(0)) await fn();
  }

  runOnRollback(): void {
    if (this.done) return;
    for (const fn of this.rollbackHooks.splice(0).reverse()) fn();
    this.commitHooks.length = 0;
  }
}

/**
 * Race a step against the transaction timeout. On timeout `abandon` runs first: the step's code may
 * still be running and queueing queries, so the connection is closed (the server rolls the
 * transaction back) rather than sent a ROLLBACK after which those queries would run and commit.
 */
export async function withDeadline<T>(
  work: Promise<T>,
  ms: number | undefined,
  step: MigrationStep,
  abandon: () => void,
): Promise<T> {
  if (ms === undefined) return work;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      abandon();
      reject(
        new StepFailure(
          step,
          `took longer than the transaction timeout (${Math.round(ms / 1000)} s); its transaction was rolled back`,
        ),
      );
    }, ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Before a lock transaction sits idle while another connection works (a transaction: false
 * migration's batches, schema migrations): a simple-protocol statement drops the unnamed portal of
 * the last parameterised query, which keeps its snapshot, and so an xmin, until it is dropped.
 * CREATE INDEX CONCURRENTLY on the other connection waits for every such snapshot: forever.
 */
export async function releaseSnapshot(tx: Tx): Promise<void> {
  await tx.client.query('SELECT 1');
}

/** Who runs, worked out once: what the caller knows (CLI: $USER, the CI job, the version), the rest from the OS. */
export function resolveIdentity(given: Partial<RunnerIdentity> = {}): RunnerIdentity {
  return {
    user: given.user ?? osUser(),
    host: given.host ?? hostname(),
    pid: given.pid ?? process.pid,
    ciJob: given.ciJob,
    dbopsVersion: given.dbopsVersion ?? 'unknown',
  };
}

function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}
