/**
 * Validation of connection strings, up front, before anything connects. Every message names the
 * setting and its source but never repeats the value: a value that is malformed is exactly the one
 * whose password no parser can point at. PostgreSQL URLs are read by pg-connection-string, the
 * parser `pg` itself uses (so a Unix socket with credentials, `postgresql://u:pw@/db?host=/sock`,
 * means what it means to psql and to pg); Redis URLs by the WHATWG URL parser, as ioredis does.
 */
import { parse as parsePgConnectionString } from 'pg-connection-string';
import { ConfigError } from '../errors.js';

export interface SourcedValue {
  value: string;
  /** e.g. `environment variable DATABASE_URL`. */
  source: string;
}

/** Schemes worth naming in a message when a value starts with one of them (nothing else is echoed). */
const KNOWN_SCHEMES = new Set([
  'postgresql',
  'postgres',
  'redis',
  'rediss',
  'mysql',
  'mariadb',
  'mongodb',
  'mongodb+srv',
  'sqlserver',
  'sqlite',
  'file',
  'http',
  'https',
  'clickhouse',
  'unix',
  'socket',
  'tcp',
  'jdbc',
  'prisma',
  'prisma+postgres',
]);

const ENCODING_HINT =
  'percent-encode special characters (@ as %40, / as %2F, # as %23, ? as %3F, : as %3A, space as %20) in the user and password';
const NOT_SHOWN = 'the value is not shown because it may hold a password';

function fail(name: string, s: SourcedValue, problem: string, hint: string): never {
  throw new ConfigError(`${name} (from ${s.source}) ${problem}`, { hint });
}

/** The raw `user:password` part: between `://` and the last `@` before the path (no parser). */
function rawUserinfo(value: string): string | undefined {
  const start = value.indexOf('://');
  const at = value.lastIndexOf('@');
  return start !== -1 && at > start ? value.slice(start + 3, at) : undefined;
}

/** Which characters of a raw user:password need encoding, for the hint. */
function unencodedIn(userinfo: string | undefined): string[] {
  if (!userinfo) return [];
  const names: Record<string, string> = {
    '/': '/ (%2F)',
    '?': '? (%3F)',
    '#': '# (%23)',
    ' ': 'a space (%20)',
    '@': '@ (%40)',
  };
  return Object.keys(names)
    .filter((ch) => userinfo.includes(ch))
    .map((ch) => names[ch] as string);
}

function encodingHint(form: string, value: string): string {
  const chars = unencodedIn(rawUserinfo(value));
  const which = chars.length > 0 ? `the user or password contains ${chars.join(', ')} unencoded; ` : '';
  return `${which}the form is ${form}; ${ENCODING_HINT} (${NOT_SHOWN})`;
}

/** Checks shared by every connection string: white space, scheme, fragment. */
function checkShape(name: string, s: SourcedValue, schemes: string[], form: string): void {
  const value = s.value;
  if (value.trim() !== value) {
    fail(
      name,
      s,
      'starts or ends with white space',
      `remove it (in .env, write NAME="value" without spaces around the value); ${NOT_SHOWN}`,
    );
  }
  const lower = value.toLowerCase();
  const wanted = schemes.map((x) => `${x}://`);
  if (!wanted.some((w) => lower.startsWith(w))) {
    const sep = value.indexOf(':');
    const scheme = sep > 0 ? lower.slice(0, sep) : '';
    const typo = [...schemes]
      .sort((a, b) => b.length - a.length)
      .find((x) => lower.startsWith(x) && !lower.startsWith(`${x}://`));
    const what = typo
      ? `: "${typo}" must be followed by "://"`
      : KNOWN_SCHEMES.has(scheme) && !schemes.includes(scheme)
        ? `, not ${scheme}:`
        : '';
    fail(name, s, `must start with ${wanted.join(' or ')}${what}`, `the form is ${form} (${NOT_SHOWN})`);
  }
  if (value.includes('#')) {
    fail(
      name,
      s,
      'contains a "#"',
      `a "#" in a password must be written %23 (in .env, an unquoted # also starts a comment: quote the value); ${ENCODING_HINT} (${NOT_SHOWN})`,
    );
  }
}

/** WHATWG parse; a socket URL with credentials and no host (`u:pw@/db`) is read with a stand-in host. */
function parseUrl(value: string): { url: URL; socket: boolean } | undefined {
  try {
    return { url: new URL(value), socket: false };
  } catch {
    const at = value.lastIndexOf('@/');
    if (at === -1) return undefined;
    try {
      return { url: new URL(`${value.slice(0, at)}@localhost${value.slice(at + 1)}`), socket: true };
    } catch {
      return undefined;
    }
  }
}

