/**
 * The bad-input suite (issue 12): 150+ bad inputs across every command and every source of
 * configuration (flag, environment, `.env`, config file, DATABASE_* parts), each run three times as
 * the built CLI, as a process, against real servers: plain (with GitHub annotations on), `--json`
 * and `--verbose`. A unique canary password is put in every place a password can go, and every run
 * is checked:
 *
 * - the exit code is the case's expected one, documented in docs/exit-codes.md, and never 0;
 * - no stack trace without --verbose, no process warning (TimeoutOverflowWarning, pg's SECURITY WARNING);
 * - no piece of any canary in stdout or stderr (each canary is two random halves, checked apart,
 *   so a truncated echo such as a JSON parser's context is caught as well as every encoding);
 * - a hint; with --json exactly one JSON document on stdout;
 * - no hang (each run is killed after RUN_LIMIT_MS).
 *
 * This file replaces test/e2e/no-password.test.ts (its scenarios are cases here). The figures are
 * printed at the end; docs/reliability.md has them with the suite's duration.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SETTINGS, type SettingName } from '../../src/config/config.js';
import { DEFAULT_HINTS } from '../../src/errors.js';
import { cleanEnv, ROOT, runDbops } from '../helpers/cli.js';
import { freePort, type RedisServer, startRedis } from '../helpers/servers.js';
import { createTestDatabase, services, type TestDatabase } from '../helpers/services.js';

/** A run slower than this is a hang (every case's own --timeout is 1-2 s). */
const RUN_LIMIT_MS = 30_000;
/** CLI processes at once: the machine has 2 cores, shared. */
const PARALLEL = 4;
const REDIS_PW = `real-redis-${randomBytes(4).toString('hex')}`;

const documentedCodes = new Set(
  [...readFileSync(join(ROOT, 'docs/exit-codes.md'), 'utf8').matchAll(/^\|\s*(\d+)\s*\|/gm)].map((m) => Number(m[1])),
);
const genericHints = new Set<string>(Object.values(DEFAULT_HINTS));

// ---------------------------------------------------------------------------------------------
// What a case can use

type Source = 'flag' | 'env' | 'dotenv' | 'file';
const SEPARATORS = ['-', ' ', '#', '/', '@', '?', ':', '"', '%', '\\', '+', '&', '=', "'", ';', '!'];

function half(): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';
  const bytes = randomBytes(7);
  return `Q${[...bytes].map((b) => alphabet[b % alphabet.length]).join('')}`;
}

interface Ports {
  pg: number;
  db: string;
  closed: number;
  silent: number;
  redis: number;
  bouncer: number;
}

/** One case's world: its canaries, where its values go, its working directory. */
class Ctx {
  readonly halves: string[] = [];
  readonly env: Record<string, string> = {};
  readonly argv: string[] = [];
  readonly dotenv: string[] = [];
  readonly file: Record<string, unknown> = {};
  readonly provided = new Set<string>();
  readonly setups: Array<() => Promise<void>> = [];
  configText: string | undefined;
  private n = 0;

  constructor(
    readonly ports: Ports,
    readonly index: number,
  ) {}

  /** A fresh canary password; its separator varies by case, so every special character is covered. */
  pw(): string {
    const a = half();
    const b = half();
    this.halves.push(a, b);
    const sep = SEPARATORS[(this.index + this.n++) % SEPARATORS.length] as string;
    return `${a}${sep}${b}`;
  }
  /** A fresh canary, percent-encoded for a URL. */
  epw(): string {
    return encodeURIComponent(this.pw());
  }

  /** The config file's whole text (broken on purpose). */
  text(configText: string): void {
    this.configText = configText;
  }
  /** A raw key of the config file (unknown ones, nested values). */
  key(name: string, value: unknown): void {
    this.file[name] = value;
  }

  /** Put a setting's value in one source (a flag exists for DATABASE_URL and REDIS_URL only). */
  set(name: SettingName | string, value: string, source: Source = 'env', dotenvQuoted = true): this {
    this.provided.add(name);
    if (source === 'flag') {
      const flag = (SETTINGS[name as SettingName] as { flag?: string } | undefined)?.flag;
      if (!flag) throw new Error(`no flag for ${name}`);
      this.argv.push(flag, value);
    } else if (source === 'env') this.env[name] = value;
    else if (source === 'dotenv') this.dotenv.push(dotenvQuoted ? `${name}=\`${value}\`` : `${name}=${value}`);
    else this.file[(SETTINGS[name as SettingName] as { key: string } | undefined)?.key ?? name] = value;
    return this;
  }

