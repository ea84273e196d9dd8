import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanEnv, ROOT, runDbops } from '../helpers/cli.js';

describe('the embedded default database', () => {
  const cwd = mkdtempSync(join(tmpdir(), 'dbops-embedded-'));
  cpSync(join(ROOT, 'prisma'), join(cwd, 'prisma'), { recursive: true });

  afterAll(async () => {
    await runDbops(['embedded', 'stop'], { cwd });
  });

  it('starts on demand (once, even for two dbops at the same time), with pg_stat_statements and the example schema', async () => {
    // migrate starts it; the diagnostics (doctor, pool, locks, slow-queries) only use one already running.
    const [a, b] = await Promise.all([
      runDbops(['migrate', 'status', '--json'], { cwd }),
      runDbops(['migrate', 'status', '--json'], { cwd }),
    ]);
    for (const r of [a, b]) {
      expect(r.code, r.stderr).toBe(0);
      expect(
        r.stderr.match(
          /^→ postgresql:\/\/postgres@127\.0\.0\.1:\d+\/dbops_dev \(embedded development database, (started now|already running)/gm,
        ),
      ).toHaveLength(1);
    }
    expect((a.stderr + b.stderr).match(/starting the embedded PostgreSQL/g)).toHaveLength(1);
    expect((a.stderr + b.stderr).match(/embedded development database, started now/g)).toHaveLength(1);
    const doctor = await runDbops(['doctor', '--json'], { cwd });
    expect(doctor.code, doctor.stderr).toBe(0);
    expect(doctor.stderr).toMatch(
      /^→ postgresql:\/\/postgres@127\.0\.0\.1:\d+\/dbops_dev \(embedded development database, already running/m,
    );
    const report = JSON.parse(doctor.stdout);
    expect(report.components[0].details.pgStatStatements).toMatchObject({ installed: true, preloaded: true });

    const status = await runDbops(['embedded', 'status', '--json'], { cwd });
    const { running, url } = JSON.parse(status.stdout);
    expect(running).toBe(true);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const tables = await client.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`,
    );
    await client.end();
    expect(tables.rows.map((r) => r.table_name)).toEqual(
      expect.arrayContaining([
        'User',
        'Post',
        'Comment',
        'Like',
        'Product',
        'Order',
        'OrderItem',
        '_prisma_migrations',
      ]),
    );
  });

  it('is reused by the next command and never used when NODE_ENV=production', async () => {
    const again = await runDbops(['doctor'], { cwd });
    expect(again.code).toBe(0);
    expect(again.stderr).not.toMatch(/starting the embedded/);
    const prod = await runDbops(['doctor'], { cwd, env: cleanEnv({ NODE_ENV: 'production' }) });
    expect(prod.code).toBe(2);
    expect(prod.stderr).toMatch(/no database configured and NODE_ENV=production/);
  });

  it('stops', async () => {
    const stop = await runDbops(['embedded', 'stop', '--json'], { cwd });
    expect(JSON.parse(stop.stdout)).toEqual({ stopped: true });
    const status = await runDbops(['embedded', 'status', '--json'], { cwd });
    expect(JSON.parse(status.stdout).running).toBe(false);
  });
});
