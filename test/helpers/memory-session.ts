/**
 * An in-memory Session for unit tests of the runner: no server, every transaction a Transaction
 * whose hooks run on commit and rollback (so the memory ledger commits or undoes with it), and a
 * connection on which every statement finds nothing (no backfill checkpoints, no rows).
 * `transactions` logs what was opened and how it ended; `events` what the runner reported.
 */
import type { ClientBase } from 'pg';
import { type Session, Transaction, type TxKind } from '../../src/migrations/session.js';
import type { RunEvent, RunnerIdentity } from '../../src/migrations/types.js';

export class MemorySession implements Session {
  readonly identity: RunnerIdentity = {
    user: 'tester',
    host: 'test-host',
    pid: 4242,
    ciJob: 'job-7',
    dbopsVersion: '0.0.0-test',
  };
  readonly transactionTimeoutMs = 60_000;
  readonly events: RunEvent[] = [];
  readonly transactions: string[] = [];
  readonly client = { query: async () => ({ rows: [], rowCount: 0, command: 'SELECT' }) } as unknown as ClientBase;
  private readonly controller = new AbortController();
  /** Runs once the migration lock is taken (another runner's work can be staged here). */
  onLock: (() => Promise<void> | void) | undefined;
  /** The next COMMIT fails (as when the server goes away at that moment). */
  failNextCommit = false;

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** As SIGINT: the runner stops before the next migration. */
  interrupt(): void {
    this.controller.abort('SIGINT');
  }

  emit(event: RunEvent): void {
    this.events.push(event);
  }

  async reader() {
    return { client: this.client };
  }

  async aux(): Promise<ClientBase> {
    return this.client;
  }

  async begin(kind: TxKind): Promise<Transaction> {
    this.transactions.push(
      'lock' in kind ? `lock${kind.bounded ? ' bounded' : ''}` : 'readOnly' in kind ? 'read-only' : 'plain',
    );
    if ('lock' in kind) await this.onLock?.();
    return new Transaction(this.client);
  }

  async commit(tx: Transaction): Promise<void> {
    if (this.failNextCommit) {
      this.failNextCommit = false;
      throw new Error('connection lost during COMMIT');
    }
    this.transactions.push('commit');
    tx.committed();
  }

  async rollback(tx: Transaction): Promise<void> {
    this.transactions.push('rollback');
    tx.runOnRollback();
  }

  abandon(): void {}

  async lockHolder() {
    return null;
  }

  async unlock() {
    return false;
  }

  async close(): Promise<void> {}
}