  // URLs with a canary password, to each kind of endpoint
  closedPg(): string {
    return `postgresql://app:${this.epw()}@127.0.0.1:${this.ports.closed}/x`;
  }
  /** postgres is trusted from 127.0.0.1: the canary is ignored by the server and the connection works. */
  goodPg(): string {
    return `postgresql://postgres:${this.epw()}@127.0.0.1:${this.ports.pg}/${this.ports.db}`;
  }
  /** dbops_app needs its real password (scram): the login fails. */
  wrongPg(): string {
    return `postgresql://dbops_app:${this.epw()}@127.0.0.1:${this.ports.pg}/${this.ports.db}`;
  }
  closedRedis(): string {
    return `redis://default:${this.epw()}@127.0.0.1:${this.ports.closed}/0`;
  }
  wrongRedis(): string {
    return `redis://default:${this.epw()}@127.0.0.1:${this.ports.redis}/0`;
  }
  /** An ACL user whose password is a canary: logs in for real. */
  goodRedis(db = 0): string {
    const user = `u${this.index}x${this.n}`;
    const pw = this.pw();
    this.setups.push(async () => {
      const admin = new Redis({ port: this.ports.redis, host: '127.0.0.1', password: REDIS_PW, lazyConnect: true });
      await admin.connect();
      await admin.call('ACL', 'SETUSER', user, 'on', `>${pw}`, '~*', '&*', '+@all');
      admin.disconnect();
    });
    return `redis://${user}:${encodeURIComponent(pw)}@127.0.0.1:${this.ports.redis}/${db}`;
  }
  closedBouncer(): string {
    return `postgresql://admin:${this.epw()}@127.0.0.1:${this.ports.closed}/pgbouncer`;
  }
}

interface Case {
  name: string;
  /** The command line (global options of the variant are added). */
  argv: string[];
  /** Expected exit code. */
  exit: number;
  build?: (c: Ctx) => void;
  /** --timeout for the run (default 2s). */
  timeout?: string;
  /** Leave the database unconfigured (the case is about that). */
  noDatabase?: boolean;
}

// ---------------------------------------------------------------------------------------------
// The cases

const COMMANDS: string[][] = [
  ['doctor'],
  ['config'],
  ['migrate', 'status'],
  ['migrate', 'up'],
  ['migrate', 'validate'],
  ['migrate', 'down', '--yes'],
  ['migrate', 'unlock', '--yes'],
  ['slow-queries'],
  ['pool'],
  ['locks'],
  ['cache', 'stats'],
  ['cache', 'keys', 'user:*'],
  ['cache', 'flush', 'user:*', '--yes'],
];
const REDIS_COMMANDS = COMMANDS.filter((c) => c[0] === 'cache');
const pick = <T>(list: T[], i: number): T => list[i % list.length] as T;

const cases: Case[] = [];
const add = (c: Case) => cases.push(c);

// A. Malformed PostgreSQL URLs, from every source, in every PostgreSQL setting.
const PG_SHAPES: Array<[string, (c: Ctx) => string]> = [
  ['no scheme', (c) => `canary_user:${c.pw()}@127.0.0.1:${c.ports.pg}/bi`],
  ['postgresql// (no colon)', (c) => `postgresql//u:${c.epw()}@127.0.0.1:${c.ports.pg}/bi`],
  ['postgres:/ (one slash)', (c) => `postgres:/u:${c.epw()}@127.0.0.1:${c.ports.pg}/bi`],
  ['postgresql:user:pw@ (opaque)', (c) => `postgresql:user:${c.epw()}@127.0.0.1:${c.ports.pg}/bi`],
  ['mysql://', (c) => `mysql://u:${c.epw()}@127.0.0.1:3306/bi`],
  ['unencoded space and #', (c) => `postgresql://u:${c.pw()} a#b${c.pw()}@127.0.0.1:${c.ports.pg}/bi`],
  ['unencoded / after a numeric start', (c) => `postgresql://u:12/${c.pw()}@127.0.0.1:${c.ports.pg}/bi`],
  ['unencoded @ and /', (c) => `postgresql://u:${c.pw()}@x/${c.pw()}@127.0.0.1:${c.ports.pg}/bi`],
  ['port out of range', (c) => `postgresql://u:${c.epw()}@127.0.0.1:99999/bi`],
  [
    'verify-ca without sslrootcert, sslpassword',
    (c) => `postgresql://u:${c.epw()}@127.0.0.1:${c.ports.pg}/bi?sslmode=verify-ca&sslpassword=${c.epw()}`,
  ],
  [
    'sslrootcert that does not exist',
    (c) => `postgresql://u:${c.epw()}@127.0.0.1:${c.ports.pg}/bi?sslmode=require&sslrootcert=/nonexistent/ca.pem`,
  ],
  ['credentials without a host', (c) => `postgresql://u:${c.epw()}@/bi`],
  ['leading space', (c) => ` postgresql://u:${c.epw()}@127.0.0.1:${c.ports.pg}/bi`],
];
const PG_TARGETS: Array<[SettingName, Source[]]> = [
  ['DATABASE_URL', ['flag', 'env', 'dotenv', 'file']],
  ['DIRECT_DATABASE_URL', ['env', 'dotenv', 'file']],
  ['PGBOUNCER_ADMIN_URL', ['env', 'dotenv', 'file']],
];
{
  const combos = PG_TARGETS.flatMap(([name, sources]) => sources.map((source) => [name, source] as const));
  PG_SHAPES.forEach(([shape, make], i) => {
    // Each shape from three (setting, source) pairs, rotating, so every pair meets several shapes.
    for (let k = 0; k < 3; k++) {
      const [name, source] = combos[(i * 3 + k) % combos.length] as (typeof combos)[number];
      const argv = pick(COMMANDS, i * 3 + k);
      add({
        name: `${name} from ${source}: ${shape} (${argv.join(' ')})`,
        argv,
        exit: 2,
        build: (c) => void c.set(name, make(c), source),
      });
    }
  });
}

