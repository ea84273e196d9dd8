import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/config.js';
import { ConfigError } from '../../src/errors.js';

const dir = () => mkdtempSync(join(tmpdir(), 'dbops-cfg-'));

describe('resolveConfig precedence: flags > env > .env > config file', () => {
  it('takes each layer in order and records where the value came from', () => {
    const cwd = dir();
    writeFileSync(
      join(cwd, 'dbops.config.json'),
      JSON.stringify({ databaseUrl: 'postgres://file@h/f', redisUrl: 'redis://file:6379', cacheKeyPrefix: 'fromfile' }),
    );
    writeFileSync(join(cwd, '.env'), 'REDIS_URL=redis://dotenv:6379\nCACHE_KEY_PREFIX=fromdotenv\n');
    const cfg = resolveConfig({
      cwd,
      env: { DATABASE_URL: 'postgres://env@h/e', CACHE_KEY_PREFIX: 'fromenv' },
      flags: { DATABASE_URL: 'postgres://flag@h/x' },
    });
    expect(cfg.database?.url).toBe('postgres://flag@h/x');
    expect(cfg.database?.source).toBe('flag --database-url');
    expect(cfg.redis?.url).toBe('redis://dotenv:6379');
    expect(cfg.redis?.source).toContain('.env');
    expect(cfg.cacheKeyPrefix?.value).toBe('fromenv');
    expect(cfg.cacheKeyPrefix?.source).toBe('environment variable CACHE_KEY_PREFIX');
  });

  it('falls back to the config file', () => {
    const cwd = dir();
    writeFileSync(join(cwd, 'dbops.config.json'), JSON.stringify({ databaseUrl: 'postgres://file@h/f' }));
    const cfg = resolveConfig({ cwd, env: {} });
    expect(cfg.database?.url).toBe('postgres://file@h/f');
    expect(cfg.database?.source).toContain('"databaseUrl" in');
  });

  it('builds a URL from the design parts, percent-encoding the password, ssl in production', () => {
    const cfg = resolveConfig({
      cwd: dir(),
      env: {
        DATABASE_HOST: 'db.internal',
        DATABASE_PORT: '6432',
        DATABASE_NAME: 'app',
        DATABASE_USER: 'svc',
        DATABASE_PASSWORD: 'p@ss/w:rd',
        NODE_ENV: 'production',
        DATABASE_POOL_SIZE: '20',
      },
    });
    const url = new URL(cfg.database?.url ?? '');
    expect(url.hostname).toBe('db.internal');
    expect(url.port).toBe('6432');
    expect(decodeURIComponent(url.password)).toBe('p@ss/w:rd');
    expect(url.searchParams.get('sslmode')).toBe('require');
    expect(cfg.poolSize).toBe(20);
    expect(cfg.secrets).toContain('p@ss/w:rd');
    expect(cfg.settings.DATABASE_PASSWORD?.value).toBe('***');
  });

  it('pairs DIRECT_DATABASE_URL with DATABASE_URL only from the same or a higher source (issue 13)', () => {
    const cwd = dir();
    writeFileSync(
      join(cwd, '.env'),
      'DATABASE_URL=postgres://u@envfile/app\nDIRECT_DATABASE_URL=postgres://u@direct-envfile/app\n',
    );
    // --database-url over a .env pair: the .env direct URL is not used, and is reported as ignored.
    const flagged = resolveConfig({ cwd, env: {}, flags: { DATABASE_URL: 'postgres://u@flag/other' } });
    expect(flagged.database?.directUrl).toBe('postgres://u@flag/other');
    expect(flagged.database?.directBrief).toBe('--database-url');
    expect(flagged.database?.ignoredDirect).toBe('DIRECT_DATABASE_URL from .env');
    // --direct-database-url beats it too, and then nothing is ignored.
    const both = resolveConfig({
      cwd,
      env: {},
      flags: { DATABASE_URL: 'postgres://u@flag/other', DIRECT_DATABASE_URL: 'postgres://u@flagdirect/other' },
    });
    expect(both.database?.directUrl).toBe('postgres://u@flagdirect/other');
    expect(both.database?.ignoredDirect).toBeUndefined();
    // Both from .env: paired as before.
    const plain = resolveConfig({ cwd, env: {} });
    expect(plain.database?.directUrl).toBe('postgres://u@direct-envfile/app');
    expect(plain.database?.directBrief).toBe('DIRECT_DATABASE_URL from .env');
    // DATABASE_URL from the environment over a .env DIRECT_DATABASE_URL: another setup's, ignored.
    const env = resolveConfig({ cwd, env: { DATABASE_URL: 'postgres://u@env/app' } });
    expect(env.database?.directUrl).toBe('postgres://u@env/app');
    expect(env.database?.ignoredDirect).toBe('DIRECT_DATABASE_URL from .env');
  });

  it('uses DIRECT_DATABASE_URL for migrations when set', () => {
    const cfg = resolveConfig({
      cwd: dir(),
      env: { DATABASE_URL: 'postgres://u@bouncer:6432/app', DIRECT_DATABASE_URL: 'postgres://u@pg:5432/app' },
    });
    expect(cfg.database?.url).toContain('bouncer');
    expect(cfg.database?.directUrl).toContain('pg:5432');
  });

  it('reports an invalid value with the setting name and its source', () => {
    expect(() => resolveConfig({ cwd: dir(), env: { DATABASE_POOL_SIZE: 'lots' } })).toThrowError(
      /DATABASE_POOL_SIZE="lots" \(from environment variable DATABASE_POOL_SIZE\)/,
    );
    expect(() => resolveConfig({ cwd: dir(), env: { REDIS_URL: 'http://x' } })).toThrowError(
      /REDIS_URL \(from environment variable REDIS_URL\) must start with redis:\/\/ or rediss:\/\/, not http:/,
    );
    expect(() => resolveConfig({ cwd: dir(), env: { DATABASE_URL: 'not a url' } })).toThrow(ConfigError);
  });

  it('rejects unknown keys in the config file and a missing --config file', () => {
    const cwd = dir();
    writeFileSync(join(cwd, 'bad.json'), JSON.stringify({ databaseURL: 'x' }));
    expect(() => resolveConfig({ cwd, env: {}, configFile: 'bad.json' })).toThrowError(/unknown setting "databaseURL"/);
    expect(() => resolveConfig({ cwd, env: {}, configFile: 'nope.json' })).toThrowError(/does not exist/);
  });

  it('leaves the database undefined when nothing is configured, and notes CI', () => {
    const cfg = resolveConfig({ cwd: dir(), env: { CI: 'true' } });
    expect(cfg.database).toBeUndefined();
    expect(cfg.ci).toBe(true);
  });

  it('never keeps a URL password in the settings view', () => {
    const cfg = resolveConfig({
      cwd: dir(),
      env: { REDIS_URL: 'rediss://user:TopSecret99@r:6380', PGBOUNCER_ADMIN_URL: 'postgres://a:Bouncer55@b/pgbouncer' },
    });
    expect(JSON.stringify(cfg.settings)).not.toMatch(/TopSecret99|Bouncer55/);
    expect(cfg.secrets).toEqual(expect.arrayContaining(['TopSecret99', 'Bouncer55']));
  });
});

describe('TLS in production', () => {
  // uselibpqcompat=true: require means what it means to psql (and pg prints no SECURITY WARNING).
  it('applies sslmode=require to DIRECT_DATABASE_URL as well', () => {
    const cfg = resolveConfig({
      cwd: mkdtempSync(join(tmpdir(), 'dbops-cfg-')),
      env: {
        NODE_ENV: 'production',
        DATABASE_URL: 'postgres://u@bouncer:6432/app',
        DIRECT_DATABASE_URL: 'postgres://u@pg:5432/app',
      },
    });
    expect(cfg.database?.url).toBe('postgres://u@bouncer:6432/app?sslmode=require&uselibpqcompat=true');
    expect(cfg.database?.directUrl).toBe('postgres://u@pg:5432/app?sslmode=require&uselibpqcompat=true');
    const only = resolveConfig({
      cwd: mkdtempSync(join(tmpdir(), 'dbops-cfg-')),
      env: { DATABASE_SSL: 'true', DIRECT_DATABASE_URL: 'postgres://u@pg/app?x=1' },
    });
    expect(only.database?.directUrl).toBe('postgres://u@pg/app?x=1&sslmode=require&uselibpqcompat=true');
  });
});
