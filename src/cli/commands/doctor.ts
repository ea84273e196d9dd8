import type { Command } from 'commander';
import { CheckFailedError, ConfigError, UnreachableError } from '../../errors.js';
import type { Runner } from '../handler.js';

export function registerDoctor(program: Command, run: Runner): void {
  program
    .command('doctor')
    .description('check every configured component: reachable, how fast, version, TLS, pg_stat_statements, privileges')
    .action(
      run(async (ctx) => {
        const { runDoctor } = await import('../../diagnostics/doctor.js');
        const { renderDoctor } = await import('../../output/doctor.js');
        // A diagnostic never starts the embedded server; one already running is checked. With only
        // Redis, PgBouncer or ClickHouse configured, those are checked.
        ctx.diagnostic('doctor');
        const others = Boolean(ctx.config.redis || ctx.config.pgbouncerAdminUrl || ctx.config.clickhouse);
        const db = await ctx.database().catch((error: unknown) => {
          if (!ctx.config.database && others && error instanceof ConfigError) return undefined;
          throw error;
        });
        if (db) ctx.announceDatabase(db, true);
        if (ctx.config.pgbouncerAdminUrl)
          ctx.announce(
            ctx.config.pgbouncerAdminUrl.value,
            ctx.config.pgbouncerAdminUrl.brief ?? 'PGBOUNCER_ADMIN_URL',
            'PgBouncer console ',
          );
        if (ctx.config.redis) ctx.announce(ctx.config.redis.url, ctx.config.redis.brief, 'Redis ');
        if (ctx.config.clickhouse) ctx.announce(ctx.config.clickhouse.url, ctx.config.clickhouse.brief, 'ClickHouse ');
        const report = await runDoctor({
          postgresUrl: db?.directUrl,
          pooledUrl: db?.url,
          pgbouncerAdminUrl: ctx.config.pgbouncerAdminUrl?.value,
          redisUrl: ctx.config.redis?.url,
          clickhouse: ctx.config.clickhouse,
          replicas: ctx.config.replicas,
          timeoutMs: ctx.timeoutMs,
        });
        ctx.out.result(report, () => renderDoctor(report, ctx.out.c, ctx.out.terminal.colour));
        const failed = report.components.filter((component) => !component.ok);
        if (failed.length > 0 && failed.every((component) => component.error?.code === 'SERVER_FULL')) {
          throw new CheckFailedError(
            `doctor: ${failed.map((component) => component.label).join(', ')} full: no connection slot for this role`,
            {
              hint: 'see the report above: it says how to look anyway',
              details: { full: failed.map((component) => component.component) },
            },
          );
        }
        if (failed.length > 0) {
          throw new UnreachableError(`doctor: ${failed.map((component) => component.label).join(', ')} failed`, {
            hint: 'see the report above: each failed component says why',
            details: { failed: failed.map((component) => component.component) },
          });
        }
      }),
    );
}