// A'. Malformed Redis URLs, from every source.
const REDIS_SHAPES: Array<[string, (c: Ctx) => string]> = [
  ['redis// (no colon)', (c) => `redis//:${c.epw()}@127.0.0.1:${c.ports.redis}/0`],
  ['rediss:/ (one slash)', (c) => `rediss:/:${c.epw()}@127.0.0.1:${c.ports.redis}/0`],
  ['http://', (c) => `http://:${c.epw()}@127.0.0.1:${c.ports.redis}/0`],
  ['database index abc', (c) => `redis://:${c.epw()}@127.0.0.1:${c.ports.redis}/abc`],
  ['unencoded space and #', (c) => `redis://:${c.pw()} x#y${c.pw()}@127.0.0.1:${c.ports.redis}/0`],
  ['unencoded /', (c) => `redis://:1/${c.pw()}@127.0.0.1:${c.ports.redis}/0`],
];
REDIS_SHAPES.forEach(([shape, make], i) => {
  (['flag', 'env', 'dotenv', 'file'] as const)
    .filter((_, k) => k !== i % 4)
    .forEach((source, k) => {
      const argv = pick(REDIS_COMMANDS.concat([['config'], ['doctor']]), i + k);
      add({
        name: `REDIS_URL from ${source}: ${shape} (${argv.join(' ')})`,
        argv,
        exit: 2,
        build: (c) => void c.set('REDIS_URL', make(c), source),
      });
    });
});

// B. Real servers refusing, or nothing there: every command (the former no-password suite).
const SCENARIOS: Array<[string, (c: Ctx, source: Source) => void, (argv: string[]) => number]> = [
  [
    'closed ports',
    (c, s) => {
      c.set('DATABASE_URL', c.closedPg(), s === 'flag' ? 'flag' : s);
      c.set('REDIS_URL', c.closedRedis(), s === 'file' ? 'file' : 'env');
      c.set('PGBOUNCER_ADMIN_URL', c.closedBouncer(), s === 'flag' ? 'env' : s);
    },
    (argv) => (argv[0] === 'config' ? 0 : 5),
  ],
  [
    'wrong passwords on real servers',
    (c, s) => {
      c.set('DATABASE_URL', c.wrongPg(), s);
      c.set('REDIS_URL', c.wrongRedis(), s === 'flag' ? 'env' : s);
      c.set('PGBOUNCER_ADMIN_URL', `postgresql://nobody:${c.epw()}@127.0.0.1:${c.ports.pg}/pgbouncer`, 'env');
    },
    (argv) => (argv[0] === 'config' ? 0 : 5),
  ],
  [
    'DATABASE_* parts with a wrong DATABASE_PASSWORD',
    (c, s) => {
      const src = s === 'flag' ? 'env' : s;
      c.set('DATABASE_HOST', '127.0.0.1', src)
        .set('DATABASE_PORT', String(c.ports.pg), src)
        .set('DATABASE_NAME', c.ports.db, src);
      c.set('DATABASE_USER', 'dbops_app', src).set('DATABASE_PASSWORD', c.pw(), src);
      c.set('REDIS_URL', `redis://:${c.epw()}@127.0.0.1:${c.ports.redis}/0`, src);
    },
    (argv) => (argv[0] === 'config' ? 0 : 5),
  ],
];
SCENARIOS.forEach(([scenario, build, exit], i) => {
  COMMANDS.forEach((argv, k) => {
    const source = pick(['env', 'flag', 'dotenv', 'file'] as const, i + k);
    add({
      name: `${scenario}, from ${source}: ${argv.join(' ')}`,
      argv,
      exit: exit(argv),
      build: (c) => build(c, source),
    });
  });
});