/** An `@` after the host means the password had an unencoded `/`, `?` or `#` that ended it early. */
function checkStrayAt(name: string, s: SourcedValue, url: URL, form: string): void {
  const hasUserinfo = url.username !== '' || url.password !== '';
  if (url.pathname.includes('@') || (!hasUserinfo && url.search.includes('@'))) {
    fail(
      name,
      s,
      'has an "@" after the host, so its password was cut short by an unencoded "/" or "?"',
      encodingHint(form, s.value),
    );
  }
  if (hostInsidePassword(s.value)) {
    fail(
      name,
      s,
      'has an unencoded "@" in the password, so the URL parser reads a piece of it as the host',
      encodingHint(form, s.value),
    );
  }
}

/** `host:port/db` of a PostgreSQL URL for messages (a socket folder as the host); undefined if it does not parse. */
export function describePostgres(value: string): string | undefined {
  const parsed = parseUrl(value);
  if (!parsed) return undefined;
  const { url, socket } = parsed;
  const host = url.searchParams.get('host') || (socket ? '' : url.hostname) || 'localhost';
  const port = url.searchParams.get('port') || url.port || '5432';
  let db = url.pathname.slice(1);
  try {
    db = decodeURIComponent(db);
  } catch {
    // shown as written
  }
  return `${host}:${port}${db ? `/${db}` : ''}`;
}

const DEFAULT_PORTS: Record<string, string> = {
  'postgresql:': '5432',
  'postgres:': '5432',
  'redis:': '6379',
  'rediss:': '6379',
  'http:': '8123',
  'https:': '8443',
};

/**
 * A connection string as the target line shows it, as psql's prompt names its server:
 * `postgresql://user@host:port/database` with the default port filled in, a socket folder as the
 * host, and never the password or a query parameter. Undefined when it does not parse.
 */
export function describeTarget(value: string): string | undefined {
  const parsed = parseUrl(value);
  if (!parsed) return undefined;
  const { url, socket } = parsed;
  const decode = (v: string) => {
    try {
      return decodeURIComponent(v);
    } catch {
      return v;
    }
  };
  const host = url.searchParams.get('host') || (socket ? '' : url.hostname) || 'localhost';
  const port = url.searchParams.get('port') || url.port || DEFAULT_PORTS[url.protocol] || '';
  const user = url.username ? `${decode(url.username)}@` : '';
  const path = url.pathname && url.pathname !== '/' ? decode(url.pathname) : '';
  return `${url.protocol}//${user}${host}${port ? `:${port}` : ''}${path}`;
}

/** The user a connection string logs in as (decoded), or undefined. */
export function userOf(value: string): string | undefined {
  const parsed = parseUrl(value);
  if (!parsed?.url.username) return undefined;
  try {
    return decodeURIComponent(parsed.url.username);
  } catch {
    return parsed.url.username;
  }
}

/**
 * Whether the host the URL parser found is a piece of the password: an unencoded `@` in the
 * password, followed by a `/`, `?` or the end, makes the parser take the text after that `@` as
 * the host (`postgresql://app:p@ss?x@db/shop` → host `ss`). Read with the real parser: a right
 * reading takes the host from just after the last `@`.
 */
export function hostInsidePassword(value: string): boolean {
  const parsed = parseUrl(value);
  const host = parsed && !parsed.socket ? parsed.url.hostname : '';
  if (!host) return false;
  const start = value.indexOf('://');
  const first = value.indexOf('@', start + 3);
  const last = value.lastIndexOf('@');
  if (start === -1 || first === -1 || first === last) return false;
  // A right reading takes the host from just after the last "@".
  return !value
    .slice(last + 1)
    .toLowerCase()
    .startsWith(host.toLowerCase());
}

const PG_FORM = 'postgresql://USER:PASSWORD@HOST:PORT/DATABASE';

/**
 * A PostgreSQL connection string (DATABASE_URL, DIRECT_DATABASE_URL, PGBOUNCER_ADMIN_URL), checked as
 * `pg` will read it. Returns it with `uselibpqcompat=true` added when its sslmode is prefer, require or
 * verify-ca, so those modes mean what they mean to psql and Prisma (pg otherwise prints a 9-line
 * SECURITY WARNING on every connection and treats them as verify-full).
 */
