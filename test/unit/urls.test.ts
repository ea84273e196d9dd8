/** Connection strings are checked up front, as pg and ioredis will read them, and never echoed. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { durationArg, durationIn } from '../../src/cli/options.js';
import { resolveConfig } from '../../src/config/config.js';
import { Redactor } from '../../src/config/redact.js';
import { checkPostgresUrl, describePostgres, parseRedisUrl } from '../../src/config/urls.js';
import { ConfigError } from '../../src/errors.js';

const src = (value: string) => ({ value, source: 'environment variable X' });
const PW = 'Cn4ry-Z9q';

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    const e = error as ConfigError;
    expect(e.hint).toBeTruthy();
    return `${e.message}\n${e.hint}`;
  }
  throw new Error('did not throw');
}

describe('PostgreSQL URLs', () => {
  const refused = [
    `canary_user:${PW}@127.0.0.1:5432/db`,
    `postgresql//u:${PW}@127.0.0.1:5432/db`,
    `postgres:/u:${PW}@127.0.0.1:5432/db`,
    `postgresql:user:${PW}@127.0.0.1:5432/db`,
    `mysql://u:${PW}@h/db`,
    `postgresql://u:${PW} a#b@h/db`,
    `postgresql://u:12/${PW}@h/db`,
    `postgresql://u:${PW}@h:99999/db`,
    `postgresql://u:${PW}@/db`,
    ` postgresql://u:${PW}@h/db`,
    `postgresql://u:${PW}@h/db?sslmode=verify-ca`,
    `postgresql://u:${PW}@h/db?sslmode=maybe`,
    `postgresql://u:${PW}@h/db?sslmode=require&sslrootcert=/nonexistent/ca.pem`,
  ];
  for (const value of refused) {
    it(`refuses ${value} without repeating it`, () => {
      expect(messageOf(() => checkPostgresUrl('DATABASE_URL', src(value)))).not.toContain(PW);
    });
  }

  it('says which unencoded character cut the password short', () => {
    expect(messageOf(() => checkPostgresUrl('DATABASE_URL', src('postgresql://u:ab/cd@h/db')))).toMatch(
      /contains \/ \(%2F\) unencoded/,
    );
    expect(messageOf(() => checkPostgresUrl('DATABASE_URL', src('postgresql://u:ab#cd@h/db')))).toMatch(/%23/);
  });

  it('accepts a Unix socket with credentials, as psql and pg do', () => {
    const url = 'postgresql://u:pw@/db?host=/run/postgresql&port=5433';
    expect(checkPostgresUrl('DATABASE_URL', src(url))).toBe(url);
    expect(describePostgres(url)).toBe('/run/postgresql:5433/db');
  });

  it('gives sslmode=require psql semantics (no SECURITY WARNING from pg)', () => {
    expect(checkPostgresUrl('DATABASE_URL', src('postgresql://u@h/db?sslmode=require'))).toBe(
      'postgresql://u@h/db?sslmode=require&uselibpqcompat=true',
    );
    expect(checkPostgresUrl('DATABASE_URL', src('postgresql://u@h/db'), { requireTls: true })).toBe(
      'postgresql://u@h/db?sslmode=require&uselibpqcompat=true',
    );
    expect(checkPostgresUrl('DATABASE_URL', src('postgresql://u@h/db?sslmode=verify-full'))).toBe(
      'postgresql://u@h/db?sslmode=verify-full',
    );
  });
});

describe('Redis URLs', () => {
  it('reads the database index and refuses one that is not a whole number', () => {
    expect(parseRedisUrl('REDIS_URL', src('redis://:pw@h:6380/7')).db).toBe(7);
    expect(parseRedisUrl('REDIS_URL', src('redis://h')).db).toBe(0);
    for (const bad of ['/abc', '/-1', '/1/2', '/1.5', '/99999999999']) {
      expect(messageOf(() => parseRedisUrl('REDIS_URL', src(`redis://:${PW}@h:6379${bad}`)))).toMatch(/database index/);
    }
  });
  it('refuses a scheme typo without repeating the value', () => {
    expect(messageOf(() => parseRedisUrl('REDIS_URL', src(`redis//:${PW}@h:6379/0`)))).not.toContain(PW);
  });
});

describe('configuration files never echo what they hold', () => {
  const dir = () => mkdtempSync(join(tmpdir(), 'dbops-urls-'));

  it('a broken config file is reported by line and column, not by quoting it', () => {
    const cwd = dir();
    writeFileSync(join(cwd, 'dbops.config.json'), `{\n  "databasePassword": ${PW}"\n}`);
    const redactor = new Redactor();
    const msg = messageOf(() => resolveConfig({ cwd, env: {}, redactor }));
    expect(msg).toMatch(/line 2, column 23: invalid symbol/);
    expect(msg).not.toMatch(/Cn4ry|Z9q/);
  });

  it('learns every secret of .env and the config file before validating anything', () => {
    const cwd = dir();
    writeFileSync(join(cwd, '.env'), `DATABASE_URL="postgresql://u:${PW} a#b@h/db"\nDATABASE_POOL_SIZE=lots\n`);
    writeFileSync(join(cwd, 'dbops.config.json'), JSON.stringify({ redisUrl: `redis://:${PW}-file@h/0` }));
    const redactor = new Redactor();
    expect(() => resolveConfig({ cwd, env: {}, redactor })).toThrow(/DATABASE_POOL_SIZE="lots"/);
    expect(redactor.redact(`${PW} a#b and ${PW}-file`)).toBe('*** and ***');
  });

  it('a DATABASE_HOST that is not a host is refused, not silently replaced by localhost', () => {
    expect(
      messageOf(() => resolveConfig({ cwd: dir(), env: { DATABASE_HOST: `u:${PW}@db`, DATABASE_PASSWORD: PW } })),
    ).toMatch(/DATABASE_HOST .* is not a host name/);
  });

  it('a DATABASE_HOST that is a socket folder becomes ?host=', () => {
    const cfg = resolveConfig({
      cwd: dir(),
      env: { DATABASE_HOST: '/run/postgresql', DATABASE_USER: 'app', DATABASE_PASSWORD: 'p w' },
    });
    expect(cfg.database?.url).toBe('postgresql://app:p%20w@/postgres?host=%2Frun%2Fpostgresql');
  });
});

describe('durations', () => {
  it('are range-checked against what a timer and statement_timeout take', () => {
    expect(durationArg('5s')).toBe(5000);
    expect(durationArg('596h')).toBe(2_145_600_000);
    expect(() => durationArg('597h')).toThrow(/must be from 0ms to 2147483647ms/);
    expect(() => durationArg('9999999h')).toThrow();
    expect(() => durationIn(100, 600_000)('0')).toThrow(/from 100ms to 10m/);
  });
});
