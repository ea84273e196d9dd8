import type { Command } from 'commander';
import { UsageError } from '../../errors.js';
import type { Runner } from '../handler.js';

export function registerEmbedded(program: Command, run: Runner): void {
  const group = program
    .command('embedded')
    .description('the embedded development PostgreSQL under .dbops/ (used when no database is configured)');
  group
    .command('status')
    .description('is the embedded server running, on which port')
    .action(
      run(async (ctx) => {
        const { embeddedStatus } = await import('../../db/embedded.js');
        const status = embeddedStatus(ctx.config.embeddedDir);
        ctx.out.result(status, () =>
          status.running
            ? `running (pid ${status.pid}) at ${status.url}\ndata: ${status.dataDir}`
            : `not running (data: ${status.dataDir})`,
        );
      }),
    );
  group
    .command('start')
    .description('start it (and create the dev database with the example schema) now')
    .action(
      run(async (ctx) => {
        const { ensureEmbedded } = await import('../../db/embedded.js');
        const db = await ensureEmbedded({
          dir: ctx.config.embeddedDir,
          prismaMigrationsDir: ctx.config.prismaMigrationsDir,
          log: (m) => ctx.out.info(m),
        });
        ctx.out.result(db, () => `${db.started ? 'started' : 'already running'}: ${db.url}`);
      }),
    );
  group
    .command('stop')
    .description('stop the embedded server (its data stays)')
    .action(
      run(async (ctx) => {
        const { stopEmbedded } = await import('../../db/embedded.js');
        const wasRunning = await stopEmbedded(ctx.config.embeddedDir);
        ctx.out.result({ stopped: wasRunning }, () => (wasRunning ? 'stopped' : 'was not running'));
      }),
    );
  group
    .command('reset')
    .description('stop it and delete its data (asks first; --yes without a terminal)')
    .option('-y, --yes', 'do not ask')
    .action(
      run<{ yes?: boolean }>(async (ctx, opts) => {
        const { resetEmbedded } = await import('../../db/embedded.js');
        if (!opts.yes) {
          const ok = await ctx.out.confirm(`delete the embedded database in ${ctx.config.embeddedDir}?`);
          if (!ok)
            throw new UsageError('not confirmed: nothing deleted', { hint: 'pass --yes to reset without a prompt' });
        }
        await resetEmbedded(ctx.config.embeddedDir);
        ctx.out.result({ reset: true }, () => 'embedded database deleted');
      }),
    );
}
