/**
 * Cache invalidation owed by data migrations: declared by the migration (`invalidates` patterns,
 * `ctx.invalidate(...)` keys, a backfill's `invalidate` per batch), written to an outbox table in
 * dbops' schema inside the transaction that changed the rows, and carried out after the commit:
 *
 *   commit ─▶ pg_current_wal_lsn() ─▶ every replica replayed it (bounded) ─▶ UNLINK / SCAN+UNLINK ─▶ row done
 *
 * A rolled-back transaction leaves no row (nothing owed); a committed one leaves a row until a
 * drainer marks it done (nothing lost). Drainers lock the rows they work on (FOR UPDATE SKIP
 * LOCKED): two never work on one row, and a killed one's lock goes with its connection. UNLINK is
 * idempotent, so a drain killed after the UNLINK and before the row's update only repeats it.
 *
 * The cache itself is reached through `CacheInvalidator` (implemented by cache/invalidate.ts and
 * handed in by the caller), the replicas through `ReplicaTarget` (replica-wait.ts).
 */
import type { ClientBase } from 'pg';
import { DbopsError, ExitCode, messageOf, UnreachableError } from '../errors.js';
import { DBOPS_DDL, DBOPS_TABLES, dbopsTable, dbopsTableExists, ensureDbopsTable } from './dbops-schema.js';
import { type ReplicaTarget, type ReplicaWait, waitForReplicas } from './replica-wait.js';

// ---------------------------------------------------------------------------------------------
// The API a migration uses
// ---------------------------------------------------------------------------------------------

/** The names between braces in a key template: `'user:{id}'` → `'id'`. */
export type TemplateFields<T extends string> = T extends `${string}{${infer F}}${infer Rest}`
  ? F | TemplateFields<Rest>
  : never;

/** A value a key is made of. */
export type KeyPart = string | number | bigint;

/**
 * What fills a template: a row with every field the template names (an `UPDATE ... RETURNING id`
 * row, a Prisma result), or, for a template with one field, the bare value.
 */
export type TemplateRow<T extends string> = { readonly [K in TemplateFields<T>]: KeyPart } | KeyPart;

/**
 * `ctx.invalidate`: keys this migration makes stale, removed after its commit (after the replicas
 * replayed it). Keys are given without `CACHE_KEY_PREFIX`; dbops adds it.
 *
 * ```ts
 * const { rows } = await ctx.sql<{ id: number }>`UPDATE "User" SET ... RETURNING id`;
 * ctx.invalidate('user:{id}', rows);        // user:1, user:2, ...
 * ctx.invalidate(['stats:users']);          // precise keys
 * ```
 */
export interface Invalidate {
  <T extends string>(template: T, rows: Iterable<TemplateRow<T>>): void;
  (keys: string | Iterable<string>): void;
}

/** What a backfill declares per batch: a template filled with the batch's key values, or a function of them. */
export type BackfillInvalidation = string | ((keys: unknown[]) => Iterable<string>);

/** Fills `template` with each row; throws a TypeError naming the field a row lacks. */
export function expandTemplate(template: string, rows: Iterable<unknown>): string[] {
  // Literal pieces and field names alternate: lit0 {f0} lit1 {f1} lit2 ...
  const parts = template.split(/\{([^{}]+)\}/);
  const fields = parts.filter((_, i) => i % 2 === 1);
  if (fields.length === 0) throw new TypeError(`invalidate('${template}', rows): the template has no {field}`);
  const missing = (f: string) => new TypeError(`invalidate('${template}', rows): a row has no ${f}`);
  const out: string[] = [];
  if (fields.length === 1) {
    // The common case ('user:{id}'), one concatenation per row.
    const [head = '', field = '', tail = ''] = parts;
    for (const row of rows) {
      const v = typeof row === 'object' && row !== null ? (row as Record<string, unknown>)[field] : row;
      if (v === undefined || v === null) throw missing(field);
      out.push(head + String(v) + tail);
    }
    return out;
  }
  for (const row of rows) {
    if (typeof row !== 'object' || row === null)
      throw new TypeError(
        `invalidate('${template}', rows): a row is ${String(row)}, the template needs ${fields.join(', ')}`,
      );
    let key = parts[0] ?? '';
    for (let i = 1; i < parts.length; i += 2) {
      const f = parts[i] as string;
      const v = (row as Record<string, unknown>)[f];
      if (v === undefined || v === null) throw missing(f);
      key += String(v) + (parts[i + 1] ?? '');
    }
    out.push(key);
  }
  return out;
}

