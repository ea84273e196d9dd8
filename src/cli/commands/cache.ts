import { readFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import type { CacheTarget, TargetInfo } from '../../cache/target.js';
import { CheckFailedError, ConfigError, InterruptedError, OperationError, UsageError } from '../../errors.js';
import type { CommandContext } from '../context.js';
import type { Runner } from '../handler.js';
import { durationArg, durationIn, intArg } from '../options.js';

const TYPES = ['string', 'list', 'set', 'zset', 'hash', 'stream'];

interface ScanOpts {
  count: number;
  /** The pattern argument is the pattern's bytes in hex (for bytes that are not UTF-8). */
  hex?: boolean;
  type?: string;
  /** undefined: CACHE_KEY_PREFIX; false: --no-prefix; a string: --prefix. */
  prefix?: string | false;
}

interface FlushOpts extends ScanOpts {
  dryRun?: boolean;
  yes?: boolean;
  all?: boolean;
  pauseMs: number;
  maxKeys?: number;
  inFlight: number;
}

interface KeysOpts extends ScanOpts {
  limit: number;
  memory?: boolean;
}

function scanOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--count <n>', 'SCAN COUNT hint: keys the server looks at per call')
        .argParser(intArg(1, 10_000))
        .default(1000),
    )
    .addOption(new Option('--type <type>', 'only keys of this type (SCAN TYPE, Redis >= 6)').choices(TYPES))
    .addOption(new Option('--prefix <prefix>', 'key prefix to put before the pattern (default: CACHE_KEY_PREFIX)'))
    .addOption(new Option('--no-prefix', 'ignore CACHE_KEY_PREFIX: the pattern is matched against raw key names'))
    .option(
      '--hex',
      'the pattern is given as the hex of its bytes, for bytes that are not UTF-8 (e.g. --hex 62696e3aff2a is bin:\\xff*)',
    )
    .addHelpText('after', "\nA pattern that starts with '-' goes after --, e.g. dbops cache keys -- '-tmp:*'.");
}

export function registerCache(program: Command, run: Runner): void {
  const group = program
    .command('cache')
    .description('Redis cache: delete keys by pattern without blocking, count keys, statistics');

  scanOptions(
    group
      .command('flush')
      .description('delete the keys matching a Redis glob pattern (SCAN + UNLINK in batches; cluster-aware)')
      .argument('<pattern>', "Redis glob, e.g. 'user:*' (quote it in the shell)"),
  )
    .option('--dry-run', 'scan and count only; delete nothing')
    .option('-y, --yes', 'do not ask (required without a terminal)')
    .option('--all', 'allow a pattern that matches every key (consider FLUSHDB ASYNC instead)')
    .addOption(
      new Option('--pause-ms <duration>', 'sleep between batches, per node (e.g. 100, 100ms, 1s)')
        .argParser(durationIn(0, 60_000))
        .default(0),
    )
    .addOption(
      new Option('--in-flight <n>', 'UNLINK batches in flight per node while the next SCAN runs')
        .argParser(intArg(1, 8))
        .default(2),
    )
    .addOption(
      new Option('--max-keys <n>', 'stop after deleting this many keys (exit 3 when reached)').argParser(intArg(1)),
    )
    .addHelpText(
      'after',
      '\nKeys written while the flush runs may survive (SCAN is not a snapshot); running it again is safe.\nExit codes: 0 done, 1 stopped by an error (the count so far is reported), 2 refused, 3 --max-keys reached, 5 unreachable, 130 interrupted.',
    )
    .action(run<FlushOpts>((ctx, opts, args) => flushCommand(ctx, opts, args[0] ?? '')));

  scanOptions(
    group
      .command('keys')
      .description('count the keys matching a pattern (flagged approximate where SCAN makes it so) and show a sample')
      .argument('<pattern>', "Redis glob, e.g. 'user:*'"),
  )
    .addOption(new Option('--limit <n>', 'sample size').argParser(intArg(0, 10_000)).default(20))
    .option('--memory', 'MEMORY USAGE of each sampled key, and an estimate for all')
    .action(run<KeysOpts>((ctx, opts, args) => keysCommand(ctx, opts, args[0] ?? '')));

  group
    .command('stats')
    .description(
      'memory used and peak, keys per database, hit ratio, evictions, expirations, clients (per node in a cluster)',
    )
    .action(run((ctx) => statsCommand(ctx)));

  group
    .command('drain')
    .description(
      "carry out the cache invalidations data migrations still owe (dbops' outbox): after the read replicas replayed them, UNLINK the keys; exit 6 while some stay owed",
    )
    .addOption(
      new Option(
        '--replica-wait <duration>',
        'how long to wait for the read replicas to replay (default 30s or DBOPS_REPLICA_WAIT_MS)',
      ).argParser(durationArg),
    )
    .action(
      run<{ replicaWait?: number }>(async (ctx, opts) => {
        const { drainCommand } = await import('./migrate.js');
        await drainCommand(ctx, opts);
      }),
    );
}

