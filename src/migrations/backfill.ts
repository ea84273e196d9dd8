/**
 * Batched, resumable, throttled backfills of big tables.
 *
 * The table is walked by its key (keyset: `key > $last ORDER BY key LIMIT n`, never OFFSET). Every
 * batch is its own short transaction with `SET LOCAL lock_timeout/statement_timeout`, and the
 * checkpoint row (last key, rows done) is updated in that same transaction, so a crash, a SIGKILL
 * or a lost connection loses at most the batch in flight, and that batch rolled back with it.
 * Each batch starts by locking its checkpoint row and reading the cursor from it (not from
 * memory): a second runner, or the still-committing transaction of a killed one, is waited for
 * instead of being overlapped. Keys are never loaded all at once: a batch asks the index for the
 * upper bound of its next n keys, and the UPDATE covers the range `(last, upper]`.
 *
 * Concurrent writes: the `where` condition is part of every batch's UPDATE, so a row that another
 * session changed so that it no longer matches is left alone (READ COMMITTED re-checks the
 * condition on rows updated concurrently). Rows inserted with a key below the cursor after it
 * passed are not visited: `validate` is where a migration catches them (see docs/backfill.md).
 */
import { createHash } from 'node:crypto';
import type { ClientBase } from 'pg';
import { quoteIdent, quoteQualified } from '../db/pg.js';
import { InterruptedError, messageOf, OperationError, UnreachableError, UsageError } from '../errors.js';
import { sleep } from '../util/sleep.js';
import type {
  BackfillBatchEvent,
  BackfillCheckpoint,
  BackfillEngineOptions,
  BackfillKey,
  BackfillRunOptions,
  BackfillRunResult,
  BackfillSpec,
  TableLockHolder,
} from './backfill-types.js';
import { describeTableLockHolder } from './backfill-types.js';
import {
  DBOPS_DDL,
  DBOPS_TABLES,
  DEFAULT_DBOPS_SCHEMA,
  dbopsTable,
  dbopsTableExists,
  ensureDbopsTable,
  findLegacyTable,
  LEGACY_TABLES,
  readMovable,
} from './dbops-schema.js';

export type * from './backfill-types.js';

export const DEFAULTS = {
  batchSize: 5000,
  minBatchSize: 100,
  maxBatchSize: 100_000,
  targetBatchMs: 200,
  lockTimeoutMs: 2000,
  statementTimeoutMs: 30_000,
  pauseMs: 0,
  /** Above this many rows (pg_class.reltuples) the total is the planner's estimate, not a count. */
  exactCountMaxRows: 2_000_000,
  countTimeoutMs: 10_000,
  maxRetries: 3,
} as const;

/** Sessions (other than ours) holding locks on `table`, oldest transaction first. */
async function tableLockHolders(client: ClientBase, table: string): Promise<TableLockHolder[]> {
  const { rows } = await client.query<{
    pid: number;
    app: string;
    state: string | null;
    state_ms: number | null;
    xact_ms: number | null;
    mode: string;
  }>(
    `SELECT a.pid, coalesce(a.application_name, '') AS app, a.state,
            (extract(epoch FROM clock_timestamp() - a.state_change) * 1000)::float8 AS state_ms,
            (extract(epoch FROM clock_timestamp() - a.xact_start) * 1000)::float8 AS xact_ms, l.mode
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'relation' AND l.relation = to_regclass($1) AND l.granted AND l.pid <> pg_backend_pid()
      ORDER BY a.xact_start NULLS LAST LIMIT 5`,
    [table],
  );
  return rows.map((r) => ({
    pid: r.pid,
    applicationName: r.app,
    state: r.state,
    stateMs: r.state_ms,
    xactMs: r.xact_ms,
    mode: r.mode,
  }));
}

/** Key column types the keyset walk supports (their order is total and stable). */
const KEY_TYPES = new Set(['text', 'varchar', 'bpchar', 'uuid', 'int2', 'int4', 'int8']);
const RETRYABLE = new Set(['55P03', '57014', '40P01', '40001']);
const NETWORK =
  /ECONNRESET|ECONNREFUSED|EPIPE|Connection terminated|terminating connection|server closed the connection|Client has encountered a connection error|not queryable/i;

interface Target {
  /** `"schema"."table"` */
  sql: string;
  /** table name as the user wrote it, for messages and the checkpoint row */
  name: string;
  key: string;
  keySql: string;
  reltuples: number;
}

