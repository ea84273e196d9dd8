/**
 * Configuration: flags > environment > `.env` in the working directory > config file
 * (`dbops.config.json`, or `--config`). Pure: the caller passes the environment, the flags and
 * the working directory; nothing here reads `process.env` by itself.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, resolve } from 'node:path';
import { parseEnv } from 'node:util';
import { ConfigError } from '../errors.js';
import { isSecretName, MASK, maskUrl, Redactor } from './redact.js';
import { checkGenericUrl, checkPostgresUrl, describePostgres, parseRedisUrl } from './urls.js';

export type SourceKind = 'flag' | 'env' | 'dotenv' | 'file' | 'default' | 'derived';

export interface Sourced<T> {
  value: T;
  /** Human description of where the value came from, e.g. `environment variable REDIS_URL`. */
  source: string;
  kind: SourceKind;
  /** Short form for the target line: `--database-url`, `DATABASE_URL from .env`. */
  brief?: string;
}

/** Every setting dbops reads, with its environment name, its config-file key and its flag. */
export const SETTINGS = {
  DATABASE_URL: { key: 'databaseUrl', flag: '--database-url', secret: true },
  DIRECT_DATABASE_URL: { key: 'directDatabaseUrl', flag: '--direct-database-url', secret: true },
  DATABASE_REPLICA_URLS: { key: 'databaseReplicaUrls', flag: '--replica-url', secret: true },
  DBOPS_REPLICA_WAIT_MS: { key: 'replicaWaitMs' },
  DATABASE_HOST: { key: 'databaseHost' },
  DATABASE_PORT: { key: 'databasePort' },
  DATABASE_NAME: { key: 'databaseName' },
  DATABASE_USER: { key: 'databaseUser' },
  DATABASE_PASSWORD: { key: 'databasePassword', secret: true },
  DATABASE_POOL_SIZE: { key: 'databasePoolSize' },
  DATABASE_SSL: { key: 'databaseSsl' },
  REDIS_URL: { key: 'redisUrl', flag: '--redis-url', secret: true },
  CACHE_KEY_PREFIX: { key: 'cacheKeyPrefix' },
  PGBOUNCER_ADMIN_URL: { key: 'pgbouncerAdminUrl', secret: true },
  CLICKHOUSE_URL: { key: 'clickhouseUrl', flag: '--clickhouse-url', secret: true },
  CLICKHOUSE_CA_CERT: { key: 'clickhouseCaCert' },
  CLICKHOUSE_QUERY_TIMEOUT_MS: { key: 'clickhouseQueryTimeoutMs' },
  DBOPS_MIGRATIONS_DIR: { key: 'migrationsDir' },
  DBOPS_PRISMA_MIGRATIONS_DIR: { key: 'prismaMigrationsDir' },
  DBOPS_PRISMA_SCHEMA: { key: 'prismaSchema' },
  DBOPS_SCHEMA: { key: 'dbopsSchema' },
  DBOPS_CONNECT_TIMEOUT_MS: { key: 'connectTimeoutMs' },
  DBOPS_EMBEDDED_DIR: { key: 'embeddedDir' },
  NODE_ENV: { key: 'nodeEnv' },
} as const satisfies Record<string, { key: string; flag?: string; secret?: boolean }>;

export type SettingName = keyof typeof SETTINGS;
interface SettingDef {
  key: string;
  flag?: string;
  secret?: boolean;
}

export interface ConfigInput {
  /** Values given on the command line, by setting name. */
  flags?: Partial<Record<SettingName, string | undefined>>;
  /** The process environment (pass `process.env`). */
  env: Record<string, string | undefined>;
  cwd: string;
  /** `--config <file>`; when absent `dbops.config.json` in cwd is read if it exists. */
  configFile?: string | undefined;
  /**
   * Learns every secret of every layer (flags, environment, `.env`, config file) as soon as the
   * layer is read, before anything is validated, so no error about a value can print it.
   */
  redactor?: Redactor;
}

