/**
 * Guards of a migration's transaction that trust neither the migration's code nor the servers in
 * between:
 *
 * - `transactionControl(text)`: PostgreSQL's own grammar (libpg-query, the server's parser compiled
 *   to WebAssembly) finds a statement that would end the transaction (COMMIT, END, ROLLBACK,
 *   ABORT, PREPARE TRANSACTION, COMMIT AND CHAIN, ...) before it is sent; strings, comments,
 *   dollar-quoted bodies and `BEGIN ATOMIC ... END` are what the grammar says they are.
 * - `TxWatch`: the server's word. It listens to the connection's protocol messages: a
 *   ReadyForQuery whose status is `I` (idle: no transaction) while dbops holds one open means a
 *   statement ended it; the socket is destroyed at once, before anything queued behind that
 *   statement can run in autocommit, and the transaction is marked lost with exactly which
 *   commands were committed. A connection that errors or closes marks it lost with the reason the
 *   server or pooler gave (which guard ended it). A heartbeat keeps an idle lock transaction from
 *   looking idle to guards dbops cannot switch off (PgBouncer's idle_transaction_timeout) and asks
 *   the server, each time, whether the transaction still holds the migration lock.
 */
import type { ClientBase } from 'pg';
import { type DbopsErrorOptions, messageOf, OperationError } from '../errors.js';

/** Kinds of TransactionStmt that begin or end a transaction (savepoints and SET TRANSACTION are fine). */
const CONTROL = new Set([
  'TRANS_STMT_BEGIN',
  'TRANS_STMT_START',
  'TRANS_STMT_COMMIT',
  'TRANS_STMT_ROLLBACK',
  'TRANS_STMT_PREPARE',
  'TRANS_STMT_COMMIT_PREPARED',
  'TRANS_STMT_ROLLBACK_PREPARED',
]);

type Parser = typeof import('libpg-query');
let parser: Promise<Parser> | undefined;

function loadParser(): Promise<Parser> {
  parser ??= import('libpg-query').then(async (m) => {
    await m.loadModule();
    return m;
  });
  return parser;
}

/**
 * BEGIN, START, COMMIT, END, ROLLBACK, ABORT, PREPARE as words: a necessary condition for transaction
 * control, never the verdict (CASE ... END and plpgsql bodies match it; the grammar then decides).
 */
const KEYWORDS = /\b(?:begin|start|commit|end|rollback|abort|prepare)\b/i;

/** Verdicts of recent texts: a migration that loops over one parameterised statement parses it once. */
const verdicts = new Map<string, string | null>();
const CACHE_ENTRIES = 512;
const CACHE_MAX_TEXT = 4096;

/**
 * The first statement in `text` that begins or ends a transaction, as written; null when there is
 * none. Text the grammar cannot parse is left to the server: it refuses it, or its transaction
 * status (TxWatch) has the last word.
 */
export async function transactionControl(text: string): Promise<string | null> {
  // Every statement that begins or ends a transaction starts with one of these keywords, written
  // out in ASCII as a word of its own: a text without any of them needs no parse.
  if (!KEYWORDS.test(text)) return null;
  const cached = verdicts.get(text);
  if (cached !== undefined) return cached;
  const { parseSync } = await loadParser();
  let found: string | null = null;
  try {
    const parsed = parseSync(text) as {
      stmts?: Array<{ stmt?: Record<string, unknown>; stmt_location?: number; stmt_len?: number }>;
    };
    const bytes = Buffer.from(text);
    for (const raw of parsed.stmts ?? []) {
      const t = raw.stmt?.TransactionStmt as { kind?: string } | undefined;
      if (!t?.kind || !CONTROL.has(t.kind)) continue;
      const start = raw.stmt_location ?? 0;
      const end = raw.stmt_len ? start + raw.stmt_len : bytes.length;
      found = bytes.subarray(start, end).toString('utf8').trim() || t.kind;
      break;
    }
  } catch {
    found = null;
  }
  if (text.length <= CACHE_MAX_TEXT) {
    if (verdicts.size >= CACHE_ENTRIES) verdicts.delete(verdicts.keys().next().value as string);
    verdicts.set(text, found);
  }
  return found;
}

/**
 * The transaction of a migration ended behind dbops' back: its lock was lost (the server or a
 * pooler ended the session, someone ran `migrate unlock`), or a statement left the transaction.
 * The message says what ended it and what was committed; the migration is never recorded.
 */
export class TransactionLostError extends OperationError {
  /** A statement ended it (rather than the session being ended): the message lists what was committed. */
  readonly escaped: boolean;

  constructor(message: string, options: DbopsErrorOptions & { escaped: boolean }) {
    super(message, options);
    this.escaped = options.escaped;
  }
}

