/**
 * Prisma schema migrations inside a run (`up --with-schema`), applied as `prisma migrate deploy`
 * applies them (db/prisma-migrations.ts), one at a time so each reports its own start and time:
 *
 * - for real: while the migration lock transaction is held (and Prisma's own lock, so a concurrent
 *   `prisma migrate deploy` cannot interleave), on the session's second connection, each script in
 *   its own implicit transaction as Prisma runs it;
 * - rehearsed: inside the rehearsal's transaction, through the same checks, so a rehearsal fails
 *   where the real run would (a schema that needs a baseline, a failed migration, a script error).
 */
import { queryError } from '../db/pg.js';
import type { SchemaMigrationFile } from '../db/prisma-migrations.js';
import { DbopsError, InterruptedError, LockError, messageOf, OperationError } from '../errors.js';
import { schemaOutcome } from './outcome.js';
import { releaseSnapshot, type Session, type Transaction } from './session.js';
import type { MigrationOutcome, RunResult } from './types.js';

/** The application's PostgreSQL schema (where `_prisma_migrations` is) and its migration files by name. */
export interface SchemaTarget {
  schema: string;
  files: Map<string, SchemaMigrationFile>;
}

/**
 * Applies consecutive schema migrations under the lock, skipping those someone else applied
 * meanwhile. Stops between two migrations when the run is interrupted (what was applied stays).
 */
export async function applySchemaGroup(
  session: Session,
  target: SchemaTarget,
  names: string[],
  result: RunResult,
): Promise<void> {
  const tx = await session.begin({ lock: true, bounded: false });
  const { PRISMA_ADVISORY_LOCK, applySchemaMigration, prepareSchemaHistory, readAppliedSchemaMigrations } =
    await import('../db/prisma-migrations.js');
  try {
    await takePrismaLock(tx, PRISMA_ADVISORY_LOCK);
    const done = new Set(
      (await readAppliedSchemaMigrations(tx.client, target.schema))
        .filter((a) => a.finishedAt && !a.rolledBackAt)
        .map((a) => a.name),
    );
    const todo = names.filter((n) => !done.has(n));
    for (const n of names) {
      if (!done.has(n)) continue;
      result.appliedByOthers.push(n);
      session.emit({ type: 'skip', name: n, reason: 'applied meanwhile by another runner' });
    }
    if (todo.length > 0) {
      await releaseSnapshot(tx);
      const work = await session.aux();
      await setSearchPath(work, target.schema);
      await step(
        session,
        result,
        todo[0] as string,
        false,
        async () => {
          await prepareSchemaHistory(work, target.schema);
          return undefined;
        },
        { silent: true },
      );
      for (const name of todo) {
        if (session.signal?.aborted) {
          throw new InterruptedError(`interrupted before ${name}`, {
            hint: 'run dbops migrate up --with-schema again to continue',
          });
        }
        await step(session, result, name, false, async () => ({
          durationMs: await applySchemaMigration(work, fileOf(target, name), target.schema),
          notes: [],
        }));
      }
    }
    await session.commit(tx);
  } catch (error) {
    await session.rollback(tx);
    throw error instanceof DbopsError ? error : queryError(error, 'applying schema migrations');
  }
}

/**
 * Where a rehearsal cannot go on: PostgreSQL (before 17, or for a type it did not create in this
 * transaction) lets a transaction use an enum value it added only after COMMIT, which a rehearsal
 * never does, while the real run commits each migration. Not a failure of the real run: the
 * rehearsal stops there and says so.
 */
export class RehearsalLimit extends Error {
  constructor(
    readonly migration: string,
    message: string,
  ) {
    super(message);
  }
}

/** What a rehearsal remembers between schema migrations: the enum values each one added. */
export class RehearsalState {
  readonly enumValues = new Map<string, string>();
}

/** Rehearses a schema migration inside the rehearsal's transaction (the rehearsal rolls it back). */
export async function rehearseSchema(
  session: Session,
  tx: Transaction,
  target: SchemaTarget,
  name: string,
  result: RunResult,
  state: RehearsalState,
): Promise<void> {
  const { PRISMA_ADVISORY_LOCK, prepareSchemaHistory, rehearseSchemaMigration } = await import(
    '../db/prisma-migrations.js'
  );
  await takePrismaLock(tx, PRISMA_ADVISORY_LOCK);
  await step(session, result, name, true, async () => {
    await prepareSchemaHistory(tx.client, target.schema);
    try {
      const done = await rehearseSchemaMigration(tx.client, fileOf(target, name), target.schema);
      for (const value of done.enumValues) state.enumValues.set(value, name);
      return done;
    } catch (error) {
      throw enumLimit(error, name, state) ?? error;
    }
  });
}

