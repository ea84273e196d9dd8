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
    const [a, b] = await Promise.all([runDbops(['doctor', '--json'], { cwd }), runDbops(['doctor', '--json'], { cwd })]);
    for (const r of [a, b]) {
      expect(r.stderr + r.stdout).toContain('"ok": true');
      expect(r.code).toBe(0);
      expect(r.stderr.match(/using the embedded development database/g)).toHaveLength(1);
      const report = JSON.parse(r.stdout);
      expect(report.components[0].details.pgStatStatements).toMatchObject({ installed: true, preloaded: true });
    }
    expect((a.stderr + b.stderr).match(/starting the embedded PostgreSQL/g)).toHaveLength(1);

    const status = await runDbops(['embedded', 'status', '--json'], { cwd });
    const { running, url } = JSON.parse(status.stdout);
    expect(running).toBe(true);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const tables = await client.query<{ table_name: string }>(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`);
    await client.end();
    expect(tables.rows.map((r) => r.table_name)).toEqual(
      expect.arrayContaining(['User', 'Post', 'Comment', 'Like', 'Product', 'Order', 'OrderItem', '_prisma_migrations']),
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
