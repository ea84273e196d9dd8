/**
 * Configuration: flags > environment > `.env` in the working directory > config file
 * (`dbops.config.json`, or `--config`). Pure: the caller passes the environment, the flags and
 * the working directory; nothing here reads `process.env` by itself.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseEnv } from 'node:util';
import { ConfigError } from '../errors.js';
import { maskUrl, urlPasswords } from './redact.js';

export type SourceKind = 'flag' | 'env' | 'dotenv' | 'file' | 'default' | 'derived';

export interface Sourced<T> {
  value: T;
  /** Human description of where the value came from, e.g. `environment variable REDIS_URL`. */
  source: string;
  kind: SourceKind;
}

/** Every setting dbops reads, with its environment name, its config-file key and its flag. */
export const SETTINGS = {
  DATABASE_URL: { key: 'databaseUrl', flag: '--database-url', secret: true },
  DIRECT_DATABASE_URL: { key: 'directDatabaseUrl', secret: true },
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
}

export interface DatabaseSettings {
  /** Connection string for ordinary work (may point at PgBouncer). */
  url: string;
  /** Direct connection (bypasses PgBouncer) for migrations and locks; equals url when unset. */
  directUrl: string;
  /** Where `url` came from. */
  source: string;
  directSource: string;
  ssl: boolean;
  poolSize: number;
}

export interface ResolvedConfig {
  cwd: string;
  /** Undefined when nothing is configured: the CLI then decides about the embedded server. */
  database: DatabaseSettings | undefined;
  redis: { url: string; source: string } | undefined;
  cacheKeyPrefix: Sourced<string> | undefined;
  pgbouncerAdminUrl: Sourced<string> | undefined;
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
  /** Passwords found in any configured value, for the output redactor. */
  secrets: string[];
}

type Layer = { kind: SourceKind; describe: (name: string) => string; values: Record<string, string | undefined> };

function readConfigFile(path: string, explicit: boolean): Record<string, string> {
  if (!existsSync(path)) {
    if (explicit) throw new ConfigError(`config file ${path} does not exist`, { hint: 'check the --config path' });
    return {};
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(error as Error).message}`, {
      hint: 'dbops.config.json is a JSON object such as {"databaseUrl": "postgres://..."}',
    });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${path} must contain a JSON object`);
  }
  const byKey = new Map<string, SettingName>(Object.entries(SETTINGS).map(([n, s]) => [s.key, n as SettingName]));
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(parsed)) {
    const name = byKey.get(key) ?? (key in SETTINGS ? (key as SettingName) : undefined);
    if (!name) {
      const known = [...byKey.keys()].join(', ');
      throw new ConfigError(`config file ${path}: unknown setting "${key}"`, { hint: `known settings: ${known}` });
    }
    if (value === null || value === undefined) continue;
    if (typeof value === 'object') throw new ConfigError(`config file ${path}: "${key}" must be a string or number`);
    out[name] = String(value);
  }
  return out;
}

function readDotenv(cwd: string): Record<string, string> {
  const path = resolve(cwd, '.env');
  if (!existsSync(path)) return {};
  try {
    return parseEnv(readFileSync(path, 'utf8')) as Record<string, string>;
  } catch (error) {
    throw new ConfigError(`.env in ${cwd} cannot be parsed: ${(error as Error).message}`);
  }
}

function isTruthy(v: string | undefined): boolean {
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

function parseInteger(name: string, s: Sourced<string>, min: number, max: number): number {
  const n = Number(s.value);
  if (!/^\s*\d+\s*$/.test(s.value) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name}="${s.value}" (from ${s.source}) must be a whole number from ${min} to ${max}`);
  }
  return n;
}

function checkUrl(name: string, s: Sourced<string>, protocols: string[]): string {
  let url: URL;
  try {
    url = new URL(s.value);
  } catch {
    throw new ConfigError(`${name} (from ${s.source}) is not a valid URL: ${maskUrl(s.value)}`, {
      hint: `expected ${protocols[0]}//user:password@host:port/...; percent-encode special characters in the password`,
    });
  }
  if (!protocols.includes(url.protocol)) {
    throw new ConfigError(`${name} (from ${s.source}) must start with ${protocols.join(' or ')}, not ${url.protocol}`);
  }
  return s.value;
}

const PG_PROTOCOLS = ['postgresql:', 'postgres:'];

