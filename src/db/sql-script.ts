/**
 * What a SQL script (a Prisma `migration.sql`) does to a transaction, read with PostgreSQL's own
 * parser (libpg-query), never with a pattern: its statements, which of them are transaction control
 * (`BEGIN; ... COMMIT;`, as Prisma writes around enum changes) and which cannot run inside a
 * transaction block (`CREATE INDEX CONCURRENTLY`).
 *
 * Prisma's engine sends a whole migration.sql as one simple-protocol query, which PostgreSQL runs as
 * one implicit transaction. A rehearsal runs the same script inside its own transaction, where a
 * `COMMIT` would commit the rehearsal: `rehearsalPlan` turns the script into statements that behave
 * there as the script behaves on its own, or says why it would fail, or what cannot be rehearsed.
 */
import { messageOf } from '../errors.js';

type Node = Record<string, Record<string, unknown>>;

export interface ScriptStatement {
  /** The statement's text, as written. */
  text: string;
  /** The parse node's type: `CreateStmt`, `TransactionStmt`, `IndexStmt`, ... */
  kind: string;
  node: Record<string, unknown>;
}

type PgQuery = typeof import('libpg-query');
let parser: Promise<PgQuery> | undefined;

async function loadParser(): Promise<PgQuery> {
  parser ??= (async () => {
    const mod = await import('libpg-query');
    await mod.loadModule();
    return mod;
  })();
  return parser;
}

/** The script's statements, or null when PostgreSQL's grammar rejects it (the server will say why). */
export async function splitScript(sql: string): Promise<ScriptStatement[] | null> {
  const pgQuery = await loadParser();
  let stmts: { stmt?: Node; stmt_location?: number; stmt_len?: number }[];
  try {
    stmts = (pgQuery.parseSync(sql).stmts ?? []) as unknown as typeof stmts;
  } catch {
    return null;
  }
  // Locations are byte offsets into the UTF-8 text.
  const bytes = Buffer.from(sql, 'utf8');
  return stmts.map((s) => {
    const start = s.stmt_location ?? 0;
    const end = s.stmt_len ? start + s.stmt_len : bytes.length;
    const [kind, node] = Object.entries(s.stmt ?? {})[0] ?? ['', {}];
    return { text: bytes.subarray(start, end).toString('utf8').trim(), kind, node };
  });
}

/** Why this statement cannot run inside a transaction block, or null when it can. */
export function nonTransactional(s: ScriptStatement): string | null {
  const n = s.node;
  switch (s.kind) {
    case 'IndexStmt':
      return n.concurrent ? 'CREATE INDEX CONCURRENTLY' : null;
    case 'DropStmt':
      return n.concurrent ? 'DROP INDEX CONCURRENTLY' : null;
    case 'ReindexStmt': {
      const params = (n.params as Node[] | undefined) ?? [];
      const concurrently = params.some(
        (p) => (p.DefElem as { defname?: string } | undefined)?.defname === 'concurrently',
      );
      return concurrently
        ? 'REINDEX CONCURRENTLY'
        : n.kind === 'REINDEX_OBJECT_DATABASE' || n.kind === 'REINDEX_OBJECT_SYSTEM'
          ? 'REINDEX'
          : null;
    }
    case 'VacuumStmt':
      return n.is_vacuumcmd ? 'VACUUM' : null;
    case 'CreatedbStmt':
      return 'CREATE DATABASE';
    case 'DropdbStmt':
      return 'DROP DATABASE';
    case 'CreateTableSpaceStmt':
      return 'CREATE TABLESPACE';
    case 'DropTableSpaceStmt':
      return 'DROP TABLESPACE';
    case 'AlterSystemStmt':
      return 'ALTER SYSTEM';
    case 'ClusterStmt':
      return n.relation ? null : 'CLUSTER';
    case 'CreateSubscriptionStmt':
    case 'DropSubscriptionStmt':
    case 'AlterSubscriptionStmt':
      return 'a SUBSCRIPTION command';
    default:
      return null;
  }
}

/** A script as a rehearsal runs it inside its transaction. */
export type RehearsalPlan = (
  | /** Send the script as it is: it has no transaction control and nothing that needs to be outside one. */
  { kind: 'whole' }
  /** Send these statements one by one: its own BEGIN/COMMIT left out (or savepoints, for a ROLLBACK). */
  | { kind: 'statements'; statements: string[]; notes: string[] }
  /** The real run would fail here, with this PostgreSQL error. */
  | { kind: 'fails'; message: string; code: string }
) & {
  /** Enum values the script adds (`ALTER TYPE ... ADD VALUE`): a rehearsal cannot use them after it (PostgreSQL < 17). */
  enumValues: string[];
};

const BLOCK = 'dbops_script_block';