/** `prefix` + `:` + key, as `cache flush` and CACHE_KEY_PREFIX spell keys. */
export function prefixKey(key: string, prefix: string | undefined): string {
  if (!prefix) return key;
  return `${prefix}${prefix.endsWith(':') ? '' : ':'}${key}`;
}

/** A pattern under the prefix (the prefix's own glob characters escaped, as `cache flush` does). */
export function prefixPattern(pattern: string, prefix: string | undefined): string {
  if (!prefix) return pattern;
  return `${prefix.replace(/[*?[\]\\]/g, (c) => `\\${c}`)}${prefix.endsWith(':') ? '' : ':'}${pattern}`;
}

/** What one transaction owes: patterns and keys, prefix applied. */
export class Owed {
  readonly patterns: string[] = [];
  readonly keys = new Set<string>();
  /** Called once, when something is first owed (the runner starts connecting to the cache then). */
  private onFirst: (() => void) | undefined;

  constructor(
    readonly prefix: string | undefined,
    onFirst?: () => void,
  ) {
    this.onFirst = onFirst;
  }

  private first(): void {
    const f = this.onFirst;
    this.onFirst = undefined;
    f?.();
  }

  addPatterns(patterns: Iterable<string>): void {
    for (const p of patterns) {
      this.first();
      const full = prefixPattern(p, this.prefix);
      if (!this.patterns.includes(full)) this.patterns.push(full);
    }
  }

  addKeys(keys: Iterable<string>): void {
    const pre = prefixKey('', this.prefix);
    for (const k of keys) {
      if (typeof k !== 'string' || k === '')
        throw new TypeError(`invalidate(): a key must be a non-empty string, got ${String(k)}`);
      if (this.keys.size === 0) this.first();
      this.keys.add(pre + k);
    }
  }

  get empty(): boolean {
    return this.patterns.length === 0 && this.keys.size === 0;
  }

  /** The `ctx.invalidate` function that adds to this. */
  invalidate(): Invalidate {
    return ((what: string | Iterable<string>, rows?: Iterable<unknown>) => {
      if (rows !== undefined) this.addKeys(expandTemplate(what as string, rows));
      else this.addKeys(typeof what === 'string' ? [what] : what);
    }) as Invalidate;
  }
}

// ---------------------------------------------------------------------------------------------
// What carries it out
// ---------------------------------------------------------------------------------------------

/** The cache, as the drain needs it (cache/invalidate.ts). Keys and patterns come with the prefix applied. */
export interface CacheInvalidator {
  /** Where (for messages; no password). */
  readonly endpoint: string;
  /** UNLINK these keys (batched, by cluster slot); how many existed. */
  unlinkKeys(keys: string[]): Promise<number>;
  /** SCAN + UNLINK everything matching; how many were removed. */
  unlinkPattern(pattern: string): Promise<number>;
  /** How many keys match now (a dry run's report). */
  countPattern(pattern: string): Promise<number>;
}

