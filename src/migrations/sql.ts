/**
 * `ctx.sql`: a tagged template that turns every interpolated value into a bind parameter, plus a
 * recorder that counts the statements and rows a migration ran (for rehearsal reports).
 */
import type { ClientBase, QueryResult } from 'pg';
import { quoteQualified } from '../db/pg.js';
import { UsageError } from '../errors.js';
import { transactionControl } from './tx-guard.js';
import type { SqlFragment, SqlResult, SqlTag, StatementStat } from './types.js';

const FRAGMENT = Symbol.for('dbops.sqlFragment');

function fragment(text: string, values: readonly unknown[] = []): SqlFragment {
  const f = { text, values };
  Object.defineProperty(f, FRAGMENT, { value: true });
  return f;
}

function isFragment(v: unknown): v is SqlFragment {
  return typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[FRAGMENT] === true;
}

/** Builds `{text, values}` from a template: values → $n, fragments spliced (their $n renumbered). */
export function buildSql(strings: readonly string[], values: readonly unknown[]): { text: string; values: unknown[] } {
  let text = strings[0] ?? '';
  const out: unknown[] = [];
  values.forEach((value, i) => {
    if (isFragment(value)) {
      const offset = out.length;
      text += value.text.replace(/\$(\d+)/g, (_, n: string) => `$${Number(n) + offset}`);
      out.push(...value.values);
    } else {
      out.push(value);
      text += `$${out.length}`;
    }
    text += strings[i + 1] ?? '';
  });
  return { text, values: out };
}

/** What a statement of a migration is checked against before it is sent. */
export interface StatementGuard {
  /**
   * The migration runs inside dbops' transaction, whose end dbops owns (the ledger row commits
   * with it): a COMMIT from the migration would record it applied before validate ran.
   */
  inTransaction: boolean;
  /** The migration's (lock) transaction: once it is lost, nothing more is sent. */
  tx?: { lostError(): Error | undefined } | undefined;
}

/**
 * Refuses a statement that would begin or end the migration's transaction (PostgreSQL's own
 * grammar decides, see tx-guard.ts), and any statement once the migration's transaction is lost.
 * `via` names the path in the message (ctx.sql, ctx.prisma).
 */
export async function guardStatement(text: string, guard: StatementGuard, via: string): Promise<void> {
  const lost = guard.tx?.lostError();
  if (lost) throw lost;
  if (!guard.inTransaction) return;
  const control = await transactionControl(text);
  if (control) {
    throw new UsageError(
      `${via}: transaction control is not allowed inside a migration's transaction: ${compact(control).slice(0, 80)}`,
      {
        hint: 'dbops commits up, validate and the ledger row together; use SAVEPOINT, or defineDataMigration({ transaction: false })',
      },
    );
  }
}

/** `ctx.sql` on `client`, each statement checked by `guard` first. */
export function createSqlTag(client: ClientBase, guard: StatementGuard = { inTransaction: false }): SqlTag {
  const run = async <R>(text: string, values: unknown[]): Promise<SqlResult<R>> => {
    await guardStatement(text, guard, 'ctx.sql');
    const res = (await client.query(text, values)) as unknown as QueryResult<R & Record<string, unknown>>;
    return { rows: res.rows, rowCount: res.rowCount ?? 0 };
  };
  const tag = (<R>(strings: TemplateStringsArray, ...values: unknown[]) => {
    const q = buildSql(strings, values);
    return run<R>(q.text, q.values);
  }) as SqlTag;
  tag.query = <R>(text: string, values: unknown[] = []) => run<R>(text, values);
  tag.ident = (name: string) => fragment(quoteQualified(name));
  tag.raw = (text: string) => fragment(text);
  return tag;
}

/** Records every statement sent on `client` until stop() (both ctx.sql and Prisma go through it). */
export function recordStatements(client: ClientBase): { stats: StatementStat[]; stop(): void } {
  const stats: StatementStat[] = [];
  const original = client.query;
  const patched = function (this: ClientBase, ...args: unknown[]): unknown {
    const first = args[0] as string | { text?: string } | undefined;
    const sql = typeof first === 'string' ? first : (first?.text ?? '');
    const started = performance.now();
    const note = (res: unknown) => {
      const r = res as { command?: string; rowCount?: number | null } | undefined;
      stats.push({
        sql: compact(sql),
        command: r?.command ?? null,
        rowCount: r?.rowCount ?? null,
        durationMs: performance.now() - started,
      });
    };
    const result = (original as (...a: unknown[]) => unknown).apply(this, args);
    if (result instanceof Promise) {
      return result.then(
        (res) => {
          note(res);
          return res;
        },
        (error: unknown) => {
          note(undefined);
          throw error;
        },
      );
    }
    return result;
  };
  client.query = patched as typeof client.query;
  return {
    stats,
    stop: () => {
      client.query = original;
    },
  };
}

export function compact(sql: string): string {
  const one = sql.replace(/\s+/g, ' ').trim();
  return one.length > 100 ? `${one.slice(0, 97)}...` : one;
}

/** Statements that changed or returned rows (excludes our savepoint bookkeeping). */
export function summarise(stats: StatementStat[]): { statements: number; rowsAffected: number } {
  let rows = 0;
  let n = 0;
  for (const s of stats) {
    if (
      s.command === 'SAVEPOINT' ||
      s.command === 'RELEASE' ||
      /^(SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT) dbops_/.test(s.sql)
    )
      continue;
    n++;
    if (s.command && ['INSERT', 'UPDATE', 'DELETE', 'MERGE', 'COPY'].includes(s.command)) rows += s.rowCount ?? 0;
  }
  return { statements: n, rowsAffected: rows };
}
