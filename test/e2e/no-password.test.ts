/**
 * No password in any output: every command group, against every failure we can provoke
 * (closed port, wrong password on a real server, wrong Redis password), with and without
 * --verbose (stack traces) and --json. One unique password per run, searched in all output.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, runDbops } from '../helpers/cli.js';
import { freePort, type RedisServer, startRedis } from '../helpers/servers.js';
import { createTestDatabase, services, type TestDatabase } from '../helpers/services.js';

const SECRET = `Leak-Canary-${process.pid}-q9Z`;

const COMMANDS: string[][] = [
  ['doctor'],
  ['config'],
  ['migrate', 'status'],
  ['migrate', 'up'],
  ['migrate', 'validate'],
  ['slow-queries'],
  ['pool'],
  ['locks'],
  ['cache', 'stats'],
  ['cache', 'keys', 'user:*'],
  ['cache', 'flush', 'user:*', '--yes'],
];

describe('no password in any output', () => {
  let db: TestDatabase;
  let redis: RedisServer;
  let closed: number;
  beforeAll(async () => {
    db = await createTestDatabase();
    redis = await startRedis(['--requirepass', 'the-real-redis-pw']);
    closed = await freePort();
  });
  afterAll(async () => {
    await db.drop();
    await redis.stop();
  });

  const scenarios = () => ({
    'closed ports': {
      DATABASE_URL: `postgresql://app:${SECRET}@127.0.0.1:${closed}/x`,
      REDIS_URL: `redis://default:${SECRET}@127.0.0.1:${closed}/0`,
      PGBOUNCER_ADMIN_URL: `postgresql://admin:${SECRET}@127.0.0.1:${closed}/pgbouncer`,
    },
    'wrong passwords on real servers': {
      DATABASE_URL: `postgresql://dbops_app:${SECRET}@127.0.0.1:${db.port}/${db.name}`,
      REDIS_URL: `redis://default:${SECRET}@127.0.0.1:${redis.port}/0`,
      PGBOUNCER_ADMIN_URL: `postgresql://nobody:${SECRET}@127.0.0.1:${services().pgbouncer.port}/pgbouncer`,
    },
    'parts with DATABASE_PASSWORD': {
      DATABASE_HOST: '127.0.0.1',
      DATABASE_PORT: String(db.port),
      DATABASE_NAME: db.name,
      DATABASE_USER: 'dbops_app',
      DATABASE_PASSWORD: SECRET,
      REDIS_URL: `redis://:${SECRET}@127.0.0.1:${redis.port}/0`,
    },
  });

  for (const name of ['closed ports', 'wrong passwords on real servers', 'parts with DATABASE_PASSWORD'] as const) {
    it(`${name}: every command fails without printing the password`, { timeout: 300_000 }, async () => {
      const env = cleanEnv(scenarios()[name]);
      for (const command of COMMANDS) {
        for (const extra of [['--verbose'], ['--json']]) {
          const r = await runDbops([...command, '--timeout', '2s', ...extra], { env });
          const all = r.stdout + r.stderr;
          expect(all, `${command.join(' ')} ${extra.join(' ')}`).not.toContain(SECRET);
          expect(all).not.toContain(encodeURIComponent(SECRET));
          if (command[0] !== 'config') expect(r.code, `${command.join(' ')} ${extra.join(' ')}: ${r.stderr}`).not.toBe(0);
        }
      }
    });
  }

  it('a password with unencoded URL-special characters is never printed either', async () => {
    const special = `Sp/ec#ial?@Pw-${process.pid}`;
    const env = cleanEnv({
      DATABASE_URL: `postgresql://app:${special}@127.0.0.1:${closed}/x`,
      REDIS_URL: `redis://default:${special}@127.0.0.1:${closed}/0`,
      DIRECT_DATABASE_URL: `postgresql://app:${special}@127.0.0.1:${closed}/x`,
    });
    for (const command of COMMANDS) {
      for (const extra of [['--verbose'], ['--json']]) {
        const r = await runDbops([...command, '--timeout', '2s', ...extra], { env });
        const all = r.stdout + r.stderr;
        for (const piece of [special, 'Sp/ec#ial', encodeURIComponent(special)]) expect(all, `${command.join(' ')} ${extra.join(' ')}`).not.toContain(piece);
      }
    }
    const flag = await runDbops(['doctor', '--database-url', `postgres://u:${special}@127.0.0.1:${closed}/db`, '--timeout', '2s']);
    expect(flag.stdout + flag.stderr).not.toContain('Sp/ec#ial');
  }, 300_000);
});
