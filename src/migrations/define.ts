/**
 * `defineDataMigration`: the helper a migration module default-exports. It only brands and
 * returns the object, so a module stays a plain value that the loader can check.
 */
import type { DataMigration } from './types.js';

/** Marks objects made by defineDataMigration (a registered symbol survives duplicate module copies). */
export const DATA_MIGRATION = Symbol.for('dbops.dataMigration');

/**
 * Declare a data migration. `P` is your generated PrismaClient type, for typed `ctx.prisma`:
 * `defineDataMigration<PrismaClient>({ up: async ({ prisma }) => ... })`.
 */
export function defineDataMigration<P = unknown, O extends Record<string, unknown> = Record<string, unknown>>(
  migration: DataMigration<P, O>,
): DataMigration<P, O> {
  if (typeof migration?.up !== 'function') throw new TypeError('defineDataMigration: `up` must be a function');
  Object.defineProperty(migration, DATA_MIGRATION, { value: true, enumerable: false });
  return migration;
}