function redisUrl(ctx: CommandContext): string {
  const url = ctx.config.redis?.url;
  if (!url)
    throw new ConfigError('no Redis configured', { hint: 'set REDIS_URL or pass --redis-url redis://host:6379/0' });
  return url;
}

function resolvePrefix(ctx: CommandContext, opts: ScanOpts): string | undefined {
  if (opts.prefix === false) return undefined;
  if (typeof opts.prefix === 'string') return opts.prefix || undefined;
  return ctx.config.cacheKeyPrefix?.value || undefined;
}

/** The endpoint with its user (if any) and a masked password, for the pre-flight line. */
function endpointLabel(url: string, info: TargetInfo): string {
  try {
    const u = new URL(url);
    if (u.username || u.password)
      return info.endpoint.replace('://', `://${decodeURIComponent(u.username)}${u.password ? ':***' : ''}@`);
  } catch {
    // describeRedis already gave a safe label
  }
  return info.endpoint;
}

async function open(ctx: CommandContext): Promise<{ target: CacheTarget; endpoint: string }> {
  const url = redisUrl(ctx);
  const { openTarget } = await import('../../cache/target.js');
  // A hung server must not hang dbops: a command without reply in this time fails the run.
  const target = await openTarget({
    url,
    timeoutMs: ctx.timeoutMs,
    commandTimeoutMs: Math.max(ctx.timeoutMs * 3, 15_000),
  });
  ctx.onClose(() => target.close());
  const endpoint = endpointLabel(url, target.info);
  const i = target.info;
  // Always said, --quiet or not: on call, which server is about to lose keys must be on record.
  const from = ctx.config.redis?.brief ?? 'REDIS_URL';
  ctx.out.stderr(
    `→ Redis ${endpoint} (${from}): ${i.mode}, db ${i.db}, ${i.nodes} ${i.nodes === 1 ? 'node' : 'primaries'}, server ${i.version}`,
  );
  return { target, endpoint };
}

function checkType(opts: ScanOpts, target: CacheTarget): void {
  if (opts.type && !target.info.scanType) {
    throw new UsageError(`--type needs Redis 6 or newer; this server is ${target.info.version}`, {
      hint: 'drop --type',
    });
  }
}

/**
 * The pattern's bytes. Node decodes arguments as UTF-8 and turns bytes that are not into U+FFFD,
 * which would make dbops match (and delete) other keys than the shell's bytes name: such a pattern
 * is refused, with its real bytes (read from /proc/self/cmdline where there is one) in the hint.
 */
export function patternBytes(pattern: string, hex: boolean | undefined): Buffer {
  if (hex) {
    if (!/^(?:[0-9a-fA-F]{2})+$/.test(pattern)) {
      throw new UsageError('--hex: the pattern must be pairs of hex digits', {
        hint: "e.g. --hex 757365723a2a for 'user:*'",
      });
    }
    return Buffer.from(pattern, 'hex');
  }
  if (pattern.includes('\uFFFD')) {
    const raw = rawArgument(pattern);
    throw new UsageError(
      'the pattern is not valid UTF-8: its bytes cannot be read exactly from the command line, so nothing was matched',
      {
        hint: `give the pattern's bytes in hex with --hex${raw ? `, here: --hex ${raw.toString('hex')}` : " (e.g. --hex 62696e3aff2a for $'bin:\\xff*')"}`,
      },
    );
  }
  return Buffer.from(pattern, 'utf8');
}

/**
 * The raw bytes of the argument that Node decoded to `decoded` (Linux: /proc/self/cmdline, or the
 * parent's: bin/dbops.js re-runs a flush as a child, with the arguments already decoded).
 */
function rawArgument(decoded: string): Buffer | undefined {
  for (const pid of ['self', String(process.ppid)]) {
    const found = rawArgumentOf(pid, decoded);
    if (found) return found;
  }
  return undefined;
}

