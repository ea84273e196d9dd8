/**
 * The session on a real PostgreSQL: the one place a migration transaction is opened (BEGIN, the
 * transaction-scoped migration lock, the transaction's settings) and ended (COMMIT, ROLLBACK).
 * A guard that must hold for every migration transaction belongs in `begin`/`lock` here.
 *
 * Server-side guards that could end a session behind dbops' back (docs/reliability.md):
 * - in its own transactions dbops sets statement_timeout, idle_in_transaction_session_timeout and
 *   (PostgreSQL 17+) transaction_timeout locally: bounded by --transaction-timeout for a
 *   migration's transaction, switched off for the lock transaction a `transaction: false`
 *   migration or a schema group keeps open while the work runs elsewhere;
 * - a heartbeat keeps that transaction from sitting idle for a pooler's guard (PgBouncer's
 *   idle_transaction_timeout) and asks the server each time whether the lock is still ours;
 *   the second connection gets a heartbeat too (idle_session_timeout, client_idle_timeout);
 * - a connection found dead while it held nothing is opened again (waiting for the lock included);
 * - every open transaction is watched (TxWatch): if its lock is lost or a statement leaves it,
 *   the transaction's `lost` signal aborts, the work stops, and nothing is recorded.
 */
import type { Client, ClientBase } from 'pg';
import { connectPg, queryError } from '../db/pg.js';
import { DbopsError } from '../errors.js';
import {
  acquireLockTransaction,
  findLockHolder,
  holderApplicationName,
  type LockWitness,
  lockStillHeld,
  terminateHolder,
} from './lock.js';
import { type Db, type Session, Transaction, type TxKind } from './session.js';
import { isIdle, TransactionLostError, TxWatch } from './tx-guard.js';
import type { LockHolder, RunEvent, RunnerIdentity } from './types.js';

/** How often an idle connection of a session says something to the server (ms). */
const HEARTBEAT_MS = 1000;
/** How often waiting for the lock may start over on a new connection after its connection was lost. */
const LOCK_RECONNECTS = 5;

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
  /** Heartbeat of idle connections and of the lock transaction (ms; default 1000; 0: none). */
  heartbeatMs?: number | undefined;
}

