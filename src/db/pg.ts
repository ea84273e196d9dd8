/**
 * Plain `pg` connections with bounded connect time and errors translated into dbops errors.
 * `pg` is imported lazily: `dbops --help` must not load it.
 */
import type { Client, ClientConfig } from 'pg';
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

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE']);

/** Host:port/db of a connection string, for messages (never the password). */
export function describeEndpoint(connectionString: string): string {
  try {
    const u = new URL(connectionString);
    const host = u.hostname || u.searchParams.get('host') || 'localhost';
    return `${host}:${u.port || '5432'}${u.pathname && u.pathname !== '/' ? u.pathname : ''}`;
  } catch {
    return 'the configured server';
  }
}

/** Translate a connection-time error from pg into a dbops error with a hint. */
export function connectError(error: unknown, label: string, connectionString: string, timeoutMs: number): DbopsError {
  const endpoint = describeEndpoint(connectionString);
  const code = (error as { code?: string } | null)?.code;
  const msg = messageOf(error);
  if (code && NETWORK_CODES.has(code)) {
    return new UnreachableError(`${label} at ${endpoint} is unreachable: ${msg}`, {
      hint: 'is the server running and is the host/port right? check DATABASE_URL',
      cause: error,
      details: { endpoint, code },
    });
  }
  if (/timeout/i.test(msg) || /terminated unexpectedly/i.test(msg)) {
    return new UnreachableError(`${label} at ${endpoint} did not answer within ${timeoutMs} ms`, {
      hint: 'raise --timeout if the network is slow, or check firewalls and the host',
      cause: error,
      details: { endpoint, code: code ?? 'TIMEOUT' },
    });
  }
  if (code === '28P01' || code === '28000') {
    return new UnreachableError(`${label} at ${endpoint} refused the login: ${msg}`, {
      hint: 'check the user and password in the connection settings',
      cause: error,
      details: { endpoint, code },
    });
  }
  if (code === '3D000') {
    return new UnreachableError(`${label} at ${endpoint}: ${msg}`, {
      hint: 'create the database or fix its name in the URL',
      cause: error,
      details: { endpoint, code },
    });
  }
  if (/SSL|TLS|certificate/i.test(msg)) {
    return new UnreachableError(`${label} at ${endpoint}: TLS failed: ${msg}`, {
      hint: 'check sslmode in the URL (DATABASE_SSL / NODE_ENV=production turn TLS on)',
      cause: error,
      details: { endpoint, code },
    });
  }
  return new UnreachableError(`${label} at ${endpoint}: ${msg}`, { cause: error, details: { endpoint, code } });
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
    Object.defineProperty(globalThis, 'navigator', { value: { userAgent: `Node.js/${process.versions.node}` }, configurable: true, writable: true });
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
    return new UnreachableError(`lost the connection while ${doing}: ${messageOf(error)}`, { cause: error });
  }
  return new OperationError(`${doing} failed: ${messageOf(error)}`, { cause: error, details: code ? { sqlstate: code } : undefined });
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