// C. One server-side failure each.
const server: Case[] = [
  {
    name: 'no password for a role that needs one (SASL)',
    argv: ['migrate', 'status'],
    exit: 5,
    build: (c) =>
      void c.set('DATABASE_URL', `postgresql://dbops_app@127.0.0.1:${c.ports.pg}/${c.ports.db}?sslpassword=${c.epw()}`),
  },
  {
    name: 'unknown database',
    argv: ['migrate', 'up'],
    exit: 5,
    build: (c) =>
      void c.set('DATABASE_URL', `postgresql://postgres:${c.epw()}@127.0.0.1:${c.ports.pg}/no_such_db_here`, 'dotenv'),
  },
  {
    name: 'unknown user',
    argv: ['pool'],
    exit: 5,
    build: (c) =>
      void c.set('DATABASE_URL', `postgresql://ghost:${c.epw()}@127.0.0.1:${c.ports.pg}/${c.ports.db}`, 'file'),
  },
  {
    name: 'sslmode=require on a server without TLS',
    argv: ['doctor'],
    exit: 5,
    build: (c) => void c.set('DATABASE_URL', `${c.goodPg()}?sslmode=require`),
  },
  {
    name: 'DATABASE_SSL=true on a server without TLS',
    argv: ['migrate', 'status'],
    exit: 5,
    build: (c) => void c.set('DATABASE_URL', c.goodPg()).set('DATABASE_SSL', 'true', 'dotenv'),
  },
  {
    name: 'NODE_ENV=production turns TLS on',
    argv: ['slow-queries'],
    exit: 5,
    build: (c) => void c.set('DATABASE_URL', c.goodPg(), 'file').set('NODE_ENV', 'production'),
  },
  {
    name: 'DATABASE_URL points at Redis',
    argv: ['migrate', 'status'],
    exit: 5,
    build: (c) => void c.set('DATABASE_URL', `postgresql://u:${c.epw()}@127.0.0.1:${c.ports.redis}/db`),
  },
  {
    name: 'REDIS_URL points at PostgreSQL',
    argv: ['cache', 'stats'],
    exit: 5,
    build: (c) => void c.set('REDIS_URL', `redis://:${c.epw()}@127.0.0.1:${c.ports.pg}/0`),
  },
  {
    name: 'PostgreSQL that never answers',
    argv: ['migrate', 'status'],
    exit: 5,
    timeout: '1s',
    build: (c) => void c.set('DATABASE_URL', `postgresql://u:${c.epw()}@127.0.0.1:${c.ports.silent}/db`),
  },
  {
    name: 'Redis that never answers',
    argv: ['cache', 'keys', 'x:*'],
    exit: 5,
    timeout: '1s',
    build: (c) => void c.set('REDIS_URL', `redis://:${c.epw()}@127.0.0.1:${c.ports.silent}/0`, 'dotenv'),
  },
  {
    name: 'PgBouncer console that never answers',
    argv: ['doctor'],
    exit: 5,
    timeout: '1s',
    build: (c) =>
      void c
        .set('DATABASE_URL', c.goodPg())
        .set('PGBOUNCER_ADMIN_URL', `postgresql://a:${c.epw()}@127.0.0.1:${c.ports.silent}/pgbouncer`),
  },
  {
    name: 'Redis database 999',
    argv: ['cache', 'flush', 'user:*', '--yes'],
    exit: 2,
    build: (c) => void c.set('REDIS_URL', c.goodRedis(999)),
  },
  {
    name: 'Redis database 999 from the flag',
    argv: ['cache', 'keys', 'user:*'],
    exit: 2,
    build: (c) => void c.set('REDIS_URL', c.goodRedis(999), 'flag'),
  },
  {
    name: 'Redis password given, none required by the user',
    argv: ['cache', 'stats'],
    exit: 5,
    build: (c) => void c.set('REDIS_URL', `redis://nobody:${c.epw()}@127.0.0.1:${c.ports.redis}/0`, 'file'),
  },
  {
    name: 'Redis without a password where one is required',
    argv: ['doctor'],
    exit: 5,
    build: (c) => void c.set('REDIS_URL', `redis://127.0.0.1:${c.ports.redis}/0`).set('DATABASE_URL', c.goodPg()),
  },
  {
    name: 'PgBouncer console with a wrong database',
    argv: ['doctor'],
    exit: 5,
    build: (c) =>
      void c
        .set('DATABASE_URL', c.goodPg())
        .set('PGBOUNCER_ADMIN_URL', `postgresql://postgres:${c.epw()}@127.0.0.1:${c.ports.bouncer}/nope`),
  },
  {
    name: 'DIRECT_DATABASE_URL wrong while DATABASE_URL works',
    argv: ['migrate', 'up'],
    exit: 5,
    build: (c) => void c.set('DATABASE_URL', c.goodPg(), 'dotenv').set('DIRECT_DATABASE_URL', c.wrongPg(), 'dotenv'),
  },
  {
    name: 'DATABASE_HOST that does not resolve',
    argv: ['locks'],
    exit: 5,
    timeout: '1s',
    build: (c) => void c.set('DATABASE_HOST', 'no-such-host.invalid').set('DATABASE_PASSWORD', c.pw(), 'file'),
  },
];
for (const c of server) add(c);

