/**
 * ClickHouse over its HTTP interface with the official client (@clickhouse/client), loaded lazily:
 * `dbops --help` must not pay for it. Every request is bounded: the first one (which also
 * authenticates) by the connect timeout, every later one by the query timeout, client-side and,
 * unless the user is readonly=1 (who may not change settings), server-side (max_execution_time).
 * Errors become dbops errors with a hint; the password never reaches a message.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { ClickHouseClient } from '@clickhouse/client';
import { type DbopsError, messageOf, OperationError, UnreachableError, UsageError } from '../errors.js';

export interface ClickHouseConnectOptions {
  /** http(s)://user:password@host:port/database */
  url: string;
  /** PEM file of a CA to trust for https://. */
  caCert?: string | undefined;
  /** Bound on the first request: reach the server and authenticate (ms). */
  connectTimeoutMs: number;
  /** Bound on every later query (ms). */
  queryTimeoutMs: number;
  /** Sent in the User-Agent, visible in system.query_log.http_user_agent. */
  application?: string;
}

export interface ClickHouseQueryOptions {
  /** Overrides the connection's query timeout for this query (ms). */
  timeoutMs?: number;
  /** A query_id of our choosing (e.g. to leave our own query out of system.processes). */
  queryId?: string;
  /** What we were doing, for the error message ("reading system.query_log"). */
  doing?: string;
}

export interface ClickHouseConnection {
  /** host:port/database, never the password. */
  endpoint: string;
  tls: boolean;
  user: string;
  database: string;
  /** version() as the server reports it, e.g. 18.16.1 or 24.8.4.13. */
  version: string;
  /** Server clock (Unix seconds) when connected. */
  serverNow: number;
  /** readonly setting of this user's profile: 1 forbids changing any setting (even max_execution_time). */
  readonly: number;
  /** log_queries of this user's profile; null when system.settings is unreadable. */
  logQueries: boolean | null;
  /** name → type of system.query_log's columns when connected (empty: no such table); undefined when unreadable. */
  queryLogColumns: ReadonlyMap<string, string> | undefined;
  /** Time to reach the server and authenticate (ms). */
  connectMs: number;
  /** Rows of a SELECT as objects (read as JSONCompact: half the bytes of JSONEachRow, one parse). */
  query<T>(sql: string, opts?: ClickHouseQueryOptions): Promise<T[]>;
  /** A statement without a result (SYSTEM FLUSH LOGS). */
  command(sql: string, opts?: ClickHouseQueryOptions): Promise<void>;
  close(): Promise<void>;
}

interface ParsedUrl {
  origin: string;
  username: string;
  password: string;
  database: string | undefined;
  host: string;
  port: string;
  tls: boolean;
}

export function parseClickHouseUrl(url: string): ParsedUrl {
  const u = new URL(url);
  const tls = u.protocol === 'https:';
  const database = decodeURIComponent(u.pathname.replace(/^\/+|\/+$/g, '')) || undefined;
  return {
    origin: `${u.protocol}//${u.host}`,
    username: decodeURIComponent(u.username) || 'default',
    password: decodeURIComponent(u.password),
    database,
    host: u.hostname,
    port: u.port || (tls ? '8443' : '8123'),
    tls,
  };
}

/** host:port/database of a ClickHouse URL, for messages (never the password). */
export function describeClickHouse(url: string): string {
  try {
    const p = parseClickHouseUrl(url);
    return `${p.host}:${p.port}${p.database ? `/${p.database}` : ''}`;
  } catch {
    return 'the configured ClickHouse';
  }
}

/** Quote a string literal for ClickHouse SQL (old servers have no query parameters). */
export function quoteString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
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
  'ERR_SOCKET_CONNECTION_TIMEOUT',
]);
/** ClickHouse error codes: REQUIRED_PASSWORD 194, WRONG_PASSWORD 193, UNKNOWN_USER 192, AUTHENTICATION_FAILED 516, IP_ADDRESS_NOT_ALLOWED 195. */
const AUTH_CODES = new Set(['192', '193', '194', '195', '516']);
const UNKNOWN_DATABASE = '81';