function rawArgumentOf(pid: string, decoded: string): Buffer | undefined {
  try {
    const parts = readFileSync(`/proc/${pid}/cmdline`);
    let start = 0;
    for (let i = 0; i <= parts.length; i++) {
      if (i === parts.length || parts[i] === 0) {
        const arg = parts.subarray(start, i);
        if (arg.toString('utf8') === decoded && !Buffer.from(decoded, 'utf8').equals(arg)) return Buffer.from(arg);
        start = i + 1;
      }
    }
  } catch {
    // no /proc: the hint gives an example instead
  }
  return undefined;
}

/** `ux:user:1*` under the prefix `ux` would match `ux:ux:user:1*`: refused, with both spelled out. */
function refuseDoublePrefix(
  ctx: CommandContext,
  pattern: Buffer,
  prefix: string | undefined,
  effective: Buffer,
  display: (b: Buffer) => string,
): void {
  if (!prefix) return;
  const withColon = prefix.endsWith(':') ? prefix : `${prefix}:`;
  if (!pattern.subarray(0, withColon.length).equals(Buffer.from(withColon, 'utf8'))) return;
  const from =
    ctx.config.cacheKeyPrefix?.value === prefix ? (ctx.config.cacheKeyPrefix.brief ?? 'CACHE_KEY_PREFIX') : '--prefix';
  throw new UsageError(
    `pattern '${display(pattern)}' already starts with the key prefix '${withColon}' (${from}): dbops would match '${display(effective)}'`,
    {
      hint: `drop the prefix from the pattern ('${display(pattern.subarray(withColon.length))}'), or pass --no-prefix to match raw key names`,
    },
  );
}

async function flushCommand(ctx: CommandContext, opts: FlushOpts, argument: string): Promise<void> {
  const { applyPrefix, matchesEverything, displayKey } = await import('../../cache/glob.js');
  const pattern = patternBytes(argument, opts.hex);
  if (pattern.length === 0)
    throw new UsageError('an empty pattern matches nothing useful: refusing', {
      hint: "give a pattern such as 'user:*'",
    });
  const prefix = resolvePrefix(ctx, opts);
  const prefixLabel = prefix ? (prefix.endsWith(':') ? prefix : `${prefix}:`) : '';
  if (matchesEverything(pattern) && !opts.all) {
    throw new UsageError(
      `pattern '${displayKey(pattern)}' matches every key${prefix ? ` under the prefix '${prefixLabel}' ('${displayKey(applyPrefix(pattern, prefix))}')` : ''}: refusing without --all`,
      {
        hint: prefix
          ? 'pass --all if you mean it'
          : 'to empty the whole database use FLUSHDB ASYNC (redis-cli -n <db> FLUSHDB ASYNC), or pass --all',
      },
    );
  }
  const interactive = ctx.out.terminal.interactive;
  if (!opts.dryRun && !opts.yes && !interactive) {
    throw new UsageError('refusing to delete keys without confirmation: no terminal to ask on', {
      hint: 'pass --yes (or look first with --dry-run)',
    });
  }
  const effective = applyPrefix(pattern, prefix);
  refuseDoublePrefix(ctx, pattern, prefix, effective, displayKey);
  const { target, endpoint } = await open(ctx);
  checkType(opts, target);
  const { flushKeys } = await import('../../cache/flush.js');
  const { renderFlush } = await import('../../output/cache.js');
  if (prefix)
    ctx.out.info(`key prefix '${prefixLabel}' (CACHE_KEY_PREFIX or --prefix): matching '${displayKey(effective)}'`);

  const { renderFlushProgress } = await import('../../output/cache.js');
  const runFlush = async (dryRun: boolean, sampleSize: number, total?: number) => {
    // The flush stops after its batch in flight and reports what it removed.
    ctx.stopsGracefully();
    const progress = ctx.out.progress(dryRun ? 'scanning…' : 'flushing…');
    let last = 0;
    try {
      const result = await flushKeys(target, {
        pattern: effective,
        count: opts.count,
        pauseMs: opts.pauseMs,
        maxKeys: opts.maxKeys,
        type: opts.type,
        depth: opts.inFlight,
        dryRun,
        sampleSize,
        signal: ctx.signal,
        onProgress: (p) => {
          const now = Date.now();
          if (now - last < 100) return;
          last = now;
          progress.update(renderFlushProgress(p, { dryRun, total, bar: ctx.out.terminal.animate }));
        },
      });
      progress.stop();
      return result;
    } catch (error) {
      progress.stop();
      throw error;
    }
  };

  let total: number | undefined;
  if (!opts.dryRun && !opts.yes) {
    // On a terminal: show what would go, then ask.
    const preview = await runFlush(true, 10);
    if (preview.stopped === 'interrupted')
      throw new InterruptedError('interrupted during the preview scan: nothing deleted');
    if (preview.stopped === 'error') throw new OperationError(`the preview scan failed: ${preview.error}`);
    ctx.out.info(renderFlush({ ...preview, target: target.info, endpoint }, ctx.out.c, ctx.out.terminal.colour));
    if (preview.matched === 0) ctx.out.info('no matching keys right now; the flush will scan again');
    const ok = await ctx.out.confirm(
      `delete ${preview.matched.toLocaleString('en-US')}${preview.approximate ? ' (approximately)' : ''} keys matching '${displayKey(effective)}' on ${endpoint}?`,
    );
    if (!ok) throw new UsageError('not confirmed: nothing deleted', { hint: 'pass --yes to flush without a prompt' });
    total = preview.matched;
  }

  const result = await runFlush(Boolean(opts.dryRun), 20, total);
  const doc = { ok: result.stopped === 'done', endpoint, target: target.info, prefix: prefix ?? null, ...result };
  ctx.out.result(doc, () => renderFlush(doc, ctx.out.c, ctx.out.terminal.colour));
  const so = `${result.removed.toLocaleString('en-US')} keys removed so far`;
  if (result.stopped === 'interrupted') {
    throw new InterruptedError(`interrupted after the current batch: ${so}`, {
      hint: 'run the same command again to finish (it is idempotent)',
      details: { removed: result.removed },
    });
  }
  if (result.stopped === 'error') {
    throw new OperationError(`flush stopped by an error: ${result.error}; ${so}`, {
      hint: 'check Redis, then run the same command again: it continues where the keys are left',
      details: { removed: result.removed },
    });
  }
  if (result.stopped === 'max-keys') {
    throw new CheckFailedError(`stopped at --max-keys ${opts.maxKeys}: ${so}; more matching keys may remain`, {
      hint: 'check with cache keys, then raise --max-keys or run again',
      details: { removed: result.removed },
    });
  }
}

