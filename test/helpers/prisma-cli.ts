/**
 * The official Prisma CLI (7, this repository's devDependency) offline, through dbops' engine shim:
 * a throwaway project around a schema and a migrations folder, one command at a time, and Prisma's
 * own verdict on a database (status, diff, dev --create-only, db pull).
 */
import { execFile } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..');
export const SHIM = join(ROOT, 'scripts', 'prisma-engine-shim.mjs');
export const PRISMA_CLI = join(ROOT, 'node_modules', 'prisma', 'build', 'index.js');

export interface PrismaRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** `prisma ...args` in `cwd`, offline: the shim instead of the native engine; no DATABASE_URL unless given. */
export function prismaCli(cwd: string, args: string[], databaseUrl?: string, input?: string): Promise<PrismaRun> {
  return new Promise((done) => {
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      PRISMA_SCHEMA_ENGINE_BINARY: SHIM,
      PRISMA_HIDE_UPDATE_MESSAGE: '1',
      CHECKPOINT_DISABLE: '1',
      NO_COLOR: '1',
    };
    if (databaseUrl) env.DATABASE_URL = databaseUrl;
    const child = execFile(
      process.execPath,
      [PRISMA_CLI, ...args],
      { cwd, env, timeout: 300_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        done({ code, stdout, stderr });
      },
    );
    child.stdin?.end(input ?? '');
  });
}

/**
 * A Prisma 7 project in a temporary folder: prisma.config.ts (URL from DATABASE_URL), the schema
 * (text) at prisma/schema.prisma and a copy of `migrationsDir` at prisma/migrations, this
 * repository's node_modules linked in. The caller removes it (`rmSync(dir, { recursive: true })`).
 */
export function prismaProject(schema: string, migrationsDir: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'dbops-prisma-project-'));
  cpSync(migrationsDir, join(dir, 'prisma', 'migrations'), { recursive: true });
  writeFileSync(join(dir, 'prisma', 'schema.prisma'), schema);
  writeFileSync(
    join(dir, 'prisma.config.ts'),
    `import { defineConfig } from 'prisma/config';\nexport default defineConfig({ schema: 'prisma/schema.prisma', migrations: { path: 'prisma/migrations' }, datasource: { url: process.env.DATABASE_URL ?? '' } });\n`,
  );
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

/** Preview features Prisma 7.10 knows (its P1012 message lists them); a Prisma 6 schema may name others. */
const PRISMA7_PREVIEW = new Set([
  'fullTextSearchPostgres',
  'nativeDistinct',
  'partialIndexes',
  'postgresqlExtensions',
  'relationJoins',
  'schemaEngineDriverAdapters',
  'shardKeys',
  'strictUndefinedChecks',
  'typedSql',
  'views',
]);

/**
 * A Prisma 6 application's schema as Prisma 7's CLI takes it: the datasource's connection URLs
 * (`url`, `directUrl`, `shadowDatabaseUrl`) move to prisma.config.ts, preview features Prisma 7 no
 * longer knows are dropped. Line by line inside the `datasource` and `generator` blocks, which Prisma
 * formats one property per line; `prisma validate` on the result is what proves it right.
 */
export function forPrisma7(schema: string): string {
  let block: string | undefined;
  const out: string[] = [];
  for (const line of schema.split('\n')) {
    const trimmed = line.trim();
    const opens = /^(datasource|generator|model|enum|view|type)\s+\w+\s*\{/.exec(trimmed);
    if (opens) block = opens[1];
    else if (trimmed === '}') block = undefined;
    const property = /^(\w+)\s*=/.exec(trimmed)?.[1];
    if (block === 'datasource' && (property === 'url' || property === 'directUrl' || property === 'shadowDatabaseUrl'))
      continue;
    if (block === 'generator' && property === 'previewFeatures') {
      const features = [...trimmed.matchAll(/"([^"]+)"/g)]
        .map((m) => m[1] as string)
        .filter((f) => PRISMA7_PREVIEW.has(f));
      if (features.length > 0) out.push(`  previewFeatures = [${features.map((f) => `"${f}"`).join(', ')}]`);
      continue;
    }
    out.push(line);
  }
  return out.join('\n');
}

export interface PrismaVerdict {
  validate: PrismaRun;
  status: PrismaRun;
  /** `migrate diff --from-config-datasource --to-migrations ... --exit-code`: drift from the history, schema.prisma aside. */
  drift: PrismaRun;
  diff: PrismaRun;
  dev: PrismaRun;
  /** Folders `migrate dev --create-only` wrote, with their SQL. */
  created: { name: string; sql: string }[];
  pull: PrismaRun;
}

/**
 * What Prisma says about the database at `url` for the project in `dir`: `validate`, `migrate
 * status`, `migrate diff --from-config-datasource` to the migrations and to the schema (`--exit-code`), `migrate dev
 * --create-only` (the folders it writes are removed again) and `db pull --print`.
 */
export async function prismaVerdict(dir: string, url: string): Promise<PrismaVerdict> {
  const migrations = join(dir, 'prisma', 'migrations');
  const before = new Set(readdirSync(migrations));
  const validate = await prismaCli(dir, ['validate']);
  const status = await prismaCli(dir, ['migrate', 'status'], url);
  const drift = await prismaCli(
    dir,
    ['migrate', 'diff', '--from-config-datasource', '--to-migrations', 'prisma/migrations', '--exit-code'],
    url,
  );
  const diff = await prismaCli(
    dir,
    ['migrate', 'diff', '--from-config-datasource', '--to-schema', 'prisma/schema.prisma', '--exit-code'],
    url,
  );
  const dev = await prismaCli(dir, ['migrate', 'dev', '--create-only', '--name', 'after_dbops'], url);
  const created = readdirSync(migrations)
    .filter((name) => !before.has(name))
    .map((name) => {
      const file = join(migrations, name, 'migration.sql');
      const sql = existsSync(file) ? readFileSync(file, 'utf8') : '';
      rmSync(join(migrations, name), { recursive: true, force: true });
      return { name, sql };
    });
  const pull = await prismaCli(dir, ['db', 'pull', '--print'], url);
  return { validate, status, drift, diff, dev, created, pull };
}