/** How a runner reaches the cache and the replicas (the CLI builds it from REDIS_URL and DATABASE_REPLICA_URLS). */
export interface InvalidationOptions {
  /** CACHE_KEY_PREFIX: put before every key and pattern. */
  keyPrefix?: string | undefined;
  /** Opens the cache (once, on the first drain); undefined: no Redis configured. */
  cache?: (() => Promise<CacheInvalidator>) | undefined;
  replicas?: ReplicaTarget[] | undefined;
  /** Bound on the wait for the replicas (ms, default 30 s). */
  replicaWaitMs?: number | undefined;
  /**
   * Record what is owed in the outbox and carry nothing out now (`--defer-invalidation`: Redis or a
   * replica is down and the deploy cannot wait); `dbops cache drain` does it later.
   */
  defer?: boolean | undefined;
  /** Test hook: called between the commit and the drain (the e2e suite pauses here to aim a SIGKILL). */
  beforeDrain?: (() => Promise<void>) | undefined;
}

export const DEFAULT_REPLICA_WAIT_MS = 30_000;

/** The cache invalidation is still owed: the data change is committed and recorded, the outbox keeps the rest. */
export class InvalidationOwedError extends DbopsError {
  override readonly exitCode = ExitCode.Owed;
  override readonly code = 'INVALIDATION_OWED';
}

/** One outbox row. */
export interface OutboxEntry {
  id: number;
  migration: string;
  direction: 'up' | 'down';
  /** A backfill's batch number (null: the migration's own transaction). */
  batch: number | null;
  patterns: string[];
  keys: number;
  createdAt: Date;
  doneAt: Date | null;
  keysRemoved: number | null;
  replicaWaitMs: number | null;
  /** Per replica: name, waited ms, caught up. */
  replicaWait: ReplicaWait['replicas'] | null;
  attempts: number;
  lastError: string | null;
}

