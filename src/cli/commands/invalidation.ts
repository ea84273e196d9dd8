/**
 * The CLI's side of data migrations' cache invalidation: the Redis of REDIS_URL (opened on the
 * first drain, closed with the command), CACHE_KEY_PREFIX, the replicas of DATABASE_REPLICA_URLS,
 * the bound on the wait. Shared by `migrate up/down` and `cache drain`.
 */
import type { InvalidationOptions } from '../../migrations/invalidation.js';
import { sleep } from '../../util/sleep.js';
import type { CommandContext } from '../context.js';

export interface InvalidationFlags {
  /** --replica-wait (ms): overrides DBOPS_REPLICA_WAIT_MS. */
  replicaWait?: number;
  /** --defer-invalidation: owed invalidations stay in the outbox for a later `cache drain`. */
  deferInvalidation?: boolean;
}

export function invalidationOptions(ctx: CommandContext, flags: InvalidationFlags): InvalidationOptions {
  const redis = ctx.config.redis?.url;
  const pause = Number(ctx.env.DBOPS_TEST_PAUSE_BEFORE_INVALIDATION_MS ?? 0);
  return {
    keyPrefix: ctx.config.cacheKeyPrefix?.value || undefined,
    cache: redis
      ? async () => {
          const [{ openTarget }, { createInvalidator }] = await Promise.all([
            import('../../cache/target.js'),
            import('../../cache/invalidate.js'),
          ]);
          const target = await openTarget({
            url: redis,
            timeoutMs: ctx.timeoutMs,
            commandTimeoutMs: Math.max(ctx.timeoutMs * 3, 15_000),
            connectionName: 'dbops-invalidate',
          });
          ctx.onClose(() => target.close());
          return createInvalidator(target);
        }
      : undefined,
    replicas: ctx.config.replicas.map((r) => ({
      name: r.name,
      connect: async () => {
        const { connectPg } = await import('../../db/pg.js');
        return connectPg({
          connectionString: r.url,
          timeoutMs: ctx.timeoutMs,
          applicationName: 'dbops-replica-wait',
          label: `replica ${r.name}`,
        });
      },
    })),
    replicaWaitMs: flags.replicaWait ?? ctx.config.replicaWaitMs,
    defer: flags.deferInvalidation,
    // Test hook (the kill suite): a pause between a migration's commit and its invalidation, announced on stderr.
    ...(pause > 0
      ? {
          beforeDrain: async () => {
            ctx.out.stderr(`dbops: test pause before invalidation (${pause} ms)`);
            await sleep(pause);
          },
        }
      : {}),
  };
}
