import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, ROOT } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/services.js';

// The packed tarball, installed into another folder, works as `npx dbops` (no install scripts run there).
describe('dbops from a packed tarball', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dbops-pack-'));
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    execFileSync('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', dir], { cwd: ROOT, stdio: 'ignore' });
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
    writeFileSync(join(dir, 'package.json'), '{"name":"consumer","private":true}');
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', `./${tarball}`], { cwd: dir, stdio: 'ignore' });
  }, 240_000);
  afterAll(async () => {
    await db.drop();
  });

  it('runs --version and doctor', () => {
    const env = { ...cleanEnv({ DATABASE_URL: db.url }) };
    const version = execFileSync('npx', ['--no-install', 'dbops', '--version'], { cwd: dir, env, encoding: 'utf8' });
    expect(version.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const report = JSON.parse(execFileSync('npx', ['--no-install', 'dbops', 'doctor', '--json'], { cwd: dir, env, encoding: 'utf8' }));
    expect(report.ok).toBe(true);
  });
});