/** The RehearsalLimit when `error` is the use of an enum value an earlier migration of this rehearsal added. */
function enumLimit(error: unknown, name: string, state: RehearsalState): RehearsalLimit | undefined {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code !== '55P04') return undefined;
  for (const [value, addedBy] of state.enumValues) {
    if (addedBy === name || !cause.message?.includes(`"${value}"`)) continue;
    return new RehearsalLimit(
      name,
      `rehearsed up to ${name}, which uses the enum value "${value}" that ${addedBy} adds: PostgreSQL lets a transaction use an enum value it added only after COMMIT (17+: when it also created the type), and a rehearsal never commits; the real run commits ${addedBy} first, so this is not a failure. To rehearse the rest: dbops migrate up --with-schema --to ${addedBy}, then --dry-run again`,
    );
  }
  return undefined;
}

/**
 * One schema migration (or, `silent`, the checks before the first): its start and finish events and
 * outcome with its own time, or its failed outcome and the error the run stops with.
 */
async function step(
  session: Session,
  result: RunResult,
  name: string,
  rehearsal: boolean,
  fn: () => Promise<{ durationMs: number; notes: string[] } | undefined>,
  opts: { silent?: boolean } = {},
): Promise<void> {
  const status = rehearsal ? 'rehearsed' : 'applied';
  if (!opts.silent) session.emit({ type: 'start', kind: 'schema', name, direction: 'up', dryRun: rehearsal });
  const t0 = performance.now();
  try {
    const done = await fn();
    if (opts.silent || !done) return;
    const outcome = schemaOutcome(name, status, done.durationMs);
    if (done.notes.length > 0) outcome.note = done.notes.join('; ');
    finish(session, result, outcome);
  } catch (error) {
    if (error instanceof DbopsError) throw error;
    if (error instanceof RehearsalLimit) {
      finish(session, result, {
        ...schemaOutcome(name, status, performance.now() - t0),
        status: 'skipped',
        note: 'not rehearsed (see below)',
      });
      throw error;
    }
    const failed = (error as { migration?: string }).migration ?? name;
    const message = messageOf(error).replace(/^migration \S+ failed: /, '');
    finish(session, result, {
      ...schemaOutcome(failed, status, performance.now() - t0),
      status: 'failed',
      error: { step: 'schema', message },
    });
    throw schemaError(error, failed, message, rehearsal);
  }
}

function fileOf(target: SchemaTarget, name: string): SchemaMigrationFile {
  const file = target.files.get(name);
  if (!file)
    throw new OperationError(`schema migration ${name}: its folder is gone`, { hint: 'see dbops migrate status' });
  return file;
}

function finish(session: Session, result: RunResult, outcome: MigrationOutcome): void {
  result.outcomes.push(outcome);
  session.emit({ type: 'finish', outcome });
}

/** Prisma's migration lock, in our transaction: a `prisma migrate deploy` running now would interleave with us. */
async function takePrismaLock(tx: Transaction, key: number): Promise<void> {
  const { rows } = await tx.client.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS ok', [key]);
  if (!rows[0]?.ok) {
    throw new LockError(
      'Prisma’s migration lock is held: a prisma migrate deploy (or dev) is running on this database',
      {
        hint: 'wait for it to finish, then run dbops migrate up --with-schema again',
      },
    );
  }
}

/** The application's schema first on the search path, as Prisma's engine sets it for `?schema=`. */
async function setSearchPath(client: Transaction['client'], schema: string): Promise<void> {
  if (schema === 'public') return;
  const { quoteIdent } = await import('../db/pg.js');
  await client.query(`SELECT set_config('search_path', $1, false)`, [quoteIdent(schema)]);
}

/** The error a run stops with when a schema migration fails, with Prisma's code and how to go on. */
function schemaError(error: unknown, migration: string, message: string, rehearsal: boolean): DbopsError {
  const prismaCode = (error as { code?: unknown }).code;
  if (typeof prismaCode !== 'string' || !prismaCode.startsWith('P'))
    return queryError(error, `applying the schema migration ${migration}`);
  const next =
    prismaCode === 'P3005'
      ? 'the schema has tables but no _prisma_migrations: baseline it first (prisma migrate resolve --applied <migration>), see https://pris.ly/d/migrate-baseline'
      : prismaCode === 'P3009'
        ? `resolve the failed migration first (prisma migrate resolve --rolled-back ${migration}, or --applied), then run again`
        : `fix the migration, mark it rolled back (prisma migrate resolve --rolled-back ${migration}) and run again`;
  return new OperationError(
    `${rehearsal ? 'rehearsal: ' : ''}schema migration ${migration} ${rehearsal ? 'would fail' : 'failed'}: ${message}${rehearsal ? ' (rolled back)' : ''}`,
    {
      hint: rehearsal ? `the real run would stop here too: ${next}` : next,
      details: { migration, step: 'schema', prismaCode },
      cause: error,
    },
  );
}