/** Which guard ended a session, from what the server or PgBouncer said when it did. */
export function whoEnded(error: unknown): string {
  const message = messageOf(error);
  const code = (error as { code?: string } | null)?.code;
  const known: Array<[RegExp, string]> = [
    [/idle-in-transaction timeout/i, "the server's idle_in_transaction_session_timeout"],
    [/idle-session timeout/i, "the server's idle_session_timeout"],
    [/due to transaction timeout/i, "the server's transaction_timeout"],
    [/administrator command/i, 'pg_terminate_backend (dbops migrate unlock, or an administrator)'],
    [/^idle transaction timeout/i, "PgBouncer's idle_transaction_timeout"],
    [/^client_idle_timeout/i, "PgBouncer's client_idle_timeout"],
    [/^query_wait_timeout/i, "PgBouncer's query_wait_timeout (no server connection was free in time)"],
    [/^query timeout/i, "PgBouncer's query_timeout"],
    [/statement timeout/i, "the server's statement_timeout"],
    [/lock timeout/i, "the server's lock_timeout"],
  ];
  for (const [pattern, guard] of known) if (pattern.test(message)) return `${guard}: ${message}`;
  return code ? `${message} (SQLSTATE ${code})` : message;
}

/** The hint for a statement a server-side guard stopped, naming what to change. */
export function guardHint(error: unknown): string | undefined {
  const message = messageOf(error);
  if (/statement timeout/i.test(message)) {
    return "the server's statement_timeout (set for the database, the role or the server) stopped it: raise it for dbops' role (ALTER ROLE ... SET statement_timeout), or make the statement smaller (a backfill batch adapts on its own)";
  }
  if (/lock timeout/i.test(message)) {
    return "the server's lock_timeout stopped it while it waited for a table lock (other sessions held it): run the migration when the table is quieter, or raise lock_timeout for dbops' role";
  }
  if (/due to transaction timeout/i.test(message)) {
    return "the server's transaction_timeout (PostgreSQL 17+) ended the session: dbops switches it off in its own transactions, but a transaction: false migration's own statements run under it; raise it for dbops' role";
  }
  if (/^query timeout/i.test(message)) {
    return "PgBouncer's query_timeout ended the connection: run migrations through a direct connection (DIRECT_DATABASE_URL), or raise query_timeout";
  }
  if (/^query_wait_timeout/i.test(message)) {
    return "PgBouncer's pool had no free server connection in time: raise default_pool_size (or query_wait_timeout), or use DIRECT_DATABASE_URL for migrations";
  }
  return undefined;
}

/** What `check` reports: the transaction still holds the lock (null: cannot tell now). */
export const LOCK_HELD_SQL = `SELECT EXISTS (SELECT 1 FROM pg_locks
  WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
    AND classid = ($1::int4)::oid AND objid = ($2::int4)::oid AND objsubid = 2) AS held`;

export interface WatchOptions {
  /** The lock's key: the heartbeat checks the transaction still holds it (undefined: no lock). */
  lockKey?: readonly [number, number] | undefined;
  heartbeatMs: number;
  /** The transaction ended behind dbops' back: `why` says how; `escaped`: a statement ended it. Called once. */
  onLost(why: string, escaped: boolean): void;
}

type Conn = {
  on(e: string, f: (m: never) => void): unknown;
  prependListener(e: string, f: (m: never) => void): unknown;
  removeListener(e: string, f: (m: never) => void): unknown;
  stream?: { destroy(): void };
};

interface ClientInternals {
  connection?: Conn;
  readyForQuery?: boolean;
  _queryQueue?: unknown[];
  getTransactionStatus?: () => string | null;
}

/** The query method of the client's class: not the instance's (which a statement recorder patches). */
function rawQuery(
  client: ClientBase,
): (text: string, values?: unknown[]) => Promise<{ rows: Array<Record<string, unknown>> }> {
  const proto = Object.getPrototypeOf(client) as {
    query: (...a: unknown[]) => Promise<{ rows: Array<Record<string, unknown>> }>;
  };
  return (text, values) => proto.query.call(client, text, values);
}

/** Nothing running or queued on the client: a heartbeat would not delay the migration's statements. */
export function isIdle(client: ClientBase): boolean {
  const c = client as unknown as ClientInternals;
  return c.readyForQuery !== false && (c._queryQueue?.length ?? 0) === 0;
}

/**
 * Watches one open transaction on `client` until `stop()`: the connection's protocol (escape,
 * closing) and, when `lockKey` is given, a heartbeat asking the server whether the lock is held.
 */
export class TxWatch {
  private readonly tags: string[] = [];
  private readonly timer: NodeJS.Timeout | undefined;
  private beating = false;
  private stopped = false;
  private readonly conn: Conn | undefined;