// D. Configuration files and values.
const config: Case[] = [
  {
    name: 'config file: broken JSON right after a password',
    argv: ['migrate', 'status'],
    exit: 2,
    build: (c) => c.text(`{\n  "databasePassword": ${c.pw()}",\n  "databaseHost": "127.0.0.1"\n}`),
  },
  {
    name: 'config file: broken JSON inside a URL',
    argv: ['config'],
    exit: 2,
    build: (c) => c.text(`{"databaseUrl": "postgresql://u:${c.epw()}@h/db" "redisUrl": 1}`),
  },
  {
    name: 'config file: trailing comma after a password',
    argv: ['cache', 'stats'],
    exit: 2,
    build: (c) => c.text(`{"redisUrl": "redis://:${c.epw()}@h:1/0",}`),
  },
  {
    name: 'config file: a JSON array',
    argv: ['doctor'],
    exit: 2,
    build: (c) => c.text(JSON.stringify([`postgresql://u:${c.epw()}@h/db`])),
  },
  {
    name: 'config file: unknown key holding a password',
    argv: ['pool'],
    exit: 2,
    build: (c) => c.key('dbPassword', c.pw()),
  },
  {
    name: 'config file: a nested object holding a password',
    argv: ['locks'],
    exit: 2,
    build: (c) => c.key('databaseUrl', { password: c.pw() }),
  },
  {
    name: '--config file that does not exist',
    argv: ['--config', 'nope.json', 'config'],
    exit: 2,
    build: (c) => void c.set('DATABASE_URL', c.closedPg()),
  },
  {
    name: '--config is a folder',
    argv: ['--config', '.', 'migrate', 'status'],
    exit: 2,
    build: (c) => void c.set('DATABASE_URL', c.closedPg()),
  },
  {
    name: 'DATABASE_POOL_SIZE=lots (env)',
    argv: ['pool'],
    exit: 2,
    build: (c) => void c.set('DATABASE_URL', c.goodPg()).set('DATABASE_POOL_SIZE', 'lots'),
  },
  {
    name: 'DATABASE_POOL_SIZE=0 (.env)',
    argv: ['pool'],
    exit: 2,
    build: (c) => void c.set('DATABASE_URL', c.goodPg(), 'dotenv').set('DATABASE_POOL_SIZE', '0', 'dotenv'),
  },
  {
    name: 'DATABASE_POOL_SIZE=-5 (config file)',
    argv: ['config'],
    exit: 2,
    build: (c) => void c.set('DATABASE_URL', c.goodPg(), 'file').set('DATABASE_POOL_SIZE', '-5', 'file'),
  },
  {
    name: 'DBOPS_CONNECT_TIMEOUT_MS=0',
    argv: ['doctor'],
    exit: 2,
    build: (c) => void c.set('DATABASE_URL', c.closedPg()).set('DBOPS_CONNECT_TIMEOUT_MS', '0'),
  },
  {
    name: 'DBOPS_CONNECT_TIMEOUT_MS=9999999999 (.env)',
    argv: ['migrate', 'status'],
    exit: 2,
    build: (c) => void c.set('DBOPS_CONNECT_TIMEOUT_MS', '9999999999', 'dotenv').set('DATABASE_URL', c.closedPg()),
  },
  {
    name: 'DATABASE_PORT=abc',
    argv: ['migrate', 'status'],
    exit: 2,
    build: (c) => void c.set('DATABASE_HOST', '127.0.0.1').set('DATABASE_PORT', 'abc').set('DATABASE_PASSWORD', c.pw()),
  },
  {
    name: 'DATABASE_PORT=70000 (config file)',
    argv: ['config'],
    exit: 2,
    build: (c) =>
      void c
        .set('DATABASE_HOST', '127.0.0.1', 'file')
        .set('DATABASE_PORT', '70000', 'file')
        .set('DATABASE_PASSWORD', c.pw(), 'file'),
  },
  {
    name: 'DATABASE_PASSWORD without DATABASE_HOST',
    argv: ['migrate', 'up'],
    exit: 2,
    build: (c) => void c.set('DATABASE_PASSWORD', c.pw()),
  },
  {
    name: 'DATABASE_PASSWORD without DATABASE_HOST (.env)',
    argv: ['config'],
    exit: 2,
    build: (c) => void c.set('DATABASE_PASSWORD', c.pw(), 'dotenv'),
  },
  {
    name: 'DATABASE_HOST holding user:password@host',
    argv: ['migrate', 'status'],
    exit: 2,
    build: (c) => void c.set('DATABASE_HOST', `app:${c.pw()}@127.0.0.1`).set('DATABASE_PASSWORD', c.pw()),
  },
  {
    name: 'DATABASE_HOST with a space (config file)',
    argv: ['doctor'],
    exit: 2,
    build: (c) => void c.set('DATABASE_HOST', 'db host', 'file').set('DATABASE_PASSWORD', c.pw(), 'file'),
  },
  {
    name: 'unquoted # in .env cuts the password',
    argv: ['migrate', 'status'],
    exit: 2,
    build: (c) =>
      void c.set('DATABASE_URL', `postgresql://u:${c.pw()}#${c.pw()}@127.0.0.1:${c.ports.pg}/db`, 'dotenv', false),
  },
  // A space is legal in a URL's password (WHATWG encodes it): the login is tried and refused.
  {
    name: 'unquoted space in .env',
    argv: ['cache', 'stats'],
    exit: 5,
    build: (c) => void c.set('REDIS_URL', `redis://:${c.pw()} ${c.pw()}@127.0.0.1:${c.ports.redis}/0`, 'dotenv', false),
  },
  {
    name: 'CI with no database configured',
    argv: ['migrate', 'up'],
    exit: 2,
    noDatabase: true,
    build: (c) => void c.set('REDIS_URL', c.closedRedis()),
  },
  {
    name: 'NODE_ENV=production with no database configured (.env)',
    argv: ['migrate', 'status'],
    exit: 2,
    noDatabase: true,
    build: (c) => void c.set('NODE_ENV', 'production', 'dotenv').set('DATABASE_PASSWORD', c.pw(), 'file'),
  },
  {
    name: 'a password in the sslpassword parameter of a malformed URL',
    argv: ['config'],
    exit: 2,
    build: (c) => void c.set('DATABASE_URL', `postgres:/u@h/db?sslpassword=${c.epw()}`),
  },
  {
    name: 'a bare password given as DATABASE_URL',
    argv: ['config'],
    exit: 2,
    build: (c) => void c.set('DATABASE_URL', c.pw(), 'flag'),
  },
  {
    name: 'a bare password given as REDIS_URL (.env)',
    argv: ['cache', 'stats'],
    exit: 2,
    build: (c) => void c.set('REDIS_URL', c.pw(), 'dotenv'),
  },
  {
    name: 'Redis database index too large',
    argv: ['cache', 'keys', 'a*'],
    exit: 2,
    build: (c) => void c.set('REDIS_URL', `redis://:${c.epw()}@127.0.0.1:${c.ports.redis}/99999999999`, 'file'),
  },
  {
    name: 'DBOPS_MIGRATIONS_DIR is a file',
    argv: ['migrate', 'status'],
    exit: 2,
    build: (c) => void c.set('DATABASE_URL', c.goodPg()).set('DBOPS_MIGRATIONS_DIR', 'not-json.txt'),
  },
  {
    name: 'DBOPS_PRISMA_MIGRATIONS_DIR is a file (.env)',
    argv: ['migrate', 'up'],
    exit: 2,
    build: (c) => void c.set('DATABASE_URL', c.goodPg()).set('DBOPS_PRISMA_MIGRATIONS_DIR', 'not-json.txt', 'dotenv'),
  },
  {
    name: 'Redis URL with a path after the index',
    argv: ['cache', 'stats'],
    exit: 2,
    build: (c) => void c.set('REDIS_URL', `redis://:${c.epw()}@127.0.0.1:${c.ports.redis}/1/2`),
  },
];
for (const c of config) add(c);