export interface DatabaseSettings {
  /** Connection string for ordinary work (may point at PgBouncer). */
  url: string;
  /** Direct connection (bypasses PgBouncer) for migrations and locks; equals url when unset. */
  directUrl: string;
  /** Where `url` came from. */
  source: string;
  directSource: string;
  /** Short forms of the two sources for the target line (`DATABASE_URL from .env`). */
  brief: string;
  directBrief: string;
  /**
   * A DIRECT_DATABASE_URL that was set but not used because it comes from a lower source than the
   * DATABASE_URL in force (e.g. from .env while --database-url was given): its source, said on the
   * target line.
   */
  ignoredDirect?: string;
  ssl: boolean;
  poolSize: number;
}

/** One read replica: its URL, `host:port/db` for messages, where it came from. */
export interface ReplicaSettings {
  url: string;
  name: string;
  source: string;
}

/** ClickHouse over its HTTP interface (`http(s)://user:password@host:8123/database`). */
export interface ClickHouseSettings {
  url: string;
  source: string;
  brief: string;
  /** A CA certificate (PEM file) to trust for https://, beside the system's. */
  caCert: string | undefined;
  /** Bound on each query, client- and (unless the user is readonly=1) server-side. */
  queryTimeoutMs: number;
}

export interface ResolvedConfig {
  cwd: string;
  /** Undefined when nothing is configured: the CLI then decides about the embedded server. */
  database: DatabaseSettings | undefined;
  redis: { url: string; source: string; brief: string } | undefined;
  cacheKeyPrefix: Sourced<string> | undefined;
  /** Streaming read replicas (DATABASE_REPLICA_URLS, comma-separated; --replica-url, repeatable). */
  replicas: ReplicaSettings[];
  /** Bound on waiting for the replicas to replay a migration's commit before invalidating (DBOPS_REPLICA_WAIT_MS, default 30 s). */
  replicaWaitMs: number;
  pgbouncerAdminUrl: Sourced<string> | undefined;
  clickhouse: ClickHouseSettings | undefined;
  migrationsDir: string;
  prismaMigrationsDir: string;
  prismaSchema: string;
  /** The PostgreSQL schema where dbops keeps its own tables (DBOPS_SCHEMA, default `dbops`). */
  dbopsSchema: string;
  connectTimeoutMs: number;
  embeddedDir: string;
  poolSize: number;
  ssl: boolean;
  nodeEnv: string | undefined;
  ci: boolean;
  production: boolean;
  /** Every setting that has a value, with where it came from (secrets masked). */
  settings: Record<string, { value: string; source: string }>;
  /** Every secret found in any configured value of any layer (each spelling), for an output redactor. */
  secrets: string[];
}

type Layer = {
  kind: SourceKind;
  describe: (name: string) => string;
  brief: (name: string) => string;
  values: Record<string, string | undefined>;
};

/** Flags first: a lower rank wins. */
const RANK: Record<SourceKind, number> = { flag: 0, env: 1, dotenv: 2, file: 3, default: 4, derived: 4 };