  constructor(
    private readonly client: ClientBase,
    private readonly opts: WatchOptions,
  ) {
    this.conn = (client as unknown as ClientInternals).connection;
    this.conn?.prependListener('readyForQuery', this.onReady);
    this.conn?.on('commandComplete', this.onComplete);
    client.on('error', this.onError);
    client.on('end', this.onEnd);
    if (opts.heartbeatMs > 0) {
      this.timer = setInterval(() => void this.beat(), opts.heartbeatMs);
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    this.conn?.removeListener('readyForQuery', this.onReady);
    this.conn?.removeListener('commandComplete', this.onComplete);
    this.client.removeListener('error', this.onError);
    this.client.removeListener('end', this.onEnd);
  }

  /**
   * The server's word before dbops writes the ledger row and commits: the connection is inside a
   * transaction (ReadyForQuery said so) and, with a lock, that transaction still holds it.
   */
  async verify(): Promise<void> {
    const status = (this.client as unknown as ClientInternals).getTransactionStatus?.();
    if (status === 'I') {
      this.lost(
        "the server reports no open transaction on the migration's connection: what it did was committed or rolled back outside dbops' control",
        true,
      );
      return;
    }
    if (!this.opts.lockKey || status === 'E') return;
    const { rows } = await rawQuery(this.client)(LOCK_HELD_SQL, [...this.opts.lockKey]);
    if (rows[0]?.held !== true)
      this.lost('its transaction no longer holds the migration lock (a statement ended it and another began)', true);
  }

  private readonly onComplete = (msg: never): void => {
    if (!this.beating) this.tags.push(String((msg as { text?: string }).text ?? ''));
  };

  private readonly onReady = (msg: never): void => {
    if (this.stopped || (msg as { status?: string }).status !== 'I') return;
    // The transaction is over. Close the socket before the client sends what is queued behind
    // the statement that ended it: those statements would each commit on their own.
    this.conn?.stream?.destroy();
    this.lost(this.escapeReport(), true);
  };

  private readonly onError = (error: Error): void => {
    this.lost(`the session was ended by ${whoEnded(error)}`);
  };

  private readonly onEnd = (): void => {
    this.lost('its connection closed');
  };

  /** Which of the migration's commands were committed, from the server's own command tags. */
  private escapeReport(): string {
    const tags = this.tags.filter((t) => t !== '');
    const endAt = findLastIndex(tags, (t) => /^(COMMIT|ROLLBACK|PREPARE TRANSACTION)$/.test(t));
    const ender = endAt >= 0 ? (tags[endAt] as string) : 'a statement';
    const before = endAt >= 0 ? tags.slice(0, endAt) : tags;
    const after = endAt >= 0 ? tags.slice(endAt + 1) : [];
    const list = (t: string[]) => (t.length === 0 ? 'nothing' : t.join(', '));
    let what: string;
    if (ender === 'COMMIT') what = `COMMIT left the migration's transaction: committed were ${list(before)}`;
    else if (ender === 'ROLLBACK')
      what = `ROLLBACK left the migration's transaction: rolled back were ${list(before)} (nothing of it was committed)`;
    else if (ender === 'PREPARE TRANSACTION')
      what = `PREPARE TRANSACTION left the migration's transaction: prepared (not committed) were ${list(before)}; see pg_prepared_xacts`;
    else what = `the migration's connection left its transaction: committed were ${list(before)}`;
    if (after.length > 0) what += `; then, outside any transaction, each committed on its own: ${list(after)}`;
    return `${what}; dbops closed the connection at once, so nothing after it ran`;
  }

  private async beat(): Promise<void> {
    if (this.stopped || this.beating || !isIdle(this.client)) return;
    this.beating = true;
    try {
      if (this.opts.lockKey) {
        const { rows } = await rawQuery(this.client)(LOCK_HELD_SQL, [...this.opts.lockKey]);
        if (rows[0]?.held === false && !this.stopped) this.lost('its transaction no longer holds the migration lock');
      } else {
        await rawQuery(this.client)('SELECT 1');
      }
    } catch (error) {
      const code = (error as { code?: string }).code;
      // A failed transaction (the migration caught an error) answers nothing but 25P02; a
      // cancelled heartbeat says nothing about the lock. A closed connection is reported by onError/onEnd.
      if (code && code !== '25P02' && code !== '57014' && !this.stopped)
        this.lost(`its heartbeat failed: ${whoEnded(error)}`);
    } finally {
      this.beating = false;
    }
  }

  private lost(why: string, escaped = false): void {
    if (this.stopped) return;
    this.stop();
    this.opts.onLost(why, escaped);
  }
}

function findLastIndex<T>(list: T[], pred: (t: T) => boolean): number {
  for (let i = list.length - 1; i >= 0; i--) if (pred(list[i] as T)) return i;
  return -1;
}