/** How long after dbops' own transaction deadline the server's guards end a transaction (a backstop). */
const SERVER_BACKSTOP_MS = 2000;

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
  /** Connections that errored or closed: opened again when next needed. */
  private readonly dead = new WeakSet<ClientBase>();
  private readonly watches = new Map<Transaction, TxWatch>();
  private keepalive: NodeJS.Timeout | undefined;
  private readonly heartbeatMs: number;

  constructor(opts: PgSessionOptions) {
    this.opts = opts;
    this.identity = opts.identity;
    this.signal = opts.signal;
    this.transactionTimeoutMs = opts.transactionTimeoutMs;
    this.appName = holderApplicationName(opts.identity);
    this.heartbeatMs = opts.heartbeatMs ?? HEARTBEAT_MS;
  }

  emit(event: RunEvent): void {
    this.opts.onEvent?.(event);
  }

  async reader(): Promise<Db> {
    return { client: await this.conn() };
  }

  async aux(): Promise<ClientBase> {
    if (this.second) await settle();
    if (this.second && this.dead.has(this.second)) this.drop(this.second);
    if (!this.second) {
      this.second = await this.open();
      await this.startKeepalive(this.second);
    }
    return this.second;
  }

  async begin(kind: TxKind): Promise<Transaction> {
    let client = await this.conn();
    let witness: LockWitness | undefined;
    if ('lock' in kind) {
      ({ client, witness } = await this.lock(kind.bounded));
    } else {
      // A guard may end the idle connection just as BEGIN goes out: nothing was held, begin on a new one.
      await client.query(`BEGIN${'readOnly' in kind ? ' READ ONLY' : ''}`).catch(async (error: unknown) => {
        if (!connectionLost(error)) throw error;
        this.drop(client);
        client = await this.conn();
        await client.query(`BEGIN${'readOnly' in kind ? ' READ ONLY' : ''}`);
      });
      if ('readOnly' in kind) {
        const settings = await this.settings(client, true);
        const sets = settings.map((_, i) => `set_config($${i * 2 + 1}, $${i * 2 + 2}, true)`).join(', ');
        await client.query(`SELECT ${sets}`, settings.flat()).catch(async (error: unknown) => {
          await client.query('ROLLBACK').catch(() => {});
          throw error;
        });
      }
    }
    const tx = new Transaction(client);
    this.watch(tx, client, 'lock' in kind ? { bounded: kind.bounded, witness } : undefined);
    return tx;
  }

  async commit(tx: Transaction): Promise<void> {
    this.unwatch(tx);
    await tx.client.query('COMMIT');
    tx.committed();
  }

  async rollback(tx: Transaction): Promise<void> {
    this.unwatch(tx);
    await tx.client.query('ROLLBACK').catch(() => {});
    tx.runOnRollback();
  }

  abandon(client: ClientBase): void {
    // dbops closes it on purpose (a step outlived its deadline): that is not a lost transaction.
    for (const tx of [...this.watches.keys()]) if (tx.client === client) this.unwatch(tx);
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
    clearInterval(this.keepalive);
    this.keepalive = undefined;
    for (const tx of [...this.watches.keys()]) this.unwatch(tx);
    for (const client of this.opened.splice(0)) await client.end().catch(() => {});
    this.main = undefined;
    this.second = undefined;
  }

  /** The main connection; a fresh one after its predecessor was abandoned or died while idle. */
  private async conn(): Promise<Client> {
    if (this.main) await settle();
    if (this.main && this.dead.has(this.main)) this.drop(this.main);
    this.main ??= await this.open();
    return this.main;
  }

  private async open(): Promise<Client> {
    let client: Client;
    if (this.opts.connect) {
      client = await this.opts.connect(this.appName);
    } else {
      client = await connectPg({
        connectionString: this.opts.connectionString as string,
        timeoutMs: this.opts.connectTimeoutMs ?? 5000,
        applicationName: this.appName,
      });
      this.opened.push(client);
    }
    // A server or pooler guard may end a connection while it sits idle (idle_session_timeout,
    // client_idle_timeout): remember it, so the next use opens a new one instead of failing.
    const died = () => this.dead.add(client);
    client.on('error', died);
    client.on('end', died);
    return client;
  }

  /** Forget a connection (closing it if it is ours). */
  private drop(client: Client): void {
    if (client === this.main) this.main = undefined;
    if (client === this.second) this.second = undefined;
    const i = this.opened.indexOf(client);
    if (i >= 0) {
      this.opened.splice(i, 1);
      client.end().catch(() => {});
    }
  }

  /**
   * Takes the lock on the main connection. A connection lost while waiting (PgBouncer's
   * query_wait_timeout or client_idle_timeout, a restarted pooler) held nothing: wait on a new one.
   */
  private async lock(bounded: boolean): Promise<{ client: Client; witness: LockWitness }> {
    const deadline = performance.now() + this.opts.lockTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      const client = await this.conn();
      try {
        const witness = await acquireLockTransaction(client, {
          key: this.opts.lockKey,
          applicationName: this.appName,
          timeoutMs: Math.max(0, deadline - performance.now()),
          settings: await this.settings(client, bounded),
          signal: this.signal,
          onWait: (holder, waitedMs) => this.emit({ type: 'waiting', holder, waitedMs }),
        });
        return { client, witness };
      } catch (error) {
        if (error instanceof DbopsError) throw error;
        if (
          !(this.dead.has(client) || connectionLost(error)) ||
          attempt >= LOCK_RECONNECTS ||
          performance.now() >= deadline ||
          this.signal?.aborted
        ) {
          throw queryError(error, 'taking the migration lock');
        }
        this.drop(client);
      }
    }
  }

  /**
   * Settings local to a transaction, in order: bounded statements, idle time and whole
   * transaction (or, for a lock transaction kept open beside the work, none of the server's
   * guards), and notice a vanished client.
   */
  private async settings(client: ClientBase, bounded: boolean): Promise<Array<[string, string]>> {
    if (this.serverVersion === undefined) {
      const { rows } = await client.query<{ v: string }>('SELECT current_setting($1) AS v', ['server_version_num']);
      this.serverVersion = Number(rows[0]?.v ?? 0);
    }
    // The server's guards are a backstop, a little after dbops' own deadline (withDeadline): dbops
    // acts first and names the cause ("took longer than the transaction timeout"); had the server's
    // timer started at BEGIN and fired first, the step would have seen only a dropped connection.
    const backstop = `${Math.min(this.transactionTimeoutMs + SERVER_BACKSTOP_MS, 2_147_483_647)}`;
    const limit = bounded ? backstop : '0';
    // dbops' own statements in a lock transaction are tiny; the bound keeps a stuck one from hanging forever.
    const settings: Array<[string, string]> = [
      ['statement_timeout', backstop],
      ['idle_in_transaction_session_timeout', limit],
    ];
    // transaction_timeout's timer starts with the transaction; a new positive value does not
    // restart it, 0 stops it: stop it, then start ours.
    if (this.serverVersion >= 170000) {
      settings.push(['transaction_timeout', '0']);
      if (bounded) settings.push(['transaction_timeout', limit]);
    }
    if (this.serverVersion >= 140000) settings.push(['client_connection_check_interval', '1000']);
    // A holder whose host vanished without closing its socket (power loss, partition) is noticed
    // within about a minute even while its transaction sits idle (transaction: false backfills).
    settings.push(['tcp_keepalives_idle', '30'], ['tcp_keepalives_interval', '10'], ['tcp_keepalives_count', '3']);
    return settings;
  }

  /** Watch an open transaction until it ends (commit, rollback), marking it lost if it ends otherwise. */
  private watch(
    tx: Transaction,
    client: Client,
    lock: { bounded: boolean; witness: LockWitness | undefined } | undefined,
  ): void {
    const watch = new TxWatch(client, {
      lockKey: lock ? this.opts.lockKey : undefined,
      heartbeatMs: lock ? this.heartbeatMs : 0,
      onLost: (why, escaped) => {
        this.watches.delete(tx);
        this.dead.add(client);
        tx.markLost(lostError(why, escaped, lock?.bounded ?? true));
      },
    });
    this.watches.set(tx, watch);
    const witness = lock?.witness;
    tx.checks = {
      verify: () => watch.verify(),
      holds: async (other) => {
        if (!witness || (await lockStillHeld(other, this.opts.lockKey, witness))) return;
        tx.markLost(
          lostError(
            `the migration lock is no longer held by this run's lock transaction (server pid ${witness.backendPid})`,
            false,
            false,
          ),
        );
      },
    };
  }

  private unwatch(tx: Transaction): void {
    this.watches.get(tx)?.stop();
    this.watches.delete(tx);
  }

  /**
   * The second connection says something when idle, so idle-session guards leave it open: every
   * heartbeat, or three times per the server's idle_session_timeout when that is shorter.
   */
  private async startKeepalive(client: Client): Promise<void> {
    if (this.keepalive || this.heartbeatMs <= 0) return;
    const { rows } = await client.query<{ ms: number | null }>(
      `SELECT (SELECT setting::int FROM pg_settings WHERE name = 'idle_session_timeout') AS ms`,
    );
    const idleSession = rows[0]?.ms ?? 0;
    const every =
      idleSession > 0 ? Math.max(50, Math.min(this.heartbeatMs, Math.floor(idleSession / 3))) : this.heartbeatMs;
    this.keepalive = setInterval(() => {
      const c = this.second;
      if (!c || this.dead.has(c) || !isIdle(c)) return;
      const query = Object.getPrototypeOf(c).query as (text: string) => Promise<unknown>;
      query.call(c, 'SELECT 1').catch(() => {});
    }, every);
    this.keepalive.unref();
  }
}

