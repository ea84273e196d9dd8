/**
 * Connection strings as psql, pg and ioredis read them (issue 12): a Unix socket with credentials
 * works; a Redis database index is validated up front and a refused SELECT stops dbops before it
 * touches database 0; TLS modes print no warning of pg's. The built CLI, as a process, on real servers.
 */
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, runDbops } from '../helpers/cli.js';
import { type PgServer, type RedisServer, scratchDir, startPostgres, startRedis } from '../helpers/servers.js';
import { uniqueName } from '../helpers/services.js';

describe('a Unix socket with credentials', () => {
  let server: PgServer;
  let socketDir: string;
  beforeAll(async () => {
    socketDir = scratchDir('sock');
    server = await startPostgres('embedded', { unix_socket_directories: socketDir });
    const admin = new pg.Client({ connectionString: server.url() });
    await admin.connect();
    // Over TCP this role needs its password (scram); over the socket the test server trusts it.
    await admin.query(`CREATE ROLE sock_user LOGIN PASSWORD 'the-real-one'`);
    await admin.end();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  });

  it('postgresql://user:pw@/db?host=/dir is accepted and connects through the socket, as psql does', async () => {
    // A wrong password: only the socket (trusted) lets it in, so success proves the socket was used.
    const url = `postgresql://sock_user:not-the-password@/postgres?host=${encodeURIComponent(socketDir)}&port=${server.port}`;
    const r = await runDbops(['doctor', '--json'], { env: cleanEnv({ CI: 'true', DATABASE_URL: url }) });
    expect(r.stderr).not.toMatch(/not a valid URL/);
    const doc = JSON.parse(r.stdout) as { components: Array<{ component: string; ok: boolean; endpoint: string }> };
    const postgres = doc.components.find((c) => c.component === 'postgres');
    expect(postgres?.ok, r.stdout).toBe(true);
    expect(postgres?.endpoint).toBe(`${socketDir}:${server.port}/postgres`);
    expect(r.stdout + r.stderr).not.toContain('not-the-password');

    const tcp = `postgresql://sock_user:not-the-password@127.0.0.1:${server.port}/postgres`;
    const refused = await runDbops(['doctor'], { env: cleanEnv({ CI: 'true', DATABASE_URL: tcp }) });
    expect(refused.code).toBe(5);
  });

  it('DATABASE_HOST=/dir (a socket folder) works the same way', async () => {
    const env = cleanEnv({
      CI: 'true',
      DATABASE_HOST: socketDir,
      DATABASE_PORT: String(server.port),
      DATABASE_USER: 'sock_user',
      DATABASE_PASSWORD: 'not the password',
      DATABASE_NAME: 'postgres',
    });
    const r = await runDbops(['doctor', '--json'], { env });
    expect(r.code, r.stderr).toBe(0);
  });

  it('sslmode=require means what it means to psql, and pg prints no SECURITY WARNING', async () => {
    // The embedded server has no TLS: the attempt fails at the server's answer, after the URL was read.
    const url = `postgresql://sock_user:x@127.0.0.1:${server.port}/postgres?sslmode=require`;
    const r = await runDbops(['migrate', 'status', '--timeout', '2s'], {
      env: cleanEnv({ CI: 'true', DATABASE_URL: url }),
    });
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/does not support SSL/);
    expect(r.stderr).not.toMatch(/SECURITY WARNING|Warning/);
    const config = await runDbops(['config', '--json'], {
      env: cleanEnv({ CI: 'true', DATABASE_URL: url.replace('?sslmode=require', ''), DATABASE_SSL: 'true' }),
    });
    expect((JSON.parse(config.stdout) as { database: { url: string } }).database.url).toMatch(
      /sslmode=require&uselibpqcompat=true$/,
    );
  });
});

describe('the Redis database index', () => {
  let redis: RedisServer;
  let admin: Redis;
  const pw = `redis-pw-${process.pid}`;
  beforeAll(async () => {
    redis = await startRedis(['--requirepass', pw]);
    admin = new Redis({ port: redis.port, host: '127.0.0.1', password: pw });
  });
  afterAll(async () => {
    admin?.disconnect();
    await redis?.stop();
  });
  const url = (db: string) => `redis://:${pw}@127.0.0.1:${redis.port}/${db}`;

  it('/abc is a usage error (exit 2) with one JSON document, not a crash with a stack', async () => {
    const r = await runDbops(['cache', 'stats', '--json'], { env: cleanEnv({ CI: 'true', REDIS_URL: url('abc') }) });
    expect(r.code).toBe(2);
    const doc = JSON.parse(r.stdout) as { ok: boolean; error: { code: string; message: string; hint: string } };
    expect(doc.error.code).toBe('CONFIG');
    expect(doc.error.message).toMatch(/database index/);
    expect(r.stderr).not.toMatch(/ReplyError|\n\s+at /);
  });

  it('/999 (refused by the server) stops dbops before it deletes anything in database 0', async () => {
    const prefix = uniqueName('db999');
    await admin.select(0);
    await admin.mset(`${prefix}:1`, 'a', `${prefix}:2`, 'b', `${prefix}:3`, 'c');
    const r = await runDbops(['cache', 'flush', `${prefix}:*`, '--yes'], {
      env: cleanEnv({ CI: 'true', REDIS_URL: url('999') }),
    });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/selects database 999, which .* does not have/);
    expect(await admin.exists(`${prefix}:1`, `${prefix}:2`, `${prefix}:3`)).toBe(3);
  });

  it('/3 flushes in database 3 only', async () => {
    const prefix = uniqueName('db3');
    await admin.select(0);
    await admin.set(`${prefix}:zero`, 'kept');
    await admin.select(3);
    await admin.mset(`${prefix}:a`, '1', `${prefix}:b`, '2');
    const r = await runDbops(['cache', 'flush', `${prefix}:*`, '--yes', '--json'], {
      env: cleanEnv({ CI: 'true', REDIS_URL: url('3') }),
    });
    expect(r.code, r.stderr).toBe(0);
    expect(await admin.exists(`${prefix}:a`, `${prefix}:b`)).toBe(0);
    await admin.select(0);
    expect(await admin.get(`${prefix}:zero`)).toBe('kept');
  });
});

describe('unencoded characters in a password', () => {
  it('an "@" and "/" in the password is named, not reported as an unknown host', async () => {
    const r = await runDbops(['migrate', 'status'], {
      env: cleanEnv({ CI: 'true', DATABASE_URL: 'postgresql://app:p@ss/w0rd@127.0.0.1:1/db' }),
      cwd: join(scratchDir('enc')),
    });
    expect(r.code).toBe(2);
    expect(r.stderr).not.toMatch(/ENOTFOUND|getaddrinfo/);
    expect(r.stderr).toMatch(/password was cut short/);
    expect(r.stderr).toMatch(/percent-encode/);
    expect(r.stderr).not.toMatch(/w0rd/);
  });
});