/** Writes what `owed` holds into the outbox, in the caller's open transaction. Returns the row's id (null: nothing owed). */
export async function recordOwed(
  client: ClientBase,
  schema: string,
  owed: Owed,
  what: { migration: string; direction: 'up' | 'down'; batch?: number | undefined },
): Promise<number | null> {
  if (owed.empty) return null;
  await ensureDbopsTable(client, schema, DBOPS_TABLES.outbox, DBOPS_DDL.outbox);
  const { rows } = await client.query<{ id: string }>(
    `INSERT INTO ${dbopsTable(schema, DBOPS_TABLES.outbox)} (migration, direction, batch, prefix, patterns, keys) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
    // The keys as one JSON document: a few ms for 200,000 keys, where a text[] parameter is escaped key by key.
    [
      what.migration,
      what.direction,
      what.batch ?? null,
      owed.prefix ?? null,
      owed.patterns,
      JSON.stringify([...owed.keys]),
    ],
  );
  return Number(rows[0]?.id);
}

/** What a drain did. */
export interface DrainResult {
  rows: number;
  keysRemoved: number;
  /** Precise keys and patterns carried out. */
  keys: number;
  patterns: number;
  replicaWait: ReplicaWait | null;
  entries: { id: number; migration: string; batch: number | null; keysRemoved: number }[];
}

/**
 * Carries out what is owed: every open row (or only `ids`), oldest first, each in a transaction
 * that locks it (SKIP LOCKED: another drainer's rows are left to it). For each row: the primary's
 * WAL position now (after the row's commit), the replicas' replay of it, the UNLINKs, the row
 * marked done. Throws InvalidationOwedError when a replica does not catch up in time or the cache
 * fails; the row stays owed, with its attempt and error recorded.
 */
export async function drainOutbox(
  client: ClientBase,
  schema: string,
  opts: InvalidationOptions,
  cache: () => Promise<CacheInvalidator>,
  only?: number[],
  signal?: AbortSignal,
  /** Rows whose keys the caller already holds (it just wrote them): not read back. */
  known?: Map<number, string[]>,
): Promise<DrainResult> {
  const result: DrainResult = { rows: 0, keysRemoved: 0, keys: 0, patterns: 0, replicaWait: null, entries: [] };
  if (!(await dbopsTableExists(client, schema, DBOPS_TABLES.outbox))) return result;
  const table = dbopsTable(schema, DBOPS_TABLES.outbox);
  const skipped = new Set<number>();
  for (;;) {
    await client.query('BEGIN');
    let id: number | undefined;
    try {
      const params: unknown[] = [[...skipped], [...(known?.keys() ?? [])]];
      if (only) params.push(only);
      const { rows } = await client.query<{
        id: string;
        migration: string;
        batch: number | null;
        patterns: string[];
        keys: string[] | null;
      }>(
        `SELECT id, migration, batch, patterns, CASE WHEN id = ANY($2::bigint[]) THEN NULL ELSE keys END AS keys FROM ${table}
          WHERE done_at IS NULL AND NOT (id = ANY($1::bigint[]))${only ? ' AND id = ANY($3::bigint[])' : ''}
          ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED`,
        params,
      );
      const found = rows[0];
      if (!found) {
        await client.query('COMMIT');
        return result;
      }
      id = Number(found.id);
      const row = { ...found, keys: found.keys ?? known?.get(id) ?? [] };
      const wait =
        opts.replicas && opts.replicas.length > 0
          ? await waitForReplicas(client, opts.replicas, opts.replicaWaitMs ?? DEFAULT_REPLICA_WAIT_MS, signal)
          : null;
      if (wait && !wait.caughtUp) {
        const late = wait.replicas
          .filter((r) => !r.caughtUp)
          .map((r) => `${r.name}${r.error ? ` (${r.error})` : ` (${r.lagBytes ?? '?'} bytes behind)`}`);
        throw new InvalidationOwedError(
          `cache invalidation of ${row.migration} is still owed: replica ${late.join(', ')} did not replay the commit (${wait.lsn}) within ${Math.round(wait.waitedMs)} ms`,
          {
            hint: 'the data change is committed and recorded; the outbox keeps the invalidation: run dbops cache drain once the replica has caught up (dbops pool shows its lag), or raise --replica-wait',
            details: { outboxId: id, lsn: wait.lsn, replicas: wait.replicas },
          },
        );
      }
      const c = await cache().catch((error: unknown) => {
        throw owedBecause(row.migration, error);
      });
      let removed = 0;
      try {
        if (row.keys.length > 0) removed += await c.unlinkKeys(row.keys);
        for (const p of row.patterns) removed += await c.unlinkPattern(p);
      } catch (error) {
        throw owedBecause(row.migration, error);
      }
      await client.query(
        `UPDATE ${table} SET done_at = clock_timestamp(), keys_removed = $2, replica_wait_ms = $3, replica_wait = $4, attempts = attempts + 1, last_error = NULL WHERE id = $1`,
        [id, removed, wait ? Math.round(wait.waitedMs) : null, wait ? JSON.stringify(wait.replicas) : null],
      );
      await client.query('COMMIT');
      result.rows++;
      result.keysRemoved += removed;
      result.keys += row.keys.length;
      result.patterns += row.patterns.length;
      if (wait && (!result.replicaWait || wait.waitedMs > result.replicaWait.waitedMs)) result.replicaWait = wait;
      result.entries.push({ id, migration: row.migration, batch: row.batch, keysRemoved: removed });
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      if (id !== undefined) {
        skipped.add(id);
        await client
          .query(`UPDATE ${table} SET attempts = attempts + 1, last_error = $2 WHERE id = $1 AND done_at IS NULL`, [
            id,
            messageOf(error).slice(0, 500),
          ])
          .catch(() => {});
      }
      throw error instanceof InvalidationOwedError
        ? Object.assign(error, { drained: result })
        : error instanceof DbopsError
          ? error
          : new InvalidationOwedError(`cache invalidation still owed: ${messageOf(error)}`, {
              cause: error,
              hint: OWED_HINT,
            });
    }
  }
}

const OWED_HINT =
  'the data change is committed and recorded; the outbox keeps the invalidation: run dbops cache drain (or the next dbops migrate up does it first)';

function owedBecause(migration: string, error: unknown): InvalidationOwedError {
  const why = error instanceof UnreachableError ? error.message : `Redis failed: ${messageOf(error)}`;
  return new InvalidationOwedError(`cache invalidation of ${migration} is still owed: ${why}`, {
    cause: error,
    hint: OWED_HINT,
  });
}

/** The outbox: rows still owed, and the latest done (newest first), for `migrate status` and `cache drain --list`. */
export async function readOutbox(
  client: ClientBase,
  schema: string,
  doneLimit = 20,
): Promise<{ owed: OutboxEntry[]; done: OutboxEntry[] }> {
  if (!(await dbopsTableExists(client, schema, DBOPS_TABLES.outbox))) return { owed: [], done: [] };
  const table = dbopsTable(schema, DBOPS_TABLES.outbox);
  const cols = `id, migration, direction, batch, patterns, jsonb_array_length(keys) AS keys, created_at, done_at, keys_removed, replica_wait_ms, replica_wait, attempts, last_error`;
  const [owed, done] = await Promise.all([
    client.query(`SELECT ${cols} FROM ${table} WHERE done_at IS NULL ORDER BY id`),
    client.query(`SELECT ${cols} FROM ${table} WHERE done_at IS NOT NULL ORDER BY id DESC LIMIT $1`, [doneLimit]),
  ]);
  return { owed: owed.rows.map(entryOf), done: done.rows.map(entryOf) };
}

function entryOf(r: Record<string, unknown>): OutboxEntry {
  return {
    id: Number(r.id),
    migration: String(r.migration),
    direction: r.direction === 'down' ? 'down' : 'up',
    batch: r.batch === null ? null : Number(r.batch),
    patterns: (r.patterns as string[]) ?? [],
    keys: Number(r.keys ?? 0),
    createdAt: r.created_at as Date,
    doneAt: (r.done_at as Date | null) ?? null,
    keysRemoved: r.keys_removed === null ? null : Number(r.keys_removed),
    replicaWaitMs: r.replica_wait_ms === null ? null : Number(r.replica_wait_ms),
    replicaWait: (r.replica_wait as ReplicaWait['replicas'] | null) ?? null,
    attempts: Number(r.attempts ?? 0),
    lastError: (r.last_error as string | null) ?? null,
  };
}

/**
 * A runner's invalidation machinery: the prefix, the cache opened once on first use, the replicas
 * and the bound. `drain` carries out what is owed on a connection of the primary.
 */
export class InvalidationRuntime {
  private opened: Promise<CacheInvalidator> | undefined;

  constructor(
    readonly schema: string,
    readonly opts: InvalidationOptions,
  ) {}

  get prefix(): string | undefined {
    return this.opts.keyPrefix || undefined;
  }

  /** The cache, opened on first use; a failure to open is retried on the next call. */
  cache(): Promise<CacheInvalidator> {
    const open = this.opts.cache;
    if (!open) {
      return Promise.reject(
        new InvalidationOwedError('cache invalidation is owed but no Redis is configured', {
          hint: 'set REDIS_URL (or --redis-url), then run dbops cache drain; the outbox keeps what is owed',
        }),
      );
    }
    this.opened ??= open().catch((error: unknown) => {
      this.opened = undefined;
      throw error;
    });
    return this.opened;
  }

  drain(
    client: ClientBase,
    only?: number[],
    signal?: AbortSignal,
    known?: Map<number, string[]>,
  ): Promise<DrainResult> {
    if (this.opts.defer)
      return Promise.resolve({ rows: 0, keysRemoved: 0, keys: 0, patterns: 0, replicaWait: null, entries: [] });
    return drainOutbox(client, this.schema, this.opts, () => this.cache(), only, signal, known);
  }

  /** Starts opening the cache while the migration still runs (its latency hidden); a failure is reported by the drain. */
  warm(): void {
    if (this.opts.cache) this.cache().catch(() => {});
  }

  /** Keys matching `pattern` now (null when no Redis is configured or it cannot be reached). */
  async countMatching(pattern: string): Promise<number | null> {
    if (!this.opts.cache) return null;
    try {
      return await (await this.cache()).countPattern(pattern);
    } catch {
      return null;
    }
  }
}