/** The checkpoint table in dbops' schema, `"dbops"."backfill_checkpoints"`. */
export function checkpointTable(schema: string = DEFAULT_DBOPS_SCHEMA): string {
  return dbopsTable(schema, DBOPS_TABLES.checkpoints);
}

/**
 * Creates the checkpoint table (and dbops' schema) if it does not exist, in a short transaction of
 * its own (checkpoints outlive a failed run: that is what makes a backfill resumable); safe when
 * several processes do it at once.
 */
export async function ensureCheckpointTable(client: ClientBase, schema: string = DEFAULT_DBOPS_SCHEMA): Promise<void> {
  if (await dbopsTableExists(client, schema, DBOPS_TABLES.checkpoints)) return;
  try {
    await client.query('BEGIN');
    await ensureDbopsTable(client, schema, DBOPS_TABLES.checkpoints, DBOPS_DDL.checkpoints);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/** Where the checkpoints are read from: dbops' schema, or dbops 0.1.0's table until it is moved. */
async function checkpointSource(client: ClientBase, schema: string): Promise<string | null> {
  if (await dbopsTableExists(client, schema, DBOPS_TABLES.checkpoints)) return checkpointTable(schema);
  return (await findLegacyTable(client, LEGACY_TABLES.checkpoints))?.name ?? null;
}

async function resolveTarget(client: ClientBase, spec: BackfillSpec): Promise<Target> {
  const rel = await client.query<{ oid: number; nsp: string; rel: string; reltuples: number; kind: string }>(
    `SELECT c.oid::int AS oid, n.nspname AS nsp, c.relname AS rel, c.reltuples::float8 AS reltuples, c.relkind::text AS kind
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = to_regclass($1)`,
    [quoteQualified(spec.table)],
  );
  const r = rel.rows[0];
  if (!r || (r.kind !== 'r' && r.kind !== 'p')) {
    throw new UsageError(`backfill: table "${spec.table}" does not exist`, {
      hint: 'use the table name as in the database (a Prisma model maps to a table of the same name unless @@map says otherwise)',
    });
  }
  const sql = `${quoteIdent(r.nsp)}.${quoteIdent(r.rel)}`;
  let key = spec.key;
  if (!key) {
    const pk = await client.query<{ cols: string[] }>(
      `SELECT array_agg(a.attname::text ORDER BY k.ord) AS cols
         FROM pg_index i
         CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = $1 AND i.indisprimary
        GROUP BY i.indexrelid`,
      [r.oid],
    );
    const cols = pk.rows[0]?.cols ?? [];
    if (cols.length === 0) {
      throw new UsageError(`backfill: table ${spec.table} has no primary key`, {
        hint: 'name a unique, NOT NULL column as the backfill key: { key: "..." }',
      });
    }
    if (cols.length > 1) {
      throw new UsageError(
        `backfill: table ${spec.table} has a composite primary key (${cols.join(', ')}); the keyset walk needs one column`,
        {
          hint: 'name a unique, NOT NULL single column as the backfill key: { key: "..." }',
        },
      );
    }
    key = cols[0] as string;
  }
  const col = await client.query<{ typname: string; notnull: boolean; uniq: boolean }>(
    `SELECT t.typname::text AS typname, a.attnotnull AS notnull,
            EXISTS (SELECT 1 FROM pg_index i
                     WHERE i.indrelid = a.attrelid AND i.indisunique AND i.indisvalid AND i.indnkeyatts = 1
                       AND i.indkey[0] = a.attnum AND i.indpred IS NULL AND i.indexprs IS NULL) AS uniq
       FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
      WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped`,
    [r.oid, key],
  );
  const c = col.rows[0];
  if (!c) throw new UsageError(`backfill: table ${spec.table} has no column "${key}"`);
  if (!KEY_TYPES.has(c.typname)) {
    throw new UsageError(
      `backfill: key ${spec.table}.${key} has type ${c.typname}; supported: text, varchar, uuid, smallint, integer, bigint`,
    );
  }
  if (!c.uniq || !c.notnull) {
    throw new UsageError(`backfill: key ${spec.table}.${key} must be NOT NULL with a unique index of its own`, {
      hint: 'a keyset walk over a non-unique or nullable column would skip or repeat rows',
    });
  }
  return { sql, name: spec.table, key, keySql: quoteIdent(key), reltuples: r.reltuples };
}

interface CheckpointRow {
  key_column: string;
  spec_hash: string | null;
  last_key: string | null;
  rows_done: string;
  batches: string;
  finished: boolean;
}

function errorCode(error: unknown): string | undefined {
  return (error as { code?: string } | null)?.code;
}

/**
 * Next batch size: move toward the size that would take `targetMs`, at most x1.5 up or x0.5 down
 * per batch so one noisy batch does not swing it (GitLab adapts batch sizes the same gradual way).
 */
export function nextBatchSize(current: number, batchMs: number, targetMs: number, min: number, max: number): number {
  if (!targetMs || targetMs <= 0) return current;
  const ratio = targetMs / Math.max(batchMs, 1);
  const factor = Math.min(1.5, Math.max(0.5, ratio));
  return Math.min(max, Math.max(min, Math.round(current * factor)));
}

/** Milliseconds to wait after a batch so that the rows done so far respect the limits. */
export function throttleDelay(opts: {
  rowsThisRun: number;
  elapsedMs: number;
  maxRowsPerSecond?: number | undefined;
  pauseMs?: number | undefined;
}): number {
  const pause = opts.pauseMs ?? 0;
  if (!opts.maxRowsPerSecond || opts.maxRowsPerSecond <= 0) return pause;
  const earliest = (opts.rowsThisRun / opts.maxRowsPerSecond) * 1000;
  return Math.max(pause, Math.ceil(earliest - opts.elapsedMs));
}

function checkSpec(migration: string, spec: BackfillSpec, options: BackfillRunOptions): void {
  if (!spec.set === !spec.run) {
    throw new UsageError(
      `backfill in ${migration}: give exactly one of "set" (an SQL SET clause) or "run" (a function per batch)`,
    );
  }
  for (const [name, value] of Object.entries({
    batchSize: options.batchSize ?? spec.batchSize,
    maxRowsPerSecond: options.maxRowsPerSecond,
    pauseMs: options.pauseMs,
    targetBatchMs: options.targetBatchMs,
    lockTimeoutMs: options.lockTimeoutMs,
    statementTimeoutMs: options.statementTimeoutMs,
  })) {
    if (value !== undefined && (!Number.isFinite(value) || value < 0 || (name === 'batchSize' && value < 1))) {
      throw new UsageError(
        `backfill in ${migration}: ${name} must be a non-negative number${name === 'batchSize' ? ' of at least 1' : ''}, got ${value}`,
      );
    }
  }
}

/** Identifies what a checkpoint belongs to: the same name with other SQL is another backfill. */
function specHash(t: Target, spec: BackfillSpec): string {
  const parts = [t.sql, t.key, spec.where?.trim() ?? '', spec.set?.trim() ?? '', spec.run ? String(spec.run) : ''];
  return createHash('sha256').update(parts.join('\u0000')).digest('hex').slice(0, 16);
}

/**
 * SET LOCALs bounding one of the backfill's own transactions: its statements and idle time by
 * `statementMs`, whatever the server's guards say (a transaction_timeout on PostgreSQL 17+ would
 * end the session, not just the transaction: switched off, the statements are bounded instead).
 */
function localLimits(serverVersion: number, statementMs: number): string {
  const sets = [
    `SET LOCAL statement_timeout = ${statementMs}`,
    `SET LOCAL idle_in_transaction_session_timeout = ${statementMs}`,
  ];
  if (serverVersion >= 170000) sets.push('SET LOCAL transaction_timeout = 0');
  return sets.join('; ');
}

/** Rows still to do: an exact count for tables up to a few million rows, else the planner's estimate. */
async function estimateRemaining(
  client: ClientBase,
  t: Target,
  where: string,
  lastKey: string | null,
  serverVersion: number,
): Promise<{ rows: number; how: 'count' | 'planner' }> {
  const cond = `(${where})${lastKey === null ? '' : ` AND ${t.keySql} > $1`}`;
  const params = lastKey === null ? [] : [lastKey];
  if (t.reltuples < DEFAULTS.exactCountMaxRows) {
    try {
      await client.query(`BEGIN; ${localLimits(serverVersion, DEFAULTS.countTimeoutMs)}`);
      const r = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${t.sql} WHERE ${cond}`, params);
      await client.query('COMMIT');
      return { rows: Number(r.rows[0]?.n ?? 0), how: 'count' };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      if (errorCode(error) !== '57014') throw error;
    }
  }
  const plan = await client.query<{ 'QUERY PLAN': Array<{ Plan: { 'Plan Rows': number } }> }>(
    `EXPLAIN (FORMAT JSON) SELECT 1 FROM ${t.sql} WHERE (${where})`,
  );
  return { rows: Math.round(plan.rows[0]?.['QUERY PLAN'][0]?.Plan['Plan Rows'] ?? 0), how: 'planner' };
}

/**
 * Run (or resume) the backfill `spec` of data migration `migrationName` on a dedicated connection.
 * Returns when every batch is done; throws InterruptedError (checkpoint saved) when `signal`
 * aborts, OperationError naming the key range when a batch fails (nothing after it applied).
 */
export async function runBackfill(
  client: ClientBase,
  migrationName: string,
  spec: BackfillSpec,
  options: BackfillEngineOptions = {},
): Promise<BackfillRunResult> {
  checkSpec(migrationName, spec, options);
  const started = performance.now();
  const where = spec.where?.trim() ? spec.where : 'true';
  const { log, lock: migrationLock, invalidation } = options;
  // Sleeps (throttle, retry back-off) wake when the run is interrupted or its lock is lost.
  const signal =
    options.signal && migrationLock
      ? AbortSignal.any([options.signal, migrationLock.lost])
      : (options.signal ?? migrationLock?.lost);
  const lockLost = () => {
    const lost = migrationLock?.lostError();
    if (lost) throw lost;
  };
  const targetMs = options.targetBatchMs ?? DEFAULTS.targetBatchMs;
  const lockTimeout = Math.floor(options.lockTimeoutMs ?? DEFAULTS.lockTimeoutMs);
  const stmtTimeout = Math.floor(options.statementTimeoutMs ?? DEFAULTS.statementTimeoutMs);
  const maxRps = options.maxRowsPerSecond && options.maxRowsPerSecond > 0 ? options.maxRowsPerSecond : undefined;
  const requested = Math.max(1, Math.floor(options.batchSize ?? spec.batchSize ?? DEFAULTS.batchSize));
  // A batch never holds more than one second's worth of the rate limit.
  const maxBatch = maxRps ? Math.max(1, Math.floor(maxRps)) : Math.max(DEFAULTS.maxBatchSize, requested);
  const minBatch = Math.min(DEFAULTS.minBatchSize, requested, maxBatch);
  let batchSize = Math.min(maxBatch, requested);

  const schema = options.schema ?? DEFAULT_DBOPS_SCHEMA;
  await ensureCheckpointTable(client, schema);
  const ckpt = checkpointTable(schema);
  const t = await resolveTarget(client, spec);
  const hash = specHash(t, spec);
  await client.query(
    `INSERT INTO ${ckpt} (migration, table_name, key_column, spec_hash) VALUES ($1, $2, $3, $4) ON CONFLICT (migration, table_name) DO NOTHING`,
    [migrationName, t.name, t.key, hash],
  );
  const readCk = async () =>
    (
      await client.query<CheckpointRow>(
        `SELECT key_column, spec_hash, last_key, rows_done::text, batches::text, finished_at IS NOT NULL AS finished FROM ${ckpt} WHERE migration = $1 AND table_name = $2`,
        [migrationName, t.name],
      )
    ).rows[0] as CheckpointRow;
  let ck = await readCk();
  if (ck.spec_hash !== hash) {
    // A different backfill under the same name: `down` after `up`, or `up` again after `down`.
    // A finished (or never started) one is replaced; a half-done one must not be continued by other SQL.
    if (!ck.finished && (ck.last_key !== null || Number(ck.rows_done) > 0)) {
      throw new UsageError(
        `backfill ${migrationName} on ${t.name} is unfinished (checkpoint at ${ck.key_column} = ${ck.last_key}) but its spec (table, key, where, set or run) has changed since`,
        { hint: 'restore the migration as it was to resume it, or undo it (dbops migrate down) to start over' },
      );
    }
    await client.query(
      `UPDATE ${ckpt} SET key_column = $3, spec_hash = $4, last_key = NULL, rows_done = 0, batches = 0, estimated_total = NULL,
              started_at = clock_timestamp(), updated_at = clock_timestamp(), finished_at = NULL
        WHERE migration = $1 AND table_name = $2`,
      [migrationName, t.name, t.key, hash],
    );
    ck = await readCk();
  }
  const resumedFrom = ck.last_key;
  let rowsDone = Number(ck.rows_done);
  let batchesTotal = Number(ck.batches);
  const result: BackfillRunResult = {
    batches: 0,
    rows: 0,
    durationMs: 0,
    slowestBatchMs: 0,
    resumedFrom,
    rowsDone,
    throttledMs: 0,
    retries: 0,
    estimate: 'count',
    estimatedTotal: rowsDone,
    alreadyFinished: ck.finished,
  };
  if (ck.finished) {
    log?.(`backfill ${migrationName} on ${t.name} already finished (${rowsDone} rows); nothing to do`);
    result.durationMs = performance.now() - started;
    return result;
  }

  const serverVersion = Number(
    (await client.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`)).rows[0]?.v ?? 0,
  );
  options.onPhase?.(`scanning ${t.name}: counting the rows to change`);
  const est = await estimateRemaining(client, t, where, resumedFrom, serverVersion);
  let estimatedTotal = rowsDone + est.rows;
  result.estimate = est.how;
  await client.query(
    `UPDATE ${ckpt} SET estimated_total = $3, updated_at = clock_timestamp() WHERE migration = $1 AND table_name = $2`,
    [migrationName, t.name, estimatedTotal],
  );
  log?.(
    `backfill ${migrationName}: ${t.sql} by ${t.keySql}, ${est.how === 'count' ? '' : '~'}${est.rows} rows to do${resumedFrom === null ? '' : `, resuming after ${t.key} = ${resumedFrom}`}`,
  );

  const boundsSql = (hasLast: boolean) =>
    `SELECT k::text AS hi FROM (SELECT ${t.keySql} AS k FROM ${t.sql}${hasLast ? ` WHERE ${t.keySql} > $2` : ''} ORDER BY ${t.keySql} LIMIT $1) s ORDER BY k DESC LIMIT 1`;
  const rangeSql = (hasLast: boolean) => `${hasLast ? `${t.keySql} > $2 AND ` : ''}${t.keySql} <= $1 AND (${where})`;
  const runStarted = performance.now();
  let rowsThisRun = 0;
  let attempt = 0;
  let lastKey = resumedFrom;

  for (;;) {
    lockLost();
    if (options.signal?.aborted) {
      throw new InterruptedError(
        `backfill ${migrationName} on ${t.name} interrupted: ${rowsDone.toLocaleString('en-US')} of ~${estimatedTotal.toLocaleString('en-US')} rows done in ${batchesTotal.toLocaleString('en-US')} batches, checkpoint at ${t.key} = ${lastKey ?? '(start)'}`,
        {
          hint: 'every finished batch is saved; run the same command again (dbops migrate up) to resume from the checkpoint',
          details: {
            migration: migrationName,
            table: t.name,
            rowsDone,
            estimatedTotal,
            batches: batchesTotal,
            lastKey,
          },
        },
      );
    }
    const batchStart = performance.now();
    let from: string | null = lastKey;
    let hi: string | undefined;
    let changed = 0;
    let finished = false;
    let batchKeys: unknown[] = [];
    let outboxId: number | null = null;
    let owedKeys = 0;
    try {
      await client.query(`BEGIN; SET LOCAL lock_timeout = ${lockTimeout}; ${localLimits(serverVersion, stmtTimeout)}`);
      // The checkpoint row, locked: the cursor comes from the database, never from memory.
      const lock = await client.query<CheckpointRow>(
        `SELECT key_column, last_key, rows_done::text, batches::text, finished_at IS NOT NULL AS finished FROM ${ckpt} WHERE migration = $1 AND table_name = $2 FOR UPDATE`,
        [migrationName, t.name],
      );
      const row = lock.rows[0];
      if (!row)
        throw new OperationError(
          `backfill ${migrationName}: its checkpoint row disappeared (was it reset while running?)`,
        );
      from = row.last_key;
      rowsDone = Number(row.rows_done);
      batchesTotal = Number(row.batches);
      if (row.finished) {
        finished = true;
      } else {
        const bounds = await client.query<{ hi: string }>(
          boundsSql(from !== null),
          from === null ? [batchSize] : [batchSize, from],
        );
        hi = bounds.rows[0]?.hi;
        if (hi === undefined) {
          finished = true;
          await client.query(
            `UPDATE ${ckpt} SET finished_at = clock_timestamp(), updated_at = clock_timestamp() WHERE migration = $1 AND table_name = $2`,
            [migrationName, t.name],
          );
        } else {
          const params = from === null ? [hi] : [hi, from];
          if (spec.set) {
            const u = await client.query<{ k: BackfillKey }>(
              `UPDATE ${t.sql} SET ${spec.set} WHERE ${rangeSql(from !== null)}${invalidation ? ` RETURNING ${t.keySql} AS k` : ''}`,
              params,
            );
            changed = u.rowCount ?? 0;
            if (invalidation) batchKeys = u.rows.map((r) => r.k);
          } else {
            const keys = await client.query<{ k: BackfillKey }>(
              `SELECT ${t.keySql} AS k FROM ${t.sql} WHERE ${rangeSql(from !== null)} ORDER BY ${t.keySql} FOR UPDATE`,
              params,
            );
            if (keys.rows.length > 0) {
              const n = await (spec.run as NonNullable<BackfillSpec['run']>)(
                keys.rows.map((k) => k.k),
                client,
              );
              changed = typeof n === 'number' ? n : keys.rows.length;
              if (invalidation) batchKeys = keys.rows.map((k) => k.k);
            }
          }
          await client.query(
            `UPDATE ${ckpt} SET last_key = $3, rows_done = rows_done + $4, batches = batches + 1, updated_at = clock_timestamp() WHERE migration = $1 AND table_name = $2`,
            [migrationName, t.name, hi, changed],
          );
        }
      }
      // The batch's cache keys go into the outbox in its own transaction: owed exactly when it commits.
      if (invalidation && batchKeys.length > 0) {
        outboxId = await invalidation.record(client, batchKeys, batchesTotal + 1);
        owedKeys = batchKeys.length;
      }
      // The last word before this batch commits: the migration lock is still this run's.
      if (migrationLock) await migrationLock.check(client);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      lockLost();
      const code = errorCode(error);
      const range = `${t.key} in (${from ?? '-∞'}, ${hi ?? '…'}]`;
      const details = {
        migration: migrationName,
        table: t.name,
        key: t.key,
        fromKey: from,
        toKey: hi ?? null,
        sqlstate: code,
        rowsDone,
        batches: batchesTotal,
      };
      // lock_timeout: name who holds locks on the table (the batch's wait is over, so
      // pg_blocking_pids no longer answers; pg_locks still shows the holders).
      const holders = code === '55P03' ? await tableLockHolders(client, t.sql).catch(() => []) : [];
      if (code && RETRYABLE.has(code) && attempt < DEFAULTS.maxRetries && !signal?.aborted) {
        if (holders.length > 0) options.onLockWait?.(holders);
        attempt++;
        result.retries++;
        if (code === '57014') batchSize = Math.max(minBatch, Math.floor(batchSize / 2));
        log?.(
          `backfill ${migrationName}: batch ${range} hit ${messageOf(error)}; retry ${attempt}/${DEFAULTS.maxRetries} with ${batchSize} keys`,
        );
        await sleep(100 * 2 ** attempt, signal);
        continue;
      }
      const resume = `rows before it are done (${rowsDone} rows, checkpoint at ${t.key} = ${from ?? '(start)'}); nothing from this batch on was applied`;
      if (!code && NETWORK.test(messageOf(error))) {
        throw new UnreachableError(
          `backfill ${migrationName}: lost the connection during the batch ${range} of ${t.name}: ${messageOf(error)}`,
          {
            hint: `${resume}; run the migration again to resume`,
            cause: error,
            details,
          },
        );
      }
      if (error instanceof OperationError || error instanceof UsageError) throw error;
      if (code === '55P03') {
        const who =
          holders.length > 0 ? holders.map(describeTableLockHolder).join(', ') : 'a session that has since let go';
        const idle = holders.find((h) => h.state?.startsWith('idle in transaction'));
        throw new OperationError(
          `backfill ${migrationName}: the batch ${range} of ${t.name} waited ${lockTimeout} ms for a row lock ${attempt + 1} time(s); held by ${who}`,
          {
            hint: idle
              ? `${resume}. pid ${idle.pid} is idle in transaction: end that transaction (COMMIT or ROLLBACK in its session, or SELECT pg_terminate_backend(${idle.pid})), then run the migration again to resume`
              : `${resume}. Wait for those transactions to finish (dbops locks shows them), then run the migration again to resume`,
            cause: error,
            details: { ...details, holders },
          },
        );
      }
      const constraint = (error as { constraint?: string }).constraint;
      throw new OperationError(
        `backfill ${migrationName} failed on ${t.name} rows with ${range}: ${messageOf(error)}`,
        {
          hint: `${resume}. Fix the data or the migration${constraint ? ` (constraint ${constraint})` : ''}, then run it again to resume`,
          cause: error,
          details: { ...details, constraint },
        },
      );
    }
    attempt = 0;
    // After the batch's commit: its invalidation (a failure leaves it in the outbox and stops the run).
    if (invalidation && outboxId !== null) await invalidation.drain(client, outboxId, owedKeys);
    if (finished) break;

    const batchMs = performance.now() - batchStart;
    lastKey = hi ?? lastKey;
    rowsDone += changed;
    rowsThisRun += changed;
    batchesTotal++;
    result.batches++;
    result.rows = rowsThisRun;
    result.slowestBatchMs = Math.max(result.slowestBatchMs, batchMs);
    estimatedTotal = Math.max(estimatedTotal, rowsDone);
    batchSize = nextBatchSize(batchSize, batchMs, targetMs, minBatch, maxBatch);
    const elapsed = performance.now() - runStarted;
    const rps = elapsed > 0 ? (rowsThisRun / elapsed) * 1000 : 0;
    const event: BackfillBatchEvent = {
      migration: migrationName,
      table: t.name,
      rowsDone,
      estimatedTotal,
      batches: batchesTotal,
      rowsPerSecond: rps,
      etaMs: rps > 0 ? Math.round(((estimatedTotal - rowsDone) / rps) * 1000) : null,
      lastKey,
      batchMs,
      batchSize,
    };
    // A callback may return a promise (typed void in the contract): the next batch waits for it.
    await options.onProgress?.(event);
    const delay = throttleDelay({
      rowsThisRun,
      elapsedMs: performance.now() - runStarted,
      maxRowsPerSecond: maxRps,
      pauseMs: options.pauseMs,
    });
    if (delay > 0) {
      const s = performance.now();
      await sleep(delay, signal);
      result.throttledMs += performance.now() - s;
    }
  }

  result.rowsDone = rowsDone;
  result.estimatedTotal = Math.max(estimatedTotal, rowsDone);
  result.durationMs = performance.now() - started;
  return result;
}

/** Every backfill checkpoint (finished or not), oldest first; [] when none ever ran. */
export async function readBackfillProgress(
  client: ClientBase,
  schema: string = DEFAULT_DBOPS_SCHEMA,
): Promise<BackfillCheckpoint[]> {
  const r = await readMovable(async () => {
    const ckpt = await checkpointSource(client, schema);
    if (!ckpt) return null;
    return client.query<{
      migration: string;
      table_name: string;
      rows_done: string;
      estimated_total: string | null;
      last_key: string | null;
      batches: string;
      started_at: Date;
      updated_at: Date;
      finished: boolean;
    }>(
      `SELECT migration, table_name, rows_done::text, estimated_total::text, last_key, batches::text, started_at, updated_at, finished_at IS NOT NULL AS finished
       FROM ${ckpt} ORDER BY started_at, migration, table_name`,
    );
  });
  if (!r) return [];
  return r.rows.map((row) => {
    const rowsDone = Number(row.rows_done);
    const total = row.estimated_total === null ? null : Math.max(Number(row.estimated_total), rowsDone);
    const percent = row.finished
      ? 100
      : total === null || total === 0
        ? 0
        : Math.min(99.9, Math.floor((rowsDone / total) * 1000) / 10);
    return {
      migration: row.migration,
      table: row.table_name,
      rowsDone,
      estimatedTotal: total ?? rowsDone,
      percent,
      lastKey: row.last_key,
      batches: Number(row.batches),
      startedAt: row.started_at,
      updatedAt: row.updated_at,
      finished: row.finished,
    };
  });
}

/** Forget the checkpoints of a migration (its `down` ran): the next `up` starts from the beginning. */
export async function resetBackfill(
  client: ClientBase,
  migrationName: string,
  schema: string = DEFAULT_DBOPS_SCHEMA,
): Promise<number> {
  if (!(await dbopsTableExists(client, schema, DBOPS_TABLES.checkpoints))) return 0;
  const ckpt = checkpointTable(schema);
  const r = await client.query(`DELETE FROM ${ckpt} WHERE migration = $1`, [migrationName]);
  return r.rowCount ?? 0;
}