// E. Command lines.
const withDb = (c: Ctx) => void c.set('DATABASE_URL', c.goodPg()).set('REDIS_URL', c.goodRedis());
const commandLines: Case[] = [
  { name: '--timeout 9999999h', argv: ['--timeout', '9999999h', 'migrate', 'status'], exit: 2, build: withDb },
  { name: '--timeout 0', argv: ['--timeout', '0', 'doctor'], exit: 2, build: withDb },
  { name: '--timeout soon', argv: ['--timeout', 'soon', 'pool'], exit: 2, build: withDb },
  {
    name: '--transaction-timeout 1000h',
    argv: ['migrate', 'up', '--transaction-timeout', '1000h'],
    exit: 2,
    build: withDb,
  },
  { name: '--lock-timeout 1000h', argv: ['migrate', 'down', '--lock-timeout', '1000h'], exit: 2, build: withDb },
  { name: '--statement-timeout 1000h', argv: ['slow-queries', '--statement-timeout', '1000h'], exit: 2, build: withDb },
  { name: '--query-timeout -1s', argv: ['pool', '--query-timeout', '-1s'], exit: 2, build: withDb },
  { name: '--step abc', argv: ['migrate', 'up', '--step', 'abc'], exit: 2, build: withDb },
  { name: '--step 0', argv: ['migrate', 'down', '--step', '0'], exit: 2, build: withDb },
  { name: '--step with --to', argv: ['migrate', 'up', '--step', '1', '--to', 'x'], exit: 2, build: withDb },
  { name: 'unknown command', argv: ['migrat', 'up'], exit: 2, build: withDb },
  {
    name: 'unknown option carrying a URL',
    argv: ['doctor'],
    exit: 2,
    build: (c) => void c.argv.push(`--databse-url=postgresql://u:${c.epw()}@127.0.0.1:1/db`),
  },
  {
    name: 'unknown option, URL as its own argument',
    argv: ['config'],
    exit: 2,
    build: (c) => void c.argv.push('--databse-url', `postgresql://u:${c.epw()}@127.0.0.1:1/db`),
  },
  {
    name: '--database-url=... with a scheme typo',
    argv: ['migrate', 'status'],
    exit: 2,
    build: (c) => void c.argv.push(`--database-url=postgresql:u:${c.pw()}@127.0.0.1:1/db`),
  },
  {
    name: 'a URL as a stray positional argument',
    argv: ['migrate', 'status'],
    exit: 2,
    build: (c) => void c.argv.push(`postgresql://u:${c.epw()}@127.0.0.1:1/db`),
  },
  {
    name: '--database-url without its value',
    argv: ['config', '--database-url'],
    exit: 2,
    build: (c) => void c.set('REDIS_URL', c.closedRedis()),
  },
  { name: 'cache flush without --yes off a terminal', argv: ['cache', 'flush', 'user:*'], exit: 2, build: withDb },
  { name: "cache flush '*' without --all", argv: ['cache', 'flush', '*', '--yes'], exit: 2, build: withDb },
  { name: 'cache keys --limit -1', argv: ['cache', 'keys', 'a*', '--limit', '-1'], exit: 2, build: withDb },
  { name: 'cache flush --count 0', argv: ['cache', 'flush', 'a:*', '--yes', '--count', '0'], exit: 2, build: withDb },
  {
    name: 'slow-queries --baseline that does not exist',
    argv: ['slow-queries', '--baseline', 'nope.json', '--fail-on-regression', '10'],
    exit: 2,
    build: withDb,
  },
  {
    name: 'slow-queries --since a file that is not JSON',
    argv: ['slow-queries', '--since', 'not-json.txt'],
    exit: 2,
    build: (c) => void withDb(c),
  },
  { name: 'pool --app-instances 0', argv: ['pool', '--app-instances', '0'], exit: 2, build: withDb },
  { name: 'pool --surge 99', argv: ['pool', '--surge', '99'], exit: 2, build: withDb },
  { name: 'migrate create with a bad name', argv: ['migrate', 'create', 'bad name!'], exit: 2, build: withDb },
  {
    name: 'migrate mark-applied of an unknown migration',
    argv: ['migrate', 'mark-applied', '20990101000000_nope'],
    exit: 2,
    build: withDb,
  },
  {
    name: 'migrate down --to an unknown migration',
    argv: ['migrate', 'down', '--yes', '--to', '20990101000000_nope'],
    exit: 2,
    build: withDb,
  },
  // A finding of the CI gate (exit 3), named in its report.
  {
    name: 'migrate validate of an unknown name',
    argv: ['migrate', 'validate', '20990101000000_nope'],
    exit: 2,
    build: withDb,
  },
  { name: 'embedded with an unknown subcommand', argv: ['embedded', 'explode'], exit: 2, build: withDb },
  {
    name: 'slow-queries --reset --all-databases without --yes',
    argv: ['slow-queries', '--reset', '--all-databases'],
    exit: 2,
    build: withDb,
  },
];
for (const c of commandLines) add(c);