/** Resolve and validate the configuration. Throws ConfigError naming the setting and its source. */
export function resolveConfig(input: ConfigInput): ResolvedConfig {
  const { env, cwd } = input;
  const configPath = input.configFile ? resolve(cwd, input.configFile) : resolve(cwd, 'dbops.config.json');
  const layers: Layer[] = [
    { kind: 'flag', describe: (n) => `flag ${flagOf(n)}`, values: input.flags ?? {} },
    { kind: 'env', describe: (n) => `environment variable ${n}`, values: env },
    { kind: 'dotenv', describe: (n) => `${n} in ${resolve(cwd, '.env')}`, values: readDotenv(cwd) },
    { kind: 'file', describe: (n) => `"${SETTINGS[n as SettingName].key}" in ${configPath}`, values: readConfigFile(configPath, Boolean(input.configFile)) },
  ];
  const get = (name: SettingName): Sourced<string> | undefined => {
    for (const layer of layers) {
      const v = layer.values[name];
      if (v !== undefined && v !== '') return { value: v, source: layer.describe(name), kind: layer.kind };
    }
    return undefined;
  };

  const nodeEnv = get('NODE_ENV')?.value;
  const production = nodeEnv === 'production';
  const ci = isTruthy(env.CI);
  const settings: ResolvedConfig['settings'] = {};
  const secrets: string[] = [];
  for (const name of Object.keys(SETTINGS) as SettingName[]) {
    const s = get(name);
    if (!s) continue;
    const def = SETTINGS[name] as SettingDef;
    if (name === 'DATABASE_PASSWORD') {
      secrets.push(s.value);
      settings[name] = { value: '***', source: s.source };
    } else if (def.secret) {
      for (const pw of urlPasswords(s.value)) secrets.push(pw);
      settings[name] = { value: maskUrl(s.value) ?? '', source: s.source };
    } else {
      settings[name] = { value: s.value, source: s.source };
    }
  }

  const poolSizeS = get('DATABASE_POOL_SIZE');
  const poolSize = poolSizeS ? parseInteger('DATABASE_POOL_SIZE', poolSizeS, 1, 10_000) : 10;
  const sslS = get('DATABASE_SSL');
  const ssl = sslS ? isTruthy(sslS.value) : production;
  const timeoutS = get('DBOPS_CONNECT_TIMEOUT_MS');
  const connectTimeoutMs = timeoutS ? parseInteger('DBOPS_CONNECT_TIMEOUT_MS', timeoutS, 100, 600_000) : 5000;

  const database = resolveDatabase(get, ssl, poolSize);
  const redisS = get('REDIS_URL');
  const redis = redisS ? { url: checkUrl('REDIS_URL', redisS, ['redis:', 'rediss:']), source: redisS.source } : undefined;
  const bouncerS = get('PGBOUNCER_ADMIN_URL');
  if (bouncerS) checkUrl('PGBOUNCER_ADMIN_URL', bouncerS, PG_PROTOCOLS);

  return {
    cwd,
    database,
    redis,
    cacheKeyPrefix: get('CACHE_KEY_PREFIX'),
    pgbouncerAdminUrl: bouncerS,
    migrationsDir: resolve(cwd, get('DBOPS_MIGRATIONS_DIR')?.value ?? 'data-migrations'),
    prismaMigrationsDir: resolve(cwd, get('DBOPS_PRISMA_MIGRATIONS_DIR')?.value ?? 'prisma/migrations'),
    prismaSchema: resolve(cwd, get('DBOPS_PRISMA_SCHEMA')?.value ?? 'prisma/schema.prisma'),
    dbopsSchema: get('DBOPS_SCHEMA')?.value ?? 'dbops',
    connectTimeoutMs,
    embeddedDir: resolve(cwd, get('DBOPS_EMBEDDED_DIR')?.value ?? '.dbops'),
    poolSize,
    ssl,
    nodeEnv,
    ci,
    production,
    settings,
    secrets: secrets.filter(Boolean),
  };
}

function flagOf(name: string): string {
  const def = (SETTINGS[name as SettingName] ?? {}) as SettingDef;
  return def.flag ?? name;
}

function resolveDatabase(get: (name: SettingName) => Sourced<string> | undefined, ssl: boolean, poolSize: number): DatabaseSettings | undefined {
  const urlS = get('DATABASE_URL');
  let url: string | undefined;
  let source = '';
  if (urlS) {
    url = checkUrl('DATABASE_URL', urlS, PG_PROTOCOLS);
    source = urlS.source;
  } else {
    const host = get('DATABASE_HOST');
    const parts = (['DATABASE_PORT', 'DATABASE_NAME', 'DATABASE_USER', 'DATABASE_PASSWORD'] as const).map(get);
    if (host) {
      const [port, name, user, password] = parts;
      if (port) parseInteger('DATABASE_PORT', port, 1, 65_535);
      const u = new URL('postgresql://localhost');
      u.hostname = host.value;
      if (port) u.port = port.value;
      u.pathname = `/${encodeURIComponent(name?.value ?? 'postgres')}`;
      u.username = encodeURIComponent(user?.value ?? 'postgres');
      if (password) u.password = encodeURIComponent(password.value);
      url = u.toString();
      source = `DATABASE_HOST/PORT/NAME/USER/PASSWORD (${host.source})`;
    } else {
      const stray = parts.find((p) => p !== undefined);
      if (stray) {
        throw new ConfigError(`${stray.source} is set but DATABASE_HOST is not`, {
          hint: 'set DATABASE_URL, or DATABASE_HOST with the other DATABASE_* parts',
        });
      }
    }
  }
  // TLS applies to every connection, the direct one (migrations, locks) included.
  const withSsl = (u: string) => (ssl && !/[?&]sslmode=/.test(u) ? `${u}${u.includes('?') ? '&' : '?'}sslmode=require` : u);
  if (url) url = withSsl(url);
  const directS = get('DIRECT_DATABASE_URL');
  const directUrl = directS ? withSsl(checkUrl('DIRECT_DATABASE_URL', directS, PG_PROTOCOLS)) : url;
  if (!url) {
    if (directUrl && directS) {
      return { url: directUrl, directUrl, source: directS.source, directSource: directS.source, ssl, poolSize };
    }
    return undefined;
  }
  return { url, directUrl: directUrl ?? url, source, directSource: directS?.source ?? source, ssl, poolSize };
}
