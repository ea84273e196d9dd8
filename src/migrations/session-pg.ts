/**
 * The session on a real PostgreSQL: the one place a migration transaction is opened (BEGIN, the
 * transaction-scoped migration lock, the transaction's settings) and ended (COMMIT, ROLLBACK).
 * A guard that must hold for every migration transaction belongs in `begin`/`lock` here.
 */
import type { Client, ClientBase } from 'pg';
import { connectPg, queryError } from '../db/pg.js';
import { DbopsError } from '../errors.js';
import { acquireLockTransaction, findLockHolder, holderApplicationName, terminateHolder } from './lock.js';
import { type Db, type Session, Transaction, type TxKind } from './session.js';
import type { LockHolder, RunEvent, RunnerIdentity } from './types.js';

export interface PgSessionOptions {
  /** Connection string; the session opens and closes its own connections. */
  connectionString?: string | undefined;
  /** Or a function that opens connections, named `applicationName`; the caller closes them. */
  connect?: ((applicationName: string) => Promise<Client>) | undefined;
  connectTimeoutMs?: number | undefined;
  identity: RunnerIdentity;
  /** The advisory lock key that serialises runners of one ledger. */
  lockKey: [number, number];
  lockTimeoutMs: number;
  transactionTimeoutMs: number;
  onEvent?: ((event: RunEvent) => void) | undefined;
  signal?: AbortSignal | undefined;
}

export class PgSession implements Session {
  readonly identity: RunnerIdentity;
  readonly signal: AbortSignal | undefined;
  readonly transactionTimeoutMs: number;
  private readonly opts: PgSessionOptions;
  private readonly appName: string;
  private readonly opened: Client[] = [];
  private main: Client | undefined;
  private second: Client | undefined;
  private serverVersion: number | undefined;

  constructor(opts: PgSessionOptions) {
    this.opts = opts;
    this.identity = opts.identity;
    this.signal = opts.signal;
    this.transactionTimeoutMs = opts.transactionTimeoutMs;
    this.appName = holderApplicationName(opts.identity);
  }

  emit(event: RunEvent): void {
    this.opts.onEvent?.(event);
  }

  async reader(): Promise<Db> {
    return { client: await this.conn() };
  }

  async aux(): Promise<ClientBase> {
    this.second ??= await this.open();
    return this.second;
  }

  async begin(kind: TxKind): Promise<Transaction> {
    const client = await this.conn();
    if ('lock' in kind) {
      await this.lock(client, kind.bounded);
    } else if ('readOnly' in kind) {
      await client.query('BEGIN READ ONLY');
      await client.query('SELECT set_config($1, $2, true)', ['statement_timeout', `${this.transactionTimeoutMs}`]).catch(async (error: unknown) => {
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      });
    } else {
      await client.query('BEGIN');
    }
    return new Transaction(client);
  }

  async commit(tx: Transaction): Promise<void> {
    await tx.client.query('COMMIT');
    tx.committed();
  }

  async rollback(tx: Transaction): Promise<void> {
    await tx.client.query('ROLLBACK').catch(() => {});
    tx.runOnRollback();
  }

  abandon(client: ClientBase): void {
    if (client === this.main) this.main = undefined;
    if (client === this.second) this.second = undefined;
    (client as Client).end().catch(() => {});
  }

  async lockHolder(): Promise<LockHolder | null> {
    return findLockHolder(await this.conn(), this.opts.lockKey);
  }

  async unlock(backendPid: number): Promise<boolean> {
    return terminateHolder(await this.conn(), backendPid, this.opts.lockKey);
  }

  /** Closes the connections this session opened itself (not those from `connect`). */
  async close(): Promise<void> {
    for (const client of this.opened.splice(0)) await client.end().catch(() => {});
    this.main = undefined;
    this.second = undefined;
  }

  /** The main connection; a fresh one after its predecessor was abandoned. */
  private async conn(): Promise<Client> {
    this.main ??= await this.open();
    return this.main;
  }

  private async open(): Promise<Client> {
    if (this.opts.connect) return this.opts.connect(this.appName);
    const client = await connectPg({
      connectionString: this.opts.connectionString as string,
      timeoutMs: this.opts.connectTimeoutMs ?? 5000,
      applicationName: this.appName,
    });
    this.opened.push(client);
    return client;
  }

  private async lock(client: ClientBase, bounded: boolean): Promise<void> {
    try {
      await acquireLockTransaction(client, {
        key: this.opts.lockKey,
        applicationName: this.appName,
        timeoutMs: this.opts.lockTimeoutMs,
        settings: await this.settings(client, bounded),
        signal: this.signal,
        onWait: (holder, waitedMs) => this.emit({ type: 'waiting', holder, waitedMs }),
      });
    } catch (error) {
      if (error instanceof DbopsError) throw error;
      throw queryError(error, 'taking the migration lock');
    }
  }

  /** Settings local to a migration transaction: bounded statements, and notice a vanished client. */
  private async settings(client: ClientBase, bounded: boolean): Promise<Record<string, string>> {
    if (this.serverVersion === undefined) {
      const { rows } = await client.query<{ v: string }>('SELECT current_setting($1) AS v', ['server_version_num']);
      this.serverVersion = Number(rows[0]?.v ?? 0);
    }
    const settings: Record<string, string> = {};
    if (bounded) {
      settings.statement_timeout = `${this.transactionTimeoutMs}`;
      settings.idle_in_transaction_session_timeout = `${this.transactionTimeoutMs}`;
    }
    if (this.serverVersion >= 140000) settings.client_connection_check_interval = '1000';
    // A holder whose host vanished without closing its socket (power loss, partition) is noticed
    // within about a minute even while its transaction sits idle (transaction: false backfills).
    settings.tcp_keepalives_idle = '30';
    settings.tcp_keepalives_interval = '10';
    settings.tcp_keepalives_count = '3';
    return settings;
  }
}