/** ClickHouse's error code: from the client's parsed error, else the "Code: N" of an old server's text, else a Node code. */
function errorCode(error: unknown): string | undefined {
  const e = error as { code?: unknown; cause?: { code?: unknown } } | null;
  const fromText = /^\s*Code: (\d+)/.exec(messageOf(error))?.[1];
  const code = e?.code ?? fromText ?? e?.cause?.code;
  return code === undefined || code === null ? undefined : String(code);
}

/**
 * One line from a ClickHouse error: "Wrong password for user app (code 193)". Servers before 20.x
 * say "Code: 193, e.displayText() = DB::Exception: ..., e.what() = DB::Exception"; newer ones
 * "Code: 60. DB::Exception: .... (UNKNOWN_TABLE) (version ...)", which the client parses.
 */
export function shortMessage(error: unknown): string {
  const e = error as { code?: unknown; type?: unknown } | null;
  const raw = messageOf(error).trim();
  if (typeof e?.type === 'string' && e.code !== undefined)
    return `${raw.replace(/[.\s]+$/, '')} (${e.type}, code ${String(e.code)})`;
  return serverErrorText(raw);
}

/**
 * A server error text (from a response or from system.query_log.exception) as one line ending in
 * its code: "Table default.t doesn't exist. (code 60)". Reads both the 18.x-19.x form
 * ("Code: 60, e.displayText() = DB::Exception: ..., e.what() = DB::Exception", also with a
 * "Poco::Exception. " prefix) and the newer one ("Code: 60. DB::Exception: ... (UNKNOWN_TABLE) (version ...)").
 */
export function serverErrorText(raw: string): string {
  const text = raw.trim();
  const code = /Code: (\d+)/.exec(text)?.[1];
  const old = /e\.displayText\(\) = (?:DB::Exception: )?([\s\S]*?)(?:, e\.what\(\) = [^\n]*)?\s*$/.exec(text);
  if (old && code) return `${old[1]} (code ${code})`;
  const recent =
    /^Code: \d+\. (?:DB::Exception: )?([\s\S]*?)(?: \(([A-Z][A-Z0-9_]+)\))?(?: \(version .*\))?\.?\s*$/.exec(text);
  if (recent && code) return `${recent[1]} (${recent[2] ? `${recent[2]}, ` : ''}code ${code})`;
  return text.split('\n')[0] ?? text;
}

/** Translate a failure of the first request into a dbops error with a hint. */
export function connectError(error: unknown, endpoint: string, timeoutMs: number, timedOut: boolean): DbopsError {
  const code = errorCode(error);
  const msg = shortMessage(error);
  const label = `ClickHouse at ${endpoint}`;
  if (timedOut || /timeout|aborted/i.test(msg)) {
    return new UnreachableError(`${label} did not answer within ${timeoutMs} ms`, {
      hint: 'is it the HTTP port (8123, or 8443 for https)? raise --timeout if the network is slow, or check firewalls',
      cause: error,
      details: { endpoint, code: 'TIMEOUT' },
    });
  }
  if (code && NETWORK_CODES.has(code)) {
    return new UnreachableError(`${label} is unreachable: ${msg}`, {
      hint: 'is the server running, and is CLICKHOUSE_URL the HTTP interface (port 8123, or 8443 for https)?',
      cause: error,
      details: { endpoint, code },
    });
  }
  if (code && AUTH_CODES.has(code)) {
    return new UnreachableError(`${label} refused the login: ${msg}`, {
      hint: 'check the user and password in CLICKHOUSE_URL (percent-encode special characters)',
      cause: error,
      details: { endpoint, code },
    });
  }
  if (code === UNKNOWN_DATABASE) {
    return new UnreachableError(`${label}: ${msg}`, {
      hint: 'fix the database in CLICKHOUSE_URL (the path), or create it',
      cause: error,
      details: { endpoint, code },
    });
  }
  if (/SSL|TLS|certificate|EPROTO/i.test(`${msg} ${code ?? ''}`)) {
    return new UnreachableError(`${label}: TLS failed: ${msg}`, {
      hint: 'https:// needs the server to serve TLS (https_port, usually 8443); set CLICKHOUSE_CA_CERT for a private CA',
      cause: error,
      details: { endpoint, code },
    });
  }
  if (/clickhouse-client/.test(msg)) {
    return new UnreachableError(`${label}: ${msg}`, {
      hint: 'that is the native TCP port: dbops speaks the HTTP interface (8123, or 8443 for https)',
      cause: error,
      details: { endpoint, code },
    });
  }
  return new UnreachableError(`${label}: ${msg}`, { cause: error, details: { endpoint, code } });
}