/** Where a JSON text stops being JSON, as "line L, column C: <what>", without quoting the text. */
function jsonErrorPosition(text: string): string {
  // Loaded only on this error path (synchronously: configuration is resolved synchronously).
  const { parse, printParseErrorCode } = createRequire(import.meta.url)(
    'jsonc-parser',
  ) as typeof import('jsonc-parser');
  const errors: Array<{ error: number; offset: number }> = [];
  parse(text, errors as never, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  const first = errors[0];
  if (!first) return 'not valid JSON';
  const before = text.slice(0, first.offset).split('\n');
  const what = printParseErrorCode(first.error as never)
    .replace(/([a-z])([A-Z])/g, '$1 $2')
    .toLowerCase();
  return `line ${before.length}, column ${(before[before.length - 1]?.length ?? 0) + 1}: ${what}`;
}

function readConfigFile(path: string, explicit: boolean, redactor: Redactor): Record<string, string> {
  if (!existsSync(path)) {
    if (explicit)
      throw new ConfigError(`config file ${path} does not exist`, {
        hint: 'check the --config path (relative paths start at the working directory)',
      });
    return {};
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(`config file ${path} cannot be read (${code})`, {
      hint: 'check that it is a readable file (not a folder) and its permissions',
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // The parser's own message quotes the text around the fault, which may be a password.
    throw new ConfigError(`config file ${path} is not valid JSON (${jsonErrorPosition(text)})`, {
      hint: 'dbops.config.json is one JSON object such as {"databaseUrl": "postgresql://..."}: double quotes, no comments, no trailing commas',
    });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${path} must contain a JSON object`, {
      hint: 'write the settings as {"key": "value", ...}; docs/configuration.md lists the keys',
    });
  }
  const byKey = new Map<string, SettingName>(Object.entries(SETTINGS).map(([n, s]) => [s.key, n as SettingName]));
  // Learn first: an error about any key below must not be able to print any secret in the file.
  for (const [key, value] of Object.entries(parsed)) {
    for (const leaf of leaves(value)) redactor.addNamed(byKey.get(key) ?? key, leaf);
  }
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(parsed)) {
    const name = byKey.get(key) ?? (key in SETTINGS ? (key as SettingName) : undefined);
    if (!name) {
      const known = [...byKey.keys()].join(', ');
      throw new ConfigError(`config file ${path}: unknown setting "${key}"`, { hint: `known settings: ${known}` });
    }
    if (value === null || value === undefined) continue;
    if (typeof value === 'object') {
      throw new ConfigError(`config file ${path}: "${key}" must be a string or number`, {
        hint: `write it as "${key}": "..."`,
      });
    }
    out[name] = String(value);
  }
  return out;
}

/** Every string or number inside a JSON value. */
function leaves(value: unknown): string[] {
  if (value === null || value === undefined) return [];
  if (typeof value === 'object') return Object.values(value as object).flatMap(leaves);
  return [String(value)];
}

function readDotenv(cwd: string): Record<string, string> {
  const path = resolve(cwd, '.env');
  if (!existsSync(path)) return {};
  try {
    return parseEnv(readFileSync(path, 'utf8')) as Record<string, string>;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'not KEY=value lines';
    throw new ConfigError(`.env in ${cwd} cannot be read (${code})`, {
      hint: 'it holds KEY=value lines; quote a value that contains spaces or #',
    });
  }
}

function isTruthy(v: string | undefined): boolean {
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

function parseInteger(name: string, s: Sourced<string>, min: number, max: number, hint: string): number {
  const n = Number(s.value);
  if (!/^\s*\d+\s*$/.test(s.value) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name}="${s.value}" (from ${s.source}) must be a whole number from ${min} to ${max}`, {
      hint,
    });
  }
  return n;
}

/**
 * Check a connection string of a setting: its scheme (`protocols`, e.g. `['http:', 'https:']`), that
 * it parses, no fragment, no `@` after the host. Never repeats the value in a message.
 */
export function checkUrl(name: string, s: Sourced<string>, protocols: string[]): string {
  const schemes = protocols.map((p) => p.replace(/:$/, ''));
  if (schemes.includes('postgresql')) return checkPostgresUrl(name, s);
  if (schemes.includes('redis')) {
    parseRedisUrl(name, s);
    return s.value;
  }
  return checkGenericUrl(name, s, schemes);
}

/** Resolve and validate the configuration. Throws ConfigError naming the setting and its source. */
export function resolveConfig(input: ConfigInput): ResolvedConfig {
  const { env, cwd } = input;
  const redactor = input.redactor ?? new Redactor();
  const configPath = input.configFile ? resolve(cwd, input.configFile) : resolve(cwd, 'dbops.config.json');
  const learn = (values: Record<string, string | undefined>) => {
    for (const [name, value] of Object.entries(values)) {
      if (value && (name in SETTINGS || isSecretName(name))) redactor.addNamed(name, value);
    }
    return values;
  };
  const flags = learn(input.flags ?? {});
  learn(env);
  const dotenv = learn(readDotenv(cwd));
  const layers: Layer[] = [
    { kind: 'flag', describe: (n) => `flag ${flagOf(n)}`, brief: (n) => flagOf(n), values: flags },
    {
      kind: 'env',
      describe: (n) => `environment variable ${n}`,
      brief: (n) => `${n} from the environment`,
      values: env,
    },
    {
      kind: 'dotenv',
      describe: (n) => `${n} in ${resolve(cwd, '.env')}`,
      brief: (n) => `${n} from .env`,
      values: dotenv,
    },
    {
      kind: 'file',
      describe: (n) => `"${SETTINGS[n as SettingName].key}" in ${configPath}`,
      brief: (n) => `${SETTINGS[n as SettingName].key} from ${basename(configPath)}`,
      values: readConfigFile(configPath, Boolean(input.configFile), redactor),
    },
  ];
  const get = (name: SettingName): Sourced<string> | undefined => {
    for (const layer of layers) {
      const v = layer.values[name];
      if (v !== undefined && v !== '')
        return { value: v, source: layer.describe(name), kind: layer.kind, brief: layer.brief(name) };
    }
    return undefined;
  };

  const nodeEnv = get('NODE_ENV')?.value;
  const production = nodeEnv === 'production';
  const ci = isTruthy(env.CI);
  const settings: ResolvedConfig['settings'] = {};
  for (const name of Object.keys(SETTINGS) as SettingName[]) {
    const s = get(name);
    if (!s) continue;
    const def = SETTINGS[name] as SettingDef;
    if (!def.secret && !isSecretName(name)) settings[name] = { value: s.value, source: s.source };
    else if (name.endsWith('_URL')) settings[name] = { value: maskUrl(s.value) ?? MASK, source: s.source };
    else if (name.endsWith('_URLS'))
      settings[name] = {
        value: listOf(s.value)
          .map((u) => maskUrl(u) ?? MASK)
          .join(' '),
        source: s.source,
      };
    else settings[name] = { value: MASK, source: s.source };
  }

  const poolSizeS = get('DATABASE_POOL_SIZE');
  const poolSize = poolSizeS
    ? parseInteger(
        'DATABASE_POOL_SIZE',
        poolSizeS,
        1,
        10_000,
        "the application's connection pool size per instance (Prisma's default is 10)",
      )
    : 10;
  const sslS = get('DATABASE_SSL');
  const ssl = sslS ? isTruthy(sslS.value) : production;
  const timeoutS = get('DBOPS_CONNECT_TIMEOUT_MS');
  const connectTimeoutMs = timeoutS
    ? parseInteger(
        'DBOPS_CONNECT_TIMEOUT_MS',
        timeoutS,
        100,
        600_000,
        'milliseconds, e.g. 5000; --timeout 5s overrides it for one command',
      )
    : 5000;

  const database = resolveDatabase(get, ssl, poolSize);
  const redisS = get('REDIS_URL');
  const redis = redisS
    ? {
        url: checkUrl('REDIS_URL', redisS, ['redis:', 'rediss:']),
        source: redisS.source,
        brief: redisS.brief ?? redisS.source,
      }
    : undefined;
  const bouncerS = get('PGBOUNCER_ADMIN_URL');
  const pgbouncerAdminUrl = bouncerS
    ? { ...bouncerS, value: checkPostgresUrl('PGBOUNCER_ADMIN_URL', bouncerS) }
    : undefined;
  const clickhouse = resolveClickHouse(get, cwd);
  const replicasS = get('DATABASE_REPLICA_URLS');
  for (const u of listOf(replicasS?.value ?? '')) redactor.addUrl(u);
  const replicas = replicasS
    ? listOf(replicasS.value).map((u, i) => {
        const url = checkPostgresUrl(`DATABASE_REPLICA_URLS (#${i + 1})`, { ...replicasS, value: u });
        return { url, name: describePostgres(u) ?? `replica ${i + 1}`, source: replicasS.source };
      })
    : [];
  const waitS = get('DBOPS_REPLICA_WAIT_MS');
  const replicaWaitMs = waitS
    ? parseInteger(
        'DBOPS_REPLICA_WAIT_MS',
        waitS,
        0,
        3_600_000,
        'milliseconds, e.g. 30000; --replica-wait 30s overrides it for one command',
      )
    : 30_000;

  return {
    cwd,
    database,
    redis,
    cacheKeyPrefix: get('CACHE_KEY_PREFIX'),
    replicas,
    replicaWaitMs,
    pgbouncerAdminUrl,
    clickhouse,
    migrationsDir: folder(cwd, 'DBOPS_MIGRATIONS_DIR', get('DBOPS_MIGRATIONS_DIR'), 'data-migrations'),
    prismaMigrationsDir: folder(
      cwd,
      'DBOPS_PRISMA_MIGRATIONS_DIR',
      get('DBOPS_PRISMA_MIGRATIONS_DIR'),
      'prisma/migrations',
    ),
    prismaSchema: resolve(cwd, get('DBOPS_PRISMA_SCHEMA')?.value ?? 'prisma/schema.prisma'),
    dbopsSchema: get('DBOPS_SCHEMA')?.value ?? 'dbops',
    connectTimeoutMs,
    embeddedDir: folder(cwd, 'DBOPS_EMBEDDED_DIR', get('DBOPS_EMBEDDED_DIR'), '.dbops'),
    poolSize,
    ssl,
    nodeEnv,
    ci,
    production,
    settings,
    secrets: [...redactor.list()],
  };
}

/** A folder setting: it may not exist yet, but if something is there it must be a folder. */
function folder(cwd: string, name: string, s: Sourced<string> | undefined, fallback: string): string {
  const path = resolve(cwd, s?.value ?? fallback);
  if (s && existsSync(path) && !statSync(path).isDirectory()) {
    throw new ConfigError(`${name}="${s.value}" (from ${s.source}) is a file, not a folder`, {
      hint: `give the folder (relative paths start at ${cwd}); the default is ${fallback}`,
    });
  }
  return path;
}

function resolveClickHouse(
  get: (name: SettingName) => Sourced<string> | undefined,
  cwd: string,
): ClickHouseSettings | undefined {
  const urlS = get('CLICKHOUSE_URL');
  const caS = get('CLICKHOUSE_CA_CERT');
  const timeoutS = get('CLICKHOUSE_QUERY_TIMEOUT_MS');
  const queryTimeoutMs = timeoutS
    ? parseInteger('CLICKHOUSE_QUERY_TIMEOUT_MS', timeoutS, 100, 3_600_000, 'milliseconds, e.g. 10000 for 10 s')
    : 10_000;
  if (!urlS) return undefined;
  const url = checkUrl('CLICKHOUSE_URL', urlS, ['http:', 'https:']);
  // Settings in the query string would be sent with every request, which a readonly=1 user is refused.
  if (new URL(url).search) {
    throw new ConfigError(
      `CLICKHOUSE_URL (from ${urlS.source}) has a query string: settings in the URL are not supported`,
      {
        hint: 'use http(s)://user:password@host:8123/database; https:// turns TLS on',
      },
    );
  }
  let caCert: string | undefined;
  if (caS) {
    caCert = resolve(cwd, caS.value);
    if (!existsSync(caCert))
      throw new ConfigError(`CLICKHOUSE_CA_CERT (from ${caS.source}): ${caCert} does not exist`, {
        hint: 'a PEM file with the CA that signed the server certificate',
      });
  }
  return { url, source: urlS.source, brief: urlS.brief ?? urlS.source, caCert, queryTimeoutMs };
}

function flagOf(name: string): string {
  const def = (SETTINGS[name as SettingName] ?? {}) as SettingDef;
  return def.flag ?? name;
}

/** The URL built from DATABASE_HOST/PORT/NAME/USER/PASSWORD (a host starting with / is a socket folder). */
function urlFromParts(get: (name: SettingName) => Sourced<string> | undefined, host: Sourced<string>): string {
  const [port, name, user, password] = (
    ['DATABASE_PORT', 'DATABASE_NAME', 'DATABASE_USER', 'DATABASE_PASSWORD'] as const
  ).map(get);
  if (port) parseInteger('DATABASE_PORT', port, 1, 65_535, 'the TCP port PostgreSQL listens on (5432 by default)');
  const socket = host.value.startsWith('/');
  const u = new URL('postgresql://localhost');
  if (!socket) {
    u.hostname = host.value;
    // The URL setter silently ignores a host it cannot take (a space, "@", ":"): check it took this one.
    const wanted = host.value.toLowerCase().replace(/^\[|\]$/g, '');
    if (u.hostname.replace(/^\[|\]$/g, '') !== wanted) {
      throw new ConfigError(`DATABASE_HOST (from ${host.source}) is not a host name or address`, {
        hint: 'give only the host, e.g. db.internal or 10.0.0.5 (or a socket folder such as /run/postgresql); the port, user and password go in DATABASE_PORT, DATABASE_USER, DATABASE_PASSWORD',
      });
    }
  }
  if (port) u.port = port.value;
  u.pathname = `/${encodeURIComponent(name?.value ?? 'postgres')}`;
  u.username = encodeURIComponent(user?.value ?? 'postgres');
  if (password) u.password = encodeURIComponent(password.value);
  if (!socket) return u.toString();
  // A Unix socket: no host in the authority, the folder in ?host= (as libpq and pg read it).
  const auth = `${u.username}${u.password ? `:${u.password}` : ''}@`;
  const query = new URLSearchParams({ host: host.value, ...(port ? { port: port.value } : {}) });
  return `postgresql://${auth}${u.pathname}?${query.toString()}`;
}

function resolveDatabase(
  get: (name: SettingName) => Sourced<string> | undefined,
  ssl: boolean,
  poolSize: number,
): DatabaseSettings | undefined {
  const urlS = get('DATABASE_URL');
  // TLS applies to every connection, the direct one (migrations, locks) included.
  const tls = { requireTls: ssl };
  let url: string | undefined;
  let source = '';
  let brief = '';
  let kind: SourceKind = 'default';
  if (urlS) {
    url = checkPostgresUrl('DATABASE_URL', urlS, tls);
    source = urlS.source;
    brief = urlS.brief ?? source;
    kind = urlS.kind;
  } else {
    const host = get('DATABASE_HOST');
    if (host) {
      source = `DATABASE_HOST/PORT/NAME/USER/PASSWORD (${host.source})`;
      brief = (host.brief ?? host.source).replace('DATABASE_HOST', 'DATABASE_HOST/PORT/NAME/USER/PASSWORD');
      kind = host.kind;
      url = checkPostgresUrl(
        'DATABASE_HOST/PORT/NAME/USER/PASSWORD',
        { value: urlFromParts(get, host), source: host.source },
        tls,
      );
    } else {
      const stray = (['DATABASE_PORT', 'DATABASE_NAME', 'DATABASE_USER', 'DATABASE_PASSWORD'] as const)
        .map(get)
        .find((p) => p !== undefined);
      if (stray) {
        throw new ConfigError(`${stray.source} is set but DATABASE_HOST is not`, {
          hint: 'set DATABASE_URL, or DATABASE_HOST with the other DATABASE_* parts',
        });
      }
    }
  }
  const setDirect = get('DIRECT_DATABASE_URL');
  // The two URLs are a pair: a DIRECT_DATABASE_URL from a lower source than the DATABASE_URL in
  // force (.env under --database-url, the config file under the environment) belongs to another
  // setup and is not used; the target line says it was ignored.
  const ignored = url !== undefined && setDirect !== undefined && RANK[setDirect.kind] > RANK[kind];
  const directS = ignored ? undefined : setDirect;
  const directUrl = directS ? checkPostgresUrl('DIRECT_DATABASE_URL', directS, tls) : url;
  if (!url) {
    if (directUrl && directS) {
      const b = directS.brief ?? directS.source;
      return {
        url: directUrl,
        directUrl,
        source: directS.source,
        directSource: directS.source,
        brief: b,
        directBrief: b,
        ssl,
        poolSize,
      };
    }
    return undefined;
  }
  return {
    url,
    directUrl: directUrl ?? url,
    source,
    directSource: directS?.source ?? source,
    brief,
    directBrief: directS ? (directS.brief ?? directS.source) : brief,
    ...(ignored && setDirect ? { ignoredDirect: setDirect.brief ?? setDirect.source } : {}),
    ssl,
    poolSize,
  };
}

/** The entries of a comma-separated list setting, trimmed, empty ones dropped. */
function listOf(value: string): string[] {
  return value
    .split(',')
    .map((v) => v.trim())
    .filter((v) => v !== '');
}