// ---------------------------------------------------------------------------------------------
// Running and checking

interface Figures {
  cases: number;
  runs: number;
  stackTraces: number;
  passwordsSeen: number;
  hangs: number;
  undocumentedExitCodes: number;
  exitZeroOnError: number;
  unexpectedExitCodes: number;
  withoutHint: number;
  genericHintOnly: number;
  jsonViolations: number;
  processWarnings: number;
}
const figures: Figures = {
  cases: cases.length,
  runs: 0,
  stackTraces: 0,
  passwordsSeen: 0,
  hangs: 0,
  undocumentedExitCodes: 0,
  exitZeroOnError: 0,
  unexpectedExitCodes: 0,
  withoutHint: 0,
  genericHintOnly: 0,
  jsonViolations: 0,
  processWarnings: 0,
};
const genericHintCases = new Set<string>();
const durations: Array<[number, string]> = [];

let slots = PARALLEL;
const waiting: Array<() => void> = [];
async function limited<T>(fn: () => Promise<T>): Promise<T> {
  if (slots === 0) await new Promise<void>((r) => waiting.push(r));
  else slots--;
  try {
    return await fn();
  } finally {
    const next = waiting.shift();
    if (next) next();
    else slots++;
  }
}

/** Every non-empty `hint` in a JSON document. */
function hintsIn(doc: unknown): string[] {
  if (Array.isArray(doc)) return doc.flatMap(hintsIn);
  if (doc === null || typeof doc !== 'object') return [];
  return Object.entries(doc).flatMap(([k, v]) => (k === 'hint' && typeof v === 'string' && v ? [v] : hintsIn(v)));
}