/** Translate a failure of a later query. */
export function clickhouseQueryError(error: unknown, doing: string, timeoutMs: number, timedOut: boolean): DbopsError {
  const code = errorCode(error);
  if (timedOut) {
    return new OperationError(`${doing} took longer than ${timeoutMs} ms`, {
      hint: 'raise the bound with CLICKHOUSE_QUERY_TIMEOUT_MS (or --statement-timeout for slow-queries), or narrow the window',
      cause: error,
    });
  }
  if (code && NETWORK_CODES.has(code))
    return new UnreachableError(`lost the connection to ClickHouse while ${doing}: ${shortMessage(error)}`, {
      cause: error,
    });
  return new OperationError(`${doing} failed: ${shortMessage(error)}`, {
    cause: error,
    details: code ? { clickhouseCode: Number(code) || code } : undefined,
  });
}

interface Compact {
  meta: Array<{ name: string }>;
  data: unknown[][];
}

function objects<T>(doc: Compact): T[] {
  const names = doc.meta.map((m) => m.name);
  return doc.data.map((row) => {
    const o: Record<string, unknown> = {};
    for (let i = 0; i < names.length; i++) o[names[i] as string] = row[i];
    return o as T;
  });
}

let clientModule: Promise<typeof import('@clickhouse/client')> | undefined;
const loadClient = () => {
  clientModule ??= import('@clickhouse/client');
  return clientModule;
};

/** Run one request bounded by `ms`: the client's own request_timeout is the backstop, this aborts first. */
async function bounded<T>(
  ms: number,
  run: (signal: AbortSignal) => Promise<T>,
): Promise<{ value: T } | { error: unknown; timedOut: boolean }> {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, ms);
  try {
    return { value: await run(controller.signal) };
  } catch (error) {
    return { error, timedOut };
  } finally {
    clearTimeout(timer);
  }
}