async function keysCommand(ctx: CommandContext, opts: KeysOpts, argument: string): Promise<void> {
  const { applyPrefix, displayKey } = await import('../../cache/glob.js');
  const pattern = patternBytes(argument, opts.hex);
  if (pattern.length === 0)
    throw new UsageError('an empty pattern matches nothing useful', { hint: "give a pattern such as 'user:*'" });
  const prefix = resolvePrefix(ctx, opts);
  const effective = applyPrefix(pattern, prefix);
  refuseDoublePrefix(ctx, pattern, prefix, effective, displayKey);
  if (prefix)
    ctx.out.info(
      `key prefix '${prefix.endsWith(':') ? prefix : `${prefix}:`}' (CACHE_KEY_PREFIX or --prefix): matching '${displayKey(effective)}'`,
    );
  const { target, endpoint } = await open(ctx);
  checkType(opts, target);
  const { inspectKeys } = await import('../../cache/keys.js');
  const { renderKeys } = await import('../../output/cache.js');
  const { renderFlushProgress } = await import('../../output/cache.js');
  ctx.stopsGracefully();
  const progress = ctx.out.progress('scanning…');
  let last = 0;
  let result: Awaited<ReturnType<typeof inspectKeys>>;
  try {
    result = await inspectKeys(target, {
      pattern: effective,
      count: opts.count,
      limit: opts.limit,
      type: opts.type,
      memory: Boolean(opts.memory),
      signal: ctx.signal,
      onProgress: (p) => {
        const now = Date.now();
        if (now - last < 100) return;
        last = now;
        progress.update(
          renderFlushProgress(
            { ...p, removed: 0, nodesDone: p.nodesDone ?? 0, nodes: p.nodes ?? 1 },
            { dryRun: true, bar: false },
          ),
        );
      },
    });
  } catch (error) {
    progress.stop();
    throw new OperationError(`scan failed: ${(error as Error).message}`, {
      cause: error,
      hint: 'check Redis and run again',
    });
  }
  progress.stop();
  const doc = { endpoint, target: target.info, prefix: prefix ?? null, ...result };
  ctx.out.result(doc, () => renderKeys(doc, ctx.out.c, ctx.out.terminal.colour));
  if (result.interrupted) throw new InterruptedError(`interrupted: counted ${result.count} keys so far`);
}

async function statsCommand(ctx: CommandContext): Promise<void> {
  const { target, endpoint } = await open(ctx);
  const { collectStats } = await import('../../cache/stats.js');
  const { renderStats } = await import('../../output/cache.js');
  const stats = await collectStats(target);
  const doc = { ...stats, endpoint, target: target.info };
  ctx.out.result(doc, () => renderStats(doc, ctx.out.terminal.colour));
}