const STACK_LINE = /^\s+at .+(\(.*:\d+:\d+\)|:\d+:\d+)$/m;
const WARNING = /\(node:\d+\) \[?\w*Warning|SECURITY WARNING|TimeoutOverflowWarning/;

describe('bad input', () => {
  let db: TestDatabase;
  let redis: RedisServer;
  let silent: Server;
  const sockets: Socket[] = [];
  let ports: Ports;
  let started = 0;
  const root = mkdtempSync(join(tmpdir(), 'dbops-bad-input-'));

  beforeAll(async () => {
    started = Date.now();
    db = await createTestDatabase();
    redis = await startRedis(['--requirepass', REDIS_PW]);
    // Accepts connections and never says a word: a server that hangs.
    silent = createServer((s) => {
      sockets.push(s);
      s.on('error', () => {});
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const address = silent.address();
    ports = {
      pg: db.port,
      db: db.name,
      closed: await freePort(),
      silent: typeof address === 'object' && address ? address.port : 0,
      redis: redis.port,
      bouncer: services().pgbouncer.port,
    };
  });

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => silent?.close(r));
    await redis?.stop();
    await db?.drop();
    rmSync(root, { recursive: true, force: true });
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const lines = Object.entries(figures).map(([k, v]) => `  ${k}: ${v}`);
    const report = `bad-input figures (${seconds} s, ${PARALLEL} processes at once):\n${lines.join('\n')}\n${
      genericHintCases.size ? `  generic hint in: ${[...genericHintCases].join('; ')}\n` : ''
    }`;
    const slowest = durations
      .sort((a, b) => b[0] - a[0])
      .slice(0, 5)
      .map(([ms, name]) => `    ${ms} ms  ${name}`);
    const median = durations.map((d) => d[0]).sort((a, b) => a - b)[Math.floor(durations.length / 2)];
    process.stderr.write(`${report}  median run ${median} ms; slowest:\n${slowest.join('\n')}\n`);
    writeFileSync(
      join(tmpdir(), 'dbops-bad-input-figures.json'),
      JSON.stringify({ seconds: Number(seconds), ...figures }, null, 2),
    );
  });

  describe.concurrent.each(cases.map((c, i) => ({ ...c, i })))('$name', (kase) => {
    it('fails cleanly, with a hint, and without any piece of any password', { timeout: 4 * RUN_LIMIT_MS }, async () => {
      const cwd = join(root, `case-${kase.i}`);
      mkdirSync(join(cwd, 'data-migrations'), { recursive: true });
      writeFileSync(join(cwd, 'not-json.txt'), 'this is not JSON');
      const c = new Ctx(ports, kase.i);
      kase.build?.(c);
      // Every place a password can go and the case left empty gets a canary too.
      if (
        ![...c.provided].some((n) => n.startsWith('DATABASE_')) &&
        !c.provided.has('DIRECT_DATABASE_URL') &&
        !kase.noDatabase
      ) {
        c.set('DATABASE_URL', c.closedPg());
      }
      if (!c.provided.has('REDIS_URL')) c.set('REDIS_URL', c.closedRedis());
      if (!c.provided.has('PGBOUNCER_ADMIN_URL')) c.set('PGBOUNCER_ADMIN_URL', c.closedBouncer());
      if (c.dotenv.length) writeFileSync(join(cwd, '.env'), `${c.dotenv.join('\n')}\n`);
      if (c.configText !== undefined) writeFileSync(join(cwd, 'dbops.config.json'), c.configText);
      else if (Object.keys(c.file).length)
        writeFileSync(join(cwd, 'dbops.config.json'), JSON.stringify(c.file, null, 2));
      for (const setup of c.setups) await setup();

      const problems: string[] = [];
      const variants: Array<[string, string[], Record<string, string>]> = [
        ['plain', [], { GITHUB_ACTIONS: 'true' }],
        ['--json', ['--json'], {}],
        ['--verbose', ['--verbose'], {}],
      ];
      await Promise.all(
        variants.map(([variant, flags, extraEnv]) =>
          limited(async () => {
            const args = [...kase.argv, ...c.argv, '--timeout', kase.timeout ?? '2s', ...flags];
            // --timeout after a command line that ends in an option without its value would be taken as it.
            if (kase.argv.at(-1) === '--database-url')
              args.splice(kase.argv.length - 1, 0, ...args.splice(kase.argv.length));
            const env = cleanEnv({ CI: 'true', ...c.env, ...extraEnv });
            const t0 = Date.now();
            const r = await runDbops(args, { cwd, env, timeoutMs: RUN_LIMIT_MS });
            durations.push([Date.now() - t0, `${kase.name} [${variant}]`]);
            figures.runs++;
            const all = `${r.stdout}\n${r.stderr}`;
            const tag = `[${variant}] exit ${r.code}`;
            if (r.signal === 'SIGKILL') {
              figures.hangs++;
              problems.push(`${tag}: hung`);
              return;
            }
            const seen = c.halves.filter((h) => all.includes(h));
            if (seen.length) {
              figures.passwordsSeen++;
              problems.push(`${tag}: canary pieces ${seen.join(', ')} in output:\n${all}`);
            }
            if (variant !== '--verbose' && STACK_LINE.test(all)) {
              figures.stackTraces++;
              problems.push(`${tag}: stack trace without --verbose:\n${r.stderr}`);
            }
            if (WARNING.test(all)) {
              figures.processWarnings++;
              problems.push(`${tag}: process warning:\n${r.stderr}`);
            }
            if (r.code === null || !documentedCodes.has(r.code)) {
              figures.undocumentedExitCodes++;
              problems.push(`${tag}: exit code not in docs/exit-codes.md`);
            }
            if (r.code === 0 && kase.exit !== 0) {
              figures.exitZeroOnError++;
              problems.push(`${tag}: exit 0 on an error:\n${r.stdout}${r.stderr}`);
            }
            if (r.code !== kase.exit) {
              figures.unexpectedExitCodes++;
              problems.push(`${tag}: expected exit ${kase.exit}:\n${r.stderr}`);
            }
            let doc: unknown;
            if (variant === '--json') {
              try {
                doc = JSON.parse(r.stdout);
                const error = (doc as { error?: { exitCode?: number } }).error;
                if (r.code !== 0 && error && error.exitCode !== r.code) {
                  figures.jsonViolations++;
                  problems.push(`${tag}: the JSON error says exit ${error.exitCode}`);
                }
              } catch {
                figures.jsonViolations++;
                problems.push(`${tag}: stdout is not one JSON document:\n${r.stdout}`);
              }
            }
            // Every error carries a hint (a report, such as doctor's, carries one per failed component);
            // a gate's findings (exit 3) are the report itself.
            if (r.code !== 0 && r.code !== 3) {
              const hints =
                doc === undefined
                  ? [...all.matchAll(/^\s*hint: (.+)$/gm)].map((m) => (m[1] as string).trim())
                  : hintsIn(doc);
              if (hints.length === 0) {
                figures.withoutHint++;
                problems.push(`${tag}: no hint:\n${r.stdout}${r.stderr}`);
              } else if (hints.every((h) => genericHints.has(h))) {
                figures.genericHintOnly++;
                genericHintCases.add(`${kase.name}: ${/^(?:error|dbops): (.+)$/m.exec(r.stderr)?.[1] ?? '?'}`);
              }
            }
          }),
        ),
      );
      expect(problems, kase.name).toEqual([]);
    });
  });
});