export async function connectClickHouse(opts: ClickHouseConnectOptions): Promise<ClickHouseConnection> {
  const p = parseClickHouseUrl(opts.url);
  const endpoint = describeClickHouse(opts.url);
  let ca: Buffer | undefined;
  if (opts.caCert) {
    try {
      ca = await readFile(opts.caCert);
    } catch (error) {
      throw new UsageError(`CLICKHOUSE_CA_CERT ${opts.caCert} cannot be read: ${messageOf(error)}`);
    }
  }
  const { createClient, ClickHouseLogLevel } = await loadClient();
  const client: ClickHouseClient = createClient({
    url: p.origin,
    username: p.username,
    password: p.password,
    ...(p.database ? { database: p.database } : {}),
    application: opts.application ?? 'dbops',
    // The backstop; each request is aborted by its own bound first.
    request_timeout: Math.max(opts.connectTimeoutMs, opts.queryTimeoutMs) + 5000,
    max_open_connections: 4,
    // The client logs failed requests to the console by default; dbops reports them itself.
    log: { level: ClickHouseLogLevel.OFF },
    ...(ca ? { tls: { ca_cert: ca } } : {}),
  });
  const t0 = process.hrtime.bigint();
  // The login check and the settings read go out together (one round trip of waiting, not two).
  const [first, settingsRead] = await Promise.all([
    bounded(opts.connectTimeoutMs, async (signal) => {
      const rs = await client.query({
        query: 'SELECT version() AS version, toUInt32(toUnixTimestamp(now())) AS now, currentDatabase() AS db',
        format: 'JSONEachRow',
        abort_signal: signal,
      });
      return (await rs.json<{ version: string; now: number | string; db: string }>())[0];
    }),
    bounded(opts.connectTimeoutMs, async (signal) => {
      // With the columns of system.query_log: slow-queries needs them next, and this saves a round trip.
      const rs = await client.query({
        query: `SELECT 'setting' AS kind, name, value FROM system.settings WHERE name IN ('readonly', 'log_queries')
                UNION ALL SELECT 'query_log' AS kind, name, type AS value FROM system.columns WHERE database = 'system' AND table = 'query_log'`,
        format: 'JSONEachRow',
        abort_signal: signal,
      });
      return rs.json<{ kind: string; name: string; value: string }>();
    }),
  ]);
  if (!('value' in first)) {
    await client.close().catch(() => {});
    throw connectError(first.error, endpoint, opts.connectTimeoutMs, first.timedOut);
  }
  const connectMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const info = first.value;
  const probe = 'value' in settingsRead ? settingsRead.value : undefined;
  const settings = probe ? new Map(probe.filter((r) => r.kind === 'setting').map((r) => [r.name, r.value])) : undefined;
  const queryLogColumns = probe
    ? new Map(probe.filter((r) => r.kind === 'query_log').map((r) => [r.name, r.value]))
    : undefined;
  // readonly=1 may not change any setting; unknown (system.settings unreadable) counts as 1.
  const readonly = settings ? Number(settings.get('readonly') ?? 0) || 0 : 1;
  const logQueries = settings?.has('log_queries') ? settings.get('log_queries') === '1' : null;
  const run = async <T>(kind: 'query' | 'command', sql: string, o: ClickHouseQueryOptions = {}): Promise<T[]> => {
    const ms = o.timeoutMs ?? opts.queryTimeoutMs;
    // The server stops the work too (a closed HTTP request does not cancel a query by default).
    const settings = readonly === 1 ? {} : { max_execution_time: Math.max(1, Math.ceil(ms / 1000)) };
    const result = await bounded(ms, async (signal) => {
      const common = {
        query: sql,
        abort_signal: signal,
        clickhouse_settings: settings,
        ...(o.queryId ? { query_id: o.queryId } : {}),
      };
      if (kind === 'command') {
        await client.command(common);
        return [] as T[];
      }
      const rs = await client.query({ ...common, format: 'JSONCompact' });
      const doc = await rs.json<unknown[]>();
      return objects<T>({ meta: doc.meta ?? [], data: doc.data });
    });
    if ('value' in result) return result.value;
    throw clickhouseQueryError(result.error, o.doing ?? 'a ClickHouse query', ms, result.timedOut);
  };
  return {
    endpoint,
    tls: p.tls,
    user: p.username,
    database: info?.db ?? p.database ?? 'default',
    version: info?.version ?? 'unknown',
    serverNow: Number(info?.now ?? Math.floor(Date.now() / 1000)),
    readonly,
    logQueries,
    queryLogColumns,
    connectMs,
    query: (sql, o) => run('query', sql, o),
    command: async (sql, o) => {
      await run('command', sql, o);
    },
    close: () => client.close(),
  };
}

/** A query_id of our own, safe to inline in SQL (hex and dashes only). */
export function newQueryId(purpose: string): string {
  return `dbops-${purpose}-${randomUUID()}`;
}