/**
 * How to rehearse `sql`:
 * - `BEGIN`/`START TRANSACTION` and `COMMIT`/`END` are left out (the rehearsal's transaction holds
 *   everything), unless the script also has a `ROLLBACK`: then its block is a savepoint that the
 *   ROLLBACK rolls back to, as the real run would;
 * - a statement that cannot run in a transaction block fails the real run unless it is the
 *   script's only statement (the engine then sends it alone); alone, `CREATE/DROP INDEX
 *   CONCURRENTLY` is rehearsed as the same statement without CONCURRENTLY (same result, in the
 *   transaction), anything else is not rehearsed (a note says so);
 * - `PREPARE TRANSACTION` and friends cannot be rehearsed: the plan fails.
 */
export async function rehearsalPlan(sql: string): Promise<RehearsalPlan> {
  const statements = await splitScript(sql);
  if (!statements) return { kind: 'whole', enumValues: [] };
  const enumValues = statements.flatMap((s) =>
    s.kind === 'AlterEnumStmt' && typeof s.node.newVal === 'string' ? [s.node.newVal] : [],
  );
  const outside = statements.map(nonTransactional);
  const control = statements.some((s) => s.kind === 'TransactionStmt' || isSetTransaction(s));
  if (!control && outside.every((o) => o === null)) return { kind: 'whole', enumValues };
  const first = outside.find((o) => o !== null);
  if (first && statements.length > 1) {
    // PostgreSQL runs a script of several statements as one transaction: its own error, word for word.
    return { kind: 'fails', code: '25001', message: `${first} cannot run inside a transaction block`, enumValues };
  }
  if (first) {
    const only = statements[0] as ScriptStatement;
    if (only.kind === 'IndexStmt' || only.kind === 'DropStmt') {
      const notes = [`rehearsed without CONCURRENTLY: ${first} cannot run in the rehearsal's transaction`];
      return { kind: 'statements', statements: [await withoutConcurrently(only.text)], notes, enumValues };
    }
    return {
      kind: 'statements',
      statements: [],
      notes: [`not rehearsed: ${first} cannot run in the rehearsal's transaction`],
      enumValues,
    };
  }
  // A block the script may roll back is a savepoint; otherwise BEGIN and COMMIT are left out.
  const rollsBack = statements.some((s) => s.kind === 'TransactionStmt' && s.node.kind === 'TRANS_STMT_ROLLBACK');
  const out: string[] = [];
  const notes: string[] = [];
  for (const s of statements) {
    if (isSetTransaction(s)) {
      notes.push(`not rehearsed: "${s.text}" (the rehearsal's transaction keeps its own characteristics)`);
      continue;
    }
    if (s.kind !== 'TransactionStmt') {
      out.push(s.text);
      continue;
    }
    switch (s.node.kind) {
      case 'TRANS_STMT_BEGIN':
      case 'TRANS_STMT_START':
        if (rollsBack) out.push(`SAVEPOINT ${BLOCK}`);
        break;
      case 'TRANS_STMT_COMMIT':
        if (rollsBack) out.push(`RELEASE SAVEPOINT ${BLOCK}`);
        break;
      case 'TRANS_STMT_ROLLBACK':
        out.push(`ROLLBACK TO SAVEPOINT ${BLOCK}`, `RELEASE SAVEPOINT ${BLOCK}`);
        break;
      case 'TRANS_STMT_SAVEPOINT':
      case 'TRANS_STMT_RELEASE':
      case 'TRANS_STMT_ROLLBACK_TO':
        out.push(s.text);
        break;
      default:
        return {
          kind: 'fails',
          code: '0A000',
          message: `cannot rehearse "${s.text}": it ends the transaction in a way a rehearsal cannot undo`,
          enumValues,
        };
    }
  }
  return { kind: 'statements', statements: out, notes, enumValues };
}

/** `SET TRANSACTION ...` (isolation level, read only): valid only as a transaction's first statement. */
function isSetTransaction(s: ScriptStatement): boolean {
  return s.kind === 'VariableSetStmt' && s.node.kind === 'VAR_SET_MULTI' && s.node.name === 'TRANSACTION';
}

/** The statement with its CONCURRENTLY keyword removed (found by the scanner: a token, not a pattern). */
async function withoutConcurrently(text: string): Promise<string> {
  const pgQuery = await loadParser();
  const bytes = Buffer.from(text, 'utf8');
  try {
    const token = pgQuery
      .scanSync(text)
      .tokens.find((t) => t.keywordKind > 0 && t.text.toUpperCase() === 'CONCURRENTLY');
    if (!token) return text;
    return Buffer.concat([bytes.subarray(0, token.start), bytes.subarray(token.end)]).toString('utf8');
  } catch (error) {
    throw new Error(`cannot read the statement: ${messageOf(error)}`);
  }
}