export function checkPostgresUrl(name: string, s: SourcedValue, opts: { requireTls?: boolean } = {}): string {
  checkShape(name, s, ['postgresql', 'postgres'], PG_FORM);
  const parsed = parseUrl(s.value);
  if (!parsed) fail(name, s, 'is not a valid URL', encodingHint(PG_FORM, s.value));
  const { url, socket } = parsed;
  checkStrayAt(name, s, url, PG_FORM);
  if (url.port === '0')
    fail(name, s, 'has port 0', 'PostgreSQL listens on 5432 by default; give the real port after the host');
  const host = url.searchParams.get('host');
  if (socket && !host) {
    fail(
      name,
      s,
      'has a user and password but no host',
      `write the host after the "@" (${PG_FORM}), or a Unix socket as ...@/DATABASE?host=/run/postgresql`,
    );
  }
  const sslmode = url.searchParams.get('sslmode');
  const modes = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify'];
  if (sslmode !== null && !modes.includes(sslmode)) {
    fail(name, s, 'has an unknown sslmode', `sslmode is one of ${modes.join(', ')}`);
  }
  const compat = url.searchParams.get('uselibpqcompat');
  let value = s.value;
  if (opts.requireTls && sslmode === null) {
    // DATABASE_SSL / NODE_ENV=production: TLS without a certificate check, as psql's sslmode=require.
    value = `${value}${url.search ? '&' : '?'}sslmode=require`;
  }
  const effectiveMode = sslmode ?? (opts.requireTls ? 'require' : null);
  if ((effectiveMode === 'prefer' || effectiveMode === 'require' || effectiveMode === 'verify-ca') && compat === null) {
    value = `${value}&uselibpqcompat=true`;
  }
  if (sslmode === 'verify-ca' && !url.searchParams.get('sslrootcert')) {
    fail(
      name,
      s,
      'has sslmode=verify-ca without sslrootcert',
      'add sslrootcert=/path/to/ca.pem (the CA that signed the server certificate), or use sslmode=verify-full',
    );
  }
  try {
    // The same parser pg runs on every connect: it reads sslrootcert/sslcert/sslkey files too.
    parsePgConnectionString(value);
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    if (e.code === 'ENOENT' || e.code === 'EACCES' || e.code === 'EISDIR') {
      fail(
        name,
        s,
        `names a TLS file that cannot be read (${e.code}: ${e.path ?? 'unknown path'})`,
        'check sslrootcert, sslcert and sslkey in the URL: each is a path to a PEM file',
      );
    }
    fail(name, s, 'cannot be read as a PostgreSQL connection string', encodingHint(PG_FORM, s.value));
  }
  return value;
}

export interface RedisTarget {
  host: string;
  port: number;
  db: number;
  username: string | undefined;
  password: string | undefined;
  tls: boolean;
  /** The host as written, brackets included for IPv6 (for TLS SNI). */
  hostname: string;
}

const REDIS_FORM = 'redis://[USER:PASSWORD@]HOST:PORT/DB (rediss:// for TLS)';
/** Redis' own bound on the `databases` setting. */
export const MAX_REDIS_DB = 2_147_483_647;

/** Read a Redis URL into what a client needs; throws ConfigError naming the setting (never the value). */
export function parseRedisUrl(name: string, s: SourcedValue): RedisTarget {
  checkShape(name, s, ['redis', 'rediss'], REDIS_FORM);
  const parsed = parseUrl(s.value);
  if (!parsed || parsed.socket) fail(name, s, 'is not a valid URL', encodingHint(REDIS_FORM, s.value));
  const { url } = parsed;
  checkStrayAt(name, s, url, REDIS_FORM);
  if (!url.hostname) fail(name, s, 'has no host', `the form is ${REDIS_FORM}`);
  if (url.port === '0')
    fail(name, s, 'has port 0', 'Redis listens on 6379 by default; give the real port after the host');
  const path = url.pathname;
  let db = 0;
  if (path !== '' && path !== '/') {
    const digits = path.slice(1);
    const n = Number(digits);
    if (!/^\d{1,10}$/.test(digits) || n > MAX_REDIS_DB) {
      fail(
        name,
        s,
        'has a database index that is not a whole number',
        'the part after the host is the database number, e.g. redis://host:6379/0 (Redis has databases 0-15 unless its `databases` setting says otherwise)',
      );
    }
    db = n;
  }
  const decode = (v: string) => {
    try {
      return decodeURIComponent(v);
    } catch {
      fail(
        name,
        s,
        'has a "%" that is not followed by two hex digits',
        `${ENCODING_HINT}; a literal % is %25 (${NOT_SHOWN})`,
      );
    }
  };
  const hostname = url.hostname;
  return {
    host: hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname,
    hostname,
    port: Number(url.port || 6379),
    db,
    username: url.username ? decode(url.username) : undefined,
    password: url.password ? decode(url.password) : undefined,
    tls: url.protocol === 'rediss:',
  };
}

/**
 * Any other connection string (a new `*_URL` setting): the scheme, no fragment, it parses, no `@`
 * after the host. Returns it unchanged.
 */
export function checkGenericUrl(name: string, s: SourcedValue, schemes: string[]): string {
  const form = `${schemes[0]}://USER:PASSWORD@HOST:PORT/...`;
  checkShape(name, s, schemes, form);
  const parsed = parseUrl(s.value);
  if (!parsed || parsed.socket) fail(name, s, 'is not a valid URL', encodingHint(form, s.value));
  checkStrayAt(name, s, parsed.url, form);
  return s.value;
}