/**
 * The connection is gone (a network error, or the server or PgBouncer ended the session: classes
 * 08 and 57P0x, idle-in-transaction and transaction timeouts), as opposed to a statement failing.
 */
function connectionLost(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return true;
  return /^(08|57P0|E[A-Z])/.test(code) || code === '25P03' || code === '25P04';
}

/**
 * One turn of the event loop: a connection that a guard closed while dbops was busy (compiling
 * migrations, say) has its close already waiting in the socket; this lets the client see it
 * before dbops sends anything on it.
 */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The error of a transaction lost behind dbops' back: what ended it, and what that means for the data. */
function lostError(why: string, escaped: boolean, bounded: boolean): TransactionLostError {
  if (escaped) {
    return new TransactionLostError(`a statement left the migration's transaction: ${why}`, {
      escaped: true,
      hint: "a migration must not end dbops' transaction (COMMIT, ROLLBACK, END, PREPARE TRANSACTION): use SAVEPOINTs, or defineDataMigration({ transaction: false }); it is not recorded: check what was committed, then run it again",
    });
  }
  return new TransactionLostError(`lost the migration lock: ${why}`, {
    escaped: false,
    hint: bounded
      ? 'the server rolled the transaction back with the session, so nothing of it was committed and nothing recorded; run dbops migrate up again'
      : 'dbops stopped the work at once and recorded nothing; batches already committed stay, and another runner may be resuming it: run dbops migrate up again to finish (docs/reliability.md)',
  });
}
