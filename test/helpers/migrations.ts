/** Helpers for data-migration tests: throwaway migration folders and table fingerprints. */
import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';

export const DEFINE_PATH = resolve(import.meta.dirname, '..', '..', 'src', 'migrations', 'define.ts');

/** A migration module body: `mig("{ async up({ sql }) { ... } }")`. */
export function mig(body: string): string {
  return `import { defineDataMigration } from ${JSON.stringify(DEFINE_PATH)};\nexport default defineDataMigration(${body});\n`;
}

/** A migration that records one side effect (a row in "audit") and validates it. */
export function auditMig(name: string, extraUp = ''): string {
  return mig(`{
  description: 'audit ${name}',
  async up({ sql }) {
    await sql\`INSERT INTO audit (name) VALUES (\${${JSON.stringify(name)}})\`;
    ${extraUp}
  },
  async validate({ sql }) {
    const { rows } = await sql\`SELECT count(*)::int AS n FROM audit WHERE name = \${${JSON.stringify(name)}}\`;
    return rows[0].n >= 1;
  },
  async down({ sql }) {
    await sql\`DELETE FROM audit WHERE name = \${${JSON.stringify(name)}}\`;
  },
}`);
}

/** A fresh folder holding `files` (name → source). */
export function migrationFolder(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'dbops-mig-'));
  mkdirSync(dir, { recursive: true });
  for (const [name, source] of Object.entries(files)) writeFileSync(join(dir, name), source);
  return dir;
}

export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** md5 over a table's rows in a stable order (or 'absent'): a byte-for-byte fingerprint. */
export async function tableHash(c: pg.Client, table: string): Promise<string> {
  // `schema.table` or a table on the search path
  const name = table
    .split('.')
    .map((part) => `"${part}"`)
    .join('.');
  const { rows: exists } = await c.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [name]);
  if (!exists[0]?.t) return 'absent';
  const { rows } = await c.query<{ h: string | null; n: number }>(
    `SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) AS h, count(*)::int AS n FROM ${name} t`,
  );
  return `${rows[0]?.n}:${rows[0]?.h}`;
}

export async function auditCounts(c: pg.Client): Promise<Record<string, number>> {
  const { rows } = await c.query<{ name: string; n: number }>(
    'SELECT name, count(*)::int AS n FROM audit GROUP BY name ORDER BY name',
  );
  return Object.fromEntries(rows.map((r) => [r.name, r.n]));
}

export const AUDIT_DDL =
  'CREATE TABLE audit (id serial PRIMARY KEY, name text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())';

/** A fresh copy of the example app's Prisma migrations plus `extra` folders (name → migration.sql); the caller removes it. */
export function prismaMigrationsWith(extra: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'dbops-prisma-migrations-'));
  cpSync(resolve(import.meta.dirname, '..', '..', 'prisma', 'migrations'), dir, { recursive: true });
  for (const [name, sql] of Object.entries(extra)) {
    mkdirSync(join(dir, name));
    writeFileSync(join(dir, name, 'migration.sql'), sql);
  }
  return dir;
}
