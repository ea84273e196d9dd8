/**
 * Plain `pg` connections with bounded connect time and errors translated into dbops errors.
 * `pg` is imported lazily: `dbops --help` must not load it.
 */
import type { Client, ClientConfig } from 'pg';
import { describePostgres } from '../config/urls.js';
import { type DbopsError, messageOf, OperationError, UnreachableError } from '../errors.js';

export interface ConnectOptions {
  connectionString: string;
  /** Bound on TCP connect + authentication (ms). */
  timeoutMs: number;
  applicationName?: string;
  /** Client-side bound on each query (ms): a server that accepts the connection but never answers. */
  queryTimeoutMs?: number;
  /** Server-side statement_timeout for this session (ms); not sent through PgBouncer startup. */
  statementTimeoutMs?: number;
  /** Label used in error messages, e.g. "PostgreSQL" or "PgBouncer". */
  label?: string;
  /** PgBouncer's admin console: simple protocol only, no startup options. */
  adminConsole?: boolean;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNRESET',
  'EPIPE',
]);

/** Host:port/db of a connection string, for messages (never the user or password); a socket folder as the host. */
export function describeEndpoint(connectionString: string): string {
  return describePostgres(connectionString) ?? 'the configured server';
}

/** How to look at a server that has no slot left for this role. */
export const SERVER_FULL_HINT =
  "every connection slot this role may use is taken: to look anyway, connect as a superuser (superuser_reserved_connections), as a member of pg_use_reserved_connections (PostgreSQL 16+, reserved_connections), read PgBouncer's console (PGBOUNCER_ADMIN_URL: SHOW POOLS/CLIENTS), or look at a replica";

/** The server refused the connection because it is full (SQLSTATE 53300, too_many_connections). */
export function isServerFull(error: unknown): boolean {
  const e = error as { code?: unknown; details?: { code?: unknown } } | null;
  return e?.code === '53300' || e?.details?.code === '53300';
}

/** What to do about a server error, by SQLSTATE (class or code); undefined when nothing specific helps. */
export function hintForSqlState(code: string | undefined): string | undefined {
  if (!code) return undefined;
  const byCode: Record<string, string> = {
    '28P01':
      'check the user and password in the connection settings (percent-encode special characters in a URL password)',
    '28000':
      'the server refused this user from this address (pg_hba.conf), or the user does not exist: check the user in the connection settings',
    '3D000': 'create the database or fix its name in the URL',
    '42501': 'the user lacks a privilege: grant it (the message names the object), or connect as the owner',
    '57014':
      'a statement was cancelled by a timeout: raise the timeout option of this command, or check what blocks it (dbops locks)',
    '25P03':
      "the server ended an idle transaction (idle_in_transaction_session_timeout): raise it for dbops' role, e.g. ALTER ROLE ... SET idle_in_transaction_session_timeout = 0",
    '57P01':
      'the server was shut down or the session was terminated by an administrator: run the command again once it is back',
    '57P03': 'the server is starting up or shutting down: wait and run the command again',
    '53300': SERVER_FULL_HINT,
    '55P03': 'a lock could not be taken: see dbops locks for who holds it',
    '40001': 'a serialization failure: run the command again',
    '40P01': 'a deadlock with another session: run the command again; dbops locks shows the blocking tree',
    '42P01': 'a table is missing: are the schema migrations applied to this database? (dbops migrate status)',
    '42883': 'a function or extension is missing on this server: check the server version and installed extensions',
    '08P01':
      "the server spoke an unexpected protocol: is this port PostgreSQL (not PgBouncer's admin console or another service)?",
  };
  if (byCode[code]) return byCode[code];
  if (code.startsWith('08')) return 'the connection failed: check the server is running and reachable';
  if (code.startsWith('53')) return 'the server is out of a resource (disk, memory, connections): check its logs';
  if (code.startsWith('22') || code.startsWith('23'))
    return 'the data did not fit the statement (the message names the value or constraint)';
  if (code.startsWith('42'))
    return 'the statement does not fit this database (the message names what is missing or wrong)';
  return undefined;
}

