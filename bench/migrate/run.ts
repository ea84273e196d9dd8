/**
 * `dbops migrate` benchmark, on a private PostgreSQL with 50 Prisma schema migrations and 200 data
 * migrations, all measured in this run:
 *  1. wall time of `dbops migrate status` against `prisma migrate status` (the official CLI, offline
 *     through scripts/prisma-engine-shim.mjs) and a direct ledger query through psql;
 *     goal: dbops <= 0.3x prisma.
 *  2. per-migration overhead of `dbops migrate up` on 200 empty data migrations:
 *     (time to apply 200 - time of a run with nothing to apply) / 200; goal: <= 15 ms.
 *  3. the first deploy of the longest real history at hand (DBOPS_REAL_HISTORIES, else the one
 *     published on npm): `dbops migrate up --with-schema` on an empty database against psql applying
 *     the same migration.sql files in one session, runs interleaved; goal: <= 1.5x psql.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { applySchemaMigrations } from '../../src/db/prisma-migrations.js';
import {
  type History,
  LEGAL_AI_PRISMA_DB,
  localHistories,
  migrationHistory,
  migrationNames,
} from '../../test/helpers/migration-history.js';
import { startPostgres } from '../../test/helpers/servers.js';
import { fmt, median, percentile, printTable, timeCommand } from '../lib/measure.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'dbops.js');
const PRISMA_CLI = join(ROOT, 'node_modules', 'prisma', 'build', 'index.js');
const SHIM = join(ROOT, 'scripts', 'prisma-engine-shim.mjs');
const runs = Number(process.env.BENCH_RUNS ?? 10);
const SCHEMA_COUNT = 50;
const DATA_COUNT = 200;

const work = mkdtempSync(join(tmpdir(), 'dbops-bench-migrate-'));
const server = await startPostgres('embedded');
try {
  await server.createDatabase('bench');
  const url = server.url('bench');

  // 50 Prisma schema migrations: the example app's init plus 49 small ones.
  const prismaDir = join(work, 'prisma-migrations');
  cpSync(join(ROOT, 'prisma', 'migrations'), prismaDir, { recursive: true });
  for (let i = 1; i < SCHEMA_COUNT; i++) {
    const dir = join(prismaDir, `2023120${1 + Math.floor(i / 24)}${String(i % 24).padStart(2, '0')}0000_bench_${i}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'migration.sql'), `CREATE TABLE "bench_${i}" ("id" INTEGER PRIMARY KEY, "note" TEXT);\n`);
  }
  const applied = await applySchemaMigrations({ connectionString: url, migrationsDir: prismaDir });
  if (applied.applied.length !== SCHEMA_COUNT)
    throw new Error(`expected ${SCHEMA_COUNT} schema migrations, applied ${applied.applied.length}`);

  // 200 empty data migrations, timestamps after the schema ones.
  const dataDir = join(work, 'data-migrations');
  mkdirSync(dataDir);
  const define = JSON.stringify(join(ROOT, 'src', 'migrations', 'define.ts'));
  for (let i = 0; i < DATA_COUNT; i++) {
    const ts = `2024${String(1 + Math.floor(i / 28)).padStart(2, '0')}${String(1 + (i % 28)).padStart(2, '0')}000000`;
    writeFileSync(
      join(dataDir, `${ts}_bench_${i}.ts`),
      `import { defineDataMigration } from ${define};\nexport default defineDataMigration({ description: 'empty ${i}', async up() {}, async down() {} });\n`,
    );
  }

  const env = {
    ...process.env,
    NO_COLOR: '1',
    DATABASE_URL: url,
    DBOPS_MIGRATIONS_DIR: dataDir,
    DBOPS_PRISMA_MIGRATIONS_DIR: prismaDir,
    CI: '',
  };
  const dropLedger = async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query('DROP TABLE IF EXISTS dbops.data_migrations');
    await c.end();
  };

  // --- 2. up overhead ---------------------------------------------------------------------------
  const up200: number[] = [];
  const upRuns = Math.max(3, Math.ceil(runs / 2));
  for (let i = 0; i < upRuns + 1; i++) {
    await dropLedger();
    const [t] = timeCommand(process.execPath, [BIN, 'migrate', 'up'], { runs: 1, warmup: 0, env });
    if (i > 0) up200.push(t as number); // the first run warms jiti's transform cache
  }
  const up0 = timeCommand(process.execPath, [BIN, 'migrate', 'up'], { runs, warmup: 1, env });
  const perMigration = (median(up200) - median(up0)) / DATA_COUNT;

  // --- 1. status --------------------------------------------------------------------------------
  const status = timeCommand(process.execPath, [BIN, 'migrate', 'status'], { runs, env });
  const configFile = join(work, 'prisma.config.ts');
  writeFileSync(
    configFile,
    `import { defineConfig } from ${JSON.stringify(join(ROOT, 'node_modules', 'prisma', 'config.js'))};\nexport default defineConfig({ schema: ${JSON.stringify(join(ROOT, 'prisma', 'schema.prisma'))}, migrations: { path: ${JSON.stringify(prismaDir)} }, datasource: { url: process.env.DATABASE_URL ?? '' } });\n`,
  );
  const prismaEnv = {
    ...env,
    PRISMA_SCHEMA_ENGINE_BINARY: SHIM,
    PRISMA_HIDE_UPDATE_MESSAGE: '1',
    CHECKPOINT_DISABLE: '1',
  };
  let prismaStatus: number[] | null = null;
  let prismaNote = '';
  const probe = spawnSync(process.execPath, [PRISMA_CLI, 'migrate', 'status', '--config', configFile], {
    env: prismaEnv,
    encoding: 'utf8',
    cwd: ROOT,
  });
  if (
    probe.status === 0 &&
    /Database schema is up to date/.test(probe.stdout) &&
    new RegExp(`${SCHEMA_COUNT} migrations found`).test(probe.stdout)
  ) {
    prismaStatus = timeCommand(process.execPath, [PRISMA_CLI, 'migrate', 'status', '--config', configFile], {
      runs,
      env: prismaEnv,
    });
  } else {
    prismaNote = `prisma migrate status did not run here (exit ${probe.status}): ${(probe.stderr || probe.stdout).trim().split('\n').slice(-2).join(' ')}`;
  }
  const psqlArgs = [url, '-Atqc', 'SELECT name, checksum, finished_at FROM dbops.data_migrations ORDER BY name'];
  const psql = spawnSync('psql', ['--version']).status === 0 ? timeCommand('psql', psqlArgs, { runs, env }) : null;

  const row = (name: string, t: number[] | null, ref: number | null) => ({
    command: name,
    'median ms': t ? fmt(median(t)) : 'n/a',
    'p90 ms': t ? fmt(percentile(t, 90)) : 'n/a',
    'x prisma': t && ref ? fmt(median(t) / ref, 2) : 'n/a',
  });
  const ref = prismaStatus ? median(prismaStatus) : null;
  console.log(
    `\n${SCHEMA_COUNT} schema + ${DATA_COUNT} data migrations, all applied; PostgreSQL ${server.version}; runs=${runs}\n`,
  );
  printTable([
    row('prisma migrate status (reference, via engine shim)', prismaStatus, ref),
    row('psql: SELECT ... FROM dbops.data_migrations', psql, ref),
    row('dbops migrate status', status, ref),
  ]);
  if (prismaNote) console.log(prismaNote);
  console.log('');
  printTable([
    {
      run: `dbops migrate up, ${DATA_COUNT} pending empty migrations`,
      'median ms': fmt(median(up200)),
      runs: up200.length,
    },
    { run: 'dbops migrate up, nothing pending', 'median ms': fmt(median(up0)), runs: up0.length },
  ]);
  const ratio = ref ? median(status) / ref : null;
  console.log(
    `\nstatus: dbops / prisma = ${ratio === null ? 'n/a' : fmt(ratio, 2)} (goal <= 0.30) ${ratio === null ? 'NOT MEASURED' : ratio <= 0.3 ? 'MET' : 'NOT MET'}`,
  );
  console.log(
    `up: overhead per applied migration = ${fmt(perMigration, 2)} ms (goal <= 15 ms) ${perMigration <= 15 ? 'MET' : 'NOT MET'}`,
  );

  // --- 3. first deploy of the longest history -------------------------------------------------------
  const histories: History[] = [
    ...localHistories(process.env.DBOPS_REAL_HISTORIES),
    await migrationHistory(LEGAL_AI_PRISMA_DB),
  ];
  const longest = histories
    .map((h) => ({ h, names: migrationNames(h.migrations) }))
    .sort((a, b) => b.names.length - a.names.length)[0];
  if (longest) {
    const { h, names } = longest;
    const deployRuns = Math.max(3, Math.ceil(runs / 2));
    const psqlFiles = names.flatMap((n) => ['-f', join(h.migrations, n, 'migration.sql')]);
    const emptyData = join(work, 'no-data-migrations');
    mkdirSync(emptyData);
    const fresh: number[] = [];
    const reference: number[] = [];
    for (let i = 0; i < deployRuns + 1; i++) {
      // interleaved, each on a new empty database; the first pair warms caches and is not counted
      const a = await server.createDatabase(`deploy_psql_${i}`);
      const [p] = timeCommand('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', a, ...psqlFiles], {
        runs: 1,
        warmup: 0,
        env,
      });
      const b = await server.createDatabase(`deploy_dbops_${i}`);
      const deployEnv = {
        ...env,
        DATABASE_URL: b,
        DBOPS_PRISMA_MIGRATIONS_DIR: h.migrations,
        DBOPS_MIGRATIONS_DIR: emptyData,
      };
      const [d] = timeCommand(process.execPath, [BIN, 'migrate', 'up', '--with-schema'], {
        runs: 1,
        warmup: 0,
        env: deployEnv,
      });
      if (i > 0) {
        reference.push(p as number);
        fresh.push(d as number);
      }
    }
    const deployRatio = median(fresh) / median(reference);
    console.log(`\nfirst deploy: ${h.label}, ${names.length} schema migrations, empty database; runs=${deployRuns}\n`);
    printTable([
      {
        run: 'psql, every migration.sql in one session (reference)',
        'median ms': fmt(median(reference)),
        'x psql': '1.00',
      },
      { run: 'dbops migrate up --with-schema', 'median ms': fmt(median(fresh)), 'x psql': fmt(deployRatio, 2) },
    ]);
    console.log(
      `first deploy: dbops / psql = ${fmt(deployRatio, 2)} (goal <= 1.50) ${deployRatio <= 1.5 ? 'MET' : 'NOT MET'}`,
    );
  }
} finally {
  await server.stop();
  rmSync(work, { recursive: true, force: true });
}
