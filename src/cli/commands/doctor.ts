import type { Command } from 'commander';
import { CheckFailedError, UnreachableError } from '../../errors.js';
import type { Runner } from '../handler.js';

export function registerDoctor(program: Command, run: Runner): void {
  program
    .command('doctor')
    .description('check every configured component: reachable, how fast, version, TLS, pg_stat_statements, privileges')
    .action(
      run(async (ctx) => {
        const { runDoctor } = await import('../../diagnostics/doctor.js');
        const { renderDoctor } = await import('../../output/doctor.js');
        // In CI or production with only Redis or PgBouncer configured, check those (no embedded database).
        const onlyOthers =
          !ctx.config.database &&
          (ctx.config.ci || ctx.config.production || ctx.config.clickhouse) &&
          (ctx.config.redis || ctx.config.pgbouncerAdminUrl || ctx.config.clickhouse);
        const db = onlyOthers ? undefined : await ctx.database();
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
          throw new CheckFailedError(`doctor: ${failed.map((component) => component.label).join(', ')} full: no connection slot for this role`, {
            hint: 'see the report above: it says how to look anyway',
            details: { full: failed.map((component) => component.component) },
          });
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
