/**
 * Prisma schema migrations inside a run (`up --with-schema`): applied by Prisma's schema engine
 * while the migration lock is held, or rehearsed as plain SQL inside a rehearsal's transaction.
 */
import { queryError } from '../db/pg.js';
import { ConfigError, DbopsError, messageOf, OperationError } from '../errors.js';
import { schemaOutcome } from './outcome.js';
import type { Session, Transaction } from './session.js';
import type { RunResult } from './types.js';

/** Where the schema engine connects and the folder it reads. */
export interface SchemaTarget {
  url: string | undefined;
  migrationsDir: string;
}

/** Applies consecutive schema migrations under the lock, skipping those someone else applied meanwhile. */
export async function applySchemaGroup(session: Session, target: SchemaTarget, names: string[], result: RunResult): Promise<void> {
  const tx = await session.begin({ lock: true, bounded: false });
  const t0 = performance.now();
  try {
    const { readAppliedSchemaMigrations, applySchemaMigrations } = await import('../db/schema-engine.js');
    const done = new Set((await readAppliedSchemaMigrations(tx.client)).filter((a) => a.finishedAt && !a.rolledBackAt).map((a) => a.name));
    const todo = names.filter((n) => !done.has(n));
    for (const n of names) if (done.has(n)) result.appliedByOthers.push(n);
    for (const n of todo) session.emit({ type: 'start', kind: 'schema', name: n, direction: 'up', dryRun: false });
    if (todo.length > 0) {
      if (!target.url) throw new ConfigError('applying Prisma schema migrations needs a connection string (schemaEngineUrl)');
      try {
        await applySchemaMigrations({ connectionString: target.url, migrationsDir: target.migrationsDir, names: todo });
      } catch (error) {
        throw new OperationError(`schema migration failed: ${messageOf(error)}`, {
          hint: 'see prisma migrate status; fix the migration, then prisma migrate resolve',
          details: { migration: /migration (\S+)/.exec(messageOf(error))?.[1] ?? todo[0], step: 'schema' },
        });
      }
    }
    await session.commit(tx);
    const each = todo.length > 0 ? (performance.now() - t0) / todo.length : 0;
    for (const n of todo) {
      const outcome = schemaOutcome(n, 'applied', each);
      result.outcomes.push(outcome);
      session.emit({ type: 'finish', outcome });
    }
  } catch (error) {
    await session.rollback(tx);
    throw error instanceof DbopsError ? error : queryError(error, 'applying schema migrations');
  }
}

/** Runs a schema migration's SQL inside the rehearsal's transaction (the rehearsal rolls it back). */
export async function rehearseSchema(session: Session, tx: Transaction, name: string, sql: string, result: RunResult): Promise<void> {
  session.emit({ type: 'start', kind: 'schema', name, direction: 'up', dryRun: true });
  const t0 = performance.now();
  try {
    // Prisma's migration.sql in our transaction: a multi-statement simple query.
    await tx.client.query('SAVEPOINT dbops_schema');
    await tx.client.query(sql);
    await tx.client.query('RELEASE SAVEPOINT dbops_schema');
  } catch (error) {
    const outcome = {
      ...schemaOutcome(name, 'rehearsed', performance.now() - t0),
      status: 'failed' as const,
      error: { step: 'schema' as const, message: messageOf(error) },
    };
    result.outcomes.push(outcome);
    session.emit({ type: 'finish', outcome });
    throw new OperationError(`rehearsal: schema migration ${name} failed: ${messageOf(error)} (rolled back)`, {
      details: { migration: name, step: 'schema', cause: messageOf(error) },
    });
  }
  const outcome = schemaOutcome(name, 'rehearsed', performance.now() - t0);
  result.outcomes.push(outcome);
  session.emit({ type: 'finish', outcome });
}
