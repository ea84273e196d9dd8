/**
 * `dbops migrate repair` (alias `resolve`): an applied migration edited on purpose is accepted
 * after the person has seen the recorded and the new checksum and said yes at a real terminal;
 * without a terminal only --yes does it; the ledger keeps who, when and the checksum before;
 * `status` and `validate` are clean afterwards.
 */
import { appendFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanEnv, runDbops, runOnTerminal } from '../helpers/cli.js';
import { AUDIT_DDL, auditMig, migrationFolder, withClient } from '../helpers/migrations.js';
import { createTestDatabase, type TestDatabase } from '../helpers/services.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

const A = '20240101000000_a';

async function applied(): Promise<{ db: TestDatabase; dir: string; env: Record<string, string>; before: string }> {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  await withClient(db.url, (c) => c.query(AUDIT_DDL));
  const dir = migrationFolder({ [`${A}.ts`]: auditMig('a'), '20240102000000_b.ts': auditMig('b') });
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const env = cleanEnv({ DATABASE_URL: db.url, DBOPS_MIGRATIONS_DIR: dir, USER: 'repair-user' });
  const up = await runDbops(['migrate', 'up'], { env });
  expect(up.code, up.stderr).toBe(0);
  const before = await checksum(db);
  // a deliberate edit of an applied migration: a comment
  appendFileSync(join(dir, `${A}.ts`), '// explains why the audit row exists\n');
  return { db, dir, env, before };
}

async function checksum(db: TestDatabase): Promise<string> {
  return withClient(
    db.url,
    async (c) => (await c.query('SELECT checksum FROM dbops.data_migrations WHERE name = $1', [A])).rows[0]?.checksum,
  );
}

describe('migrate repair', () => {
  it('at a terminal: shows the recorded and the new checksum, asks; no keeps everything, yes records it with who and when', async () => {
    const { db, env, before } = await applied();
    const validate = await runDbops(['migrate', 'validate'], { env });
    expect(validate.code).toBe(3);
    expect(validate.stdout).toContain(`dbops migrate repair ${A}`);

    const no = await runOnTerminal(['migrate', 'repair'], { env, answer: 'n' });
    expect(no.out).toContain('1 applied migration(s) changed since they were applied (checksums: recorded -> file):');
    expect(no.out).toContain(`${A}: recorded ${before.slice(0, 12)} -> file `);
    expect(no.out).toMatch(/Accept the new checksum of 1 migration\(s\)\?.*\[y\/N\]/);
    expect(no.out).toContain('not confirmed: 1 changed migration(s) left as they are');
    expect(no.code).toBe(2);
    expect(await checksum(db)).toBe(before);

    const yes = await runOnTerminal(['migrate', 'repair'], { env, answer: 'y' });
    expect(yes.code, yes.out).toBe(0);
    expect(yes.out).toMatch(new RegExp(`✔ accepted ${A}: ${before.slice(0, 12)} -> [0-9a-f]{12}`));
    const after = await checksum(db);
    expect(after).not.toBe(before);
    await withClient(db.url, async (c) => {
      const { rows } = await c.query('SELECT repairs FROM dbops.data_migrations WHERE name = $1', [A]);
      expect(rows[0].repairs).toEqual([
        expect.objectContaining({
          by: 'repair-user',
          previousChecksum: before,
          checksum: after,
          dbUser: 'postgres',
          at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        }),
      ]);
    });
    expect((await runDbops(['migrate', 'validate'], { env })).code).toBe(0);
    const status = await runDbops(['migrate', 'status'], { env });
    expect(status.stdout).toMatch(new RegExp(`${A}\\s*│\\s*applied`));
    expect(status.stdout).not.toContain('CHANGED');
  });

  it('without a terminal it needs --yes; resolve is the same command; --json is one document; nothing changed → nothing to do', async () => {
    const { db, env, before } = await applied();
    const refused = await runDbops(['migrate', 'repair'], { env });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/not confirmed.*\n.*hint: pass --yes/);
    expect(await checksum(db)).toBe(before);

    const json = await runDbops(['--json', 'migrate', 'resolve', A, '--yes'], { env });
    expect(json.code, json.stderr).toBe(0);
    const doc = JSON.parse(json.stdout);
    expect(doc).toMatchObject({
      command: 'repair',
      accepted: [{ name: A, previousChecksum: before, checksum: await checksum(db) }],
      skipped: [],
    });

    const again = await runDbops(['migrate', 'repair', '--yes'], { env });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('nothing to repair: no applied data migration changed');
    const unknown = await runDbops(['migrate', 'repair', '20990101000000_nope', '--yes'], { env });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('repair 20990101000000_nope: not an applied data migration');
  });
});
