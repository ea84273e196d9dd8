/**
 * `ctx.sql`: a tagged template that turns every interpolated value into a bind parameter, plus a
 * recorder that counts the statements and rows a migration ran (for rehearsal reports).
 */
import type { ClientBase, QueryResult } from 'pg';
import { quoteQualified } from '../db/pg.js';
import { UsageError } from '../errors.js';
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

/** BEGIN, COMMIT, ROLLBACK (not ROLLBACK TO), END, ABORT, START TRANSACTION, PREPARE/COMMIT PREPARED. */
const TRANSACTION_CONTROL = /(^|;)\s*(begin|commit|end|abort|start\s+transaction|prepare\s+transaction|rollback(?!\s+to\b))\b/i;

function withoutComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/--[^\n]*/g, ' ');
}

/**
 * `inTransaction`: the migration runs inside dbops' transaction, whose end dbops owns (the ledger
 * row commits with it). A COMMIT from the migration would record it applied before validate ran.
 */
export function createSqlTag(client: ClientBase, inTransaction = false): SqlTag {
  const run = async <R>(text: string, values: unknown[]): Promise<SqlResult<R>> => {
    if (inTransaction && TRANSACTION_CONTROL.test(withoutComments(text))) {
      throw new UsageError(`ctx.sql: transaction control is not allowed inside a migration's transaction: ${compact(text).slice(0, 80)}`, {
        hint: 'dbops commits up, validate and the ledger row together; use SAVEPOINT, or defineDataMigration({ transaction: false })',
      });
    }
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
      stats.push({ sql: compact(sql), command: r?.command ?? null, rowCount: r?.rowCount ?? null, durationMs: performance.now() - started });
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

function compact(sql: string): string {
  const one = sql.replace(/\s+/g, ' ').trim();
  return one.length > 100 ? `${one.slice(0, 97)}...` : one;
}

/** Statements that changed or returned rows (excludes our savepoint bookkeeping). */
export function summarise(stats: StatementStat[]): { statements: number; rowsAffected: number } {
  let rows = 0;
  let n = 0;
  for (const s of stats) {
    if (s.command === 'SAVEPOINT' || s.command === 'RELEASE' || /^(SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT) dbops_/.test(s.sql)) continue;
    n++;
    if (s.command && ['INSERT', 'UPDATE', 'DELETE', 'MERGE', 'COPY'].includes(s.command)) rows += s.rowCount ?? 0;
  }
  return { statements: n, rowsAffected: rows };
}
