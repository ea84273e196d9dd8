import type { Command } from 'commander';
import type { Runner } from '../handler.js';

export function registerConfig(program: Command, run: Runner): void {
  program
    .command('config')
    .description('show the resolved configuration and where each value came from (secrets masked)')
    .action(
      run(async (ctx) => {
        const { renderTable } = await import('../../output/table.js');
        const { maskUrl } = await import('../../config/redact.js');
        const c = ctx.config;
        const doc = {
          database: c.database
            ? {
                url: maskUrl(c.database.url),
                source: c.database.source,
                directUrl: maskUrl(c.database.directUrl),
                directSource: c.database.directSource,
                ignoredDirect: c.database.ignoredDirect ?? null,
                ssl: c.database.ssl,
                poolSize: c.database.poolSize,
              }
            : {
                embedded: !(c.ci || c.production),
                note:
                  c.ci || c.production
                    ? 'no database configured: commands that need one will refuse (CI or production)'
                    : `no database configured: the embedded development database in ${c.embeddedDir} is used`,
              },
          redis: c.redis ? { url: maskUrl(c.redis.url), source: c.redis.source } : null,
          cacheKeyPrefix: c.cacheKeyPrefix?.value ?? null,
          pgbouncerAdminUrl: maskUrl(c.pgbouncerAdminUrl?.value) ?? null,
          clickhouse: c.clickhouse
            ? {
                url: maskUrl(c.clickhouse.url),
                source: c.clickhouse.source,
                caCert: c.clickhouse.caCert ?? null,
                queryTimeoutMs: c.clickhouse.queryTimeoutMs,
              }
            : null,
          migrationsDir: c.migrationsDir,
          prismaMigrationsDir: c.prismaMigrationsDir,
          connectTimeoutMs: c.connectTimeoutMs,
          ci: c.ci,
          production: c.production,
          settings: c.settings,
        };
        ctx.out.result(doc, () => {
          const rows = Object.entries(c.settings).map(([name, s]) => [name, s.value, s.source]);
          const table = rows.length
            ? renderTable({ head: ['setting', 'value', 'from'], rows, colour: ctx.out.terminal.colour })
            : 'no settings in flags, environment, .env or config file';
          const notes = [
            c.database
              ? `migrations, locks and diagnostics use ${c.database.directBrief}${c.database.ignoredDirect ? ` (${c.database.ignoredDirect} is ignored: it comes from a lower source than ${c.database.brief})` : c.database.directUrl === c.database.url ? ' (no DIRECT_DATABASE_URL set)' : ''}`
              : String((doc.database as { note: string }).note),
            `data migrations: ${c.migrationsDir}; Prisma migrations: ${c.prismaMigrationsDir}`,
          ];
          return `${table}\n${notes.join('\n')}`;
        });
      }),
    );
}