/** Translate a connection-time error from pg into a dbops error with a hint. */
export function connectError(error: unknown, label: string, connectionString: string, timeoutMs: number): DbopsError {
  const endpoint = describeEndpoint(connectionString);
  const code = (error as { code?: string } | null)?.code;
  const msg = messageOf(error);
  if (code && NETWORK_CODES.has(code)) {
    const dns = code === 'ENOTFOUND' || code === 'EAI_AGAIN';
    return new UnreachableError(`${label} at ${endpoint} is unreachable: ${msg}`, {
      hint: dns
        ? 'the host name does not resolve: check the host in the URL (a password with an unencoded "@", "/" or "?" cuts the URL short: percent-encode it)'
        : 'is the server running, and are the host and port in its URL right? (dbops config shows which URL is used)',
      cause: error,
      details: { endpoint, code },
    });
  }
  if (/timeout/i.test(msg) || /terminated unexpectedly/i.test(msg)) {
    return new UnreachableError(`${label} at ${endpoint} did not answer within ${timeoutMs} ms`, {
      hint: 'raise --timeout if the network is slow, or check firewalls, the host and that the port is PostgreSQL',
      cause: error,
      details: { endpoint, code: code ?? 'TIMEOUT' },
    });
  }
  if (/^SASL|client password must be a string|password must be a string/i.test(msg)) {
    // pg's own wording for "the server asked for a password and none was given".
    return new UnreachableError(`${label} at ${endpoint} asks for a password and none was given`, {
      hint: 'put the password in the URL (postgresql://USER:PASSWORD@HOST/DB, percent-encoded) or in DATABASE_PASSWORD',
      cause: error,
      details: { endpoint, code: code ?? 'NO_PASSWORD' },
    });
  }
  const sqlHint = hintForSqlState(code);
  if (code === '53300') {
    return new UnreachableError(`${label} at ${endpoint} is full: ${msg}`, {
      hint: sqlHint,
      cause: error,
      details: { endpoint, code },
    });
  }
  if (code === '28P01' || code === '28000') {
    return new UnreachableError(`${label} at ${endpoint} refused the login: ${msg}`, {
      hint: sqlHint,
      cause: error,
      details: { endpoint, code },
    });
  }
  if (/SSL|TLS|certificate/i.test(msg)) {
    return new UnreachableError(`${label} at ${endpoint}: TLS failed: ${msg}`, {
      hint: 'check sslmode in the URL (DATABASE_SSL / NODE_ENV=production turn TLS on; sslmode=disable turns it off)',
      cause: error,
      details: { endpoint, code },
    });
  }
  return new UnreachableError(`${label} at ${endpoint}: ${msg}`, {
    hint: sqlHint ?? `is ${endpoint} a PostgreSQL server? dbops doctor checks each configured server`,
    cause: error,
    details: { endpoint, code },
  });
}

/**
 * Load `pg` without its Cloudflare probe. On Node 20 (no global `navigator`), pg/lib/stream.js
 * decides whether it runs in a Cloudflare Worker by constructing a `Response`, which loads Node's
 * whole fetch implementation: about 35 ms of every command. A `navigator` that says Node.js, present
 * only while pg's modules initialise, skips that probe; Node 21+ has its own and this does nothing.
 */
let pgModule: Promise<typeof import('pg').default> | undefined;

export function loadPg(): Promise<typeof import('pg').default> {
  pgModule ??= (async () => {
    const g = globalThis as { navigator?: unknown };
    if (g.navigator !== undefined) return (await import('pg')).default;
    Object.defineProperty(globalThis, 'navigator', {
      value: { userAgent: `Node.js/${process.versions.node}` },
      configurable: true,
      writable: true,
    });
    try {
      return (await import('pg')).default;
    } finally {
      delete g.navigator;
    }
  })();
  return pgModule;
}

/** Open one `pg.Client`; its errors after connect are captured so they can never crash dbops. */
export async function connectPg(opts: ConnectOptions): Promise<Client> {
  const pg = await loadPg();
  const label = opts.label ?? 'PostgreSQL';
  const config: ClientConfig = {
    connectionString: opts.connectionString,
    connectionTimeoutMillis: opts.timeoutMs,
    ...(opts.queryTimeoutMs === undefined ? {} : { query_timeout: opts.queryTimeoutMs }),
  };
  if (!opts.adminConsole) {
    config.application_name = opts.applicationName ?? 'dbops';
  }
  const client = new pg.Client(config);
  // An idle client whose server goes away emits 'error'; without a listener Node would crash.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => {});
    throw connectError(error, label, opts.connectionString, opts.timeoutMs);
  }
  if (opts.statementTimeoutMs !== undefined && !opts.adminConsole) {
    await client.query(`SET statement_timeout = ${Math.max(0, Math.floor(opts.statementTimeoutMs))}`);
  }
  return client;
}

/** Wrap an error thrown by a query into an OperationError naming what we were doing. */
export function queryError(error: unknown, doing: string): DbopsError {
  const code = (error as { code?: string } | null)?.code;
  if (code && NETWORK_CODES.has(code)) {
    return new UnreachableError(`lost the connection while ${doing}: ${messageOf(error)}`, {
      hint: 'the server went away or the network dropped: run the command again once it is reachable',
      cause: error,
    });
  }
  return new OperationError(`${doing} failed: ${messageOf(error)}`, {
    hint: hintForSqlState(code) ?? 'run again with --verbose for the full cause',
    cause: error,
    details: code ? { sqlstate: code } : undefined,
  });
}

/** Quote an SQL identifier (table, column, schema). The one place identifiers are quoted. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Quote a possibly schema-qualified name: `public.User` → `"public"."User"`. */
export function quoteQualified(name: string): string {
  return name
    .split('.')
    .map((part) => quoteIdent(part.replace(/^"|"$/g, '')))
    .join('.');
}
