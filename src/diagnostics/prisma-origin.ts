/**
 * Where a statement came from: the Prisma model and operation, read from the SQL text that
 * pg_stat_statements kept for it. A label is either certain or visibly a guess (`certain: false`,
 * shown with `?`):
 *
 * 1. Prisma 7.1+ SQL comments (sqlcommenter format, appended by Prisma as
 *    `/*key='value',...*\/` with keys sorted and values URI-encoded). `prismaQuery` (from
 *    `@prisma/sqlcommenter-query-insights`) is `Model.action:<base64url shape>` or `queryRaw` /
 *    `executeRaw`: certain. Comments do not change `queryid`: pg_stat_statements keeps the text of
 *    the first execution, so the tag names the row's first caller.
 * 2. Otherwise the SQL as Prisma's query compiler emits it, read with PostgreSQL's own parser
 *    (libpg-query): a schema-qualified table, every column written `"schema"."Table"."column"`,
 *    OFFSET on every read. Text without that signature is hand-written (`$queryRaw`, `pg`) and gets
 *    no label. A Prisma statement is certain only when one top-level call emits that shape; shapes
 *    that a relation load, a nested write or an emulated upsert share with a plain call are guesses,
 *    with a note saying what else they can be. The application's schema.prisma (relation columns)
 *    sharpens that: a write filtering on no relation column cannot be a nested write.
 */
import type { PrismaModels } from './prisma-schema.js';

export interface QueryOrigin {
  model?: string;
  operation?: string;
  /** `tag`: from a Prisma SQL comment; `sql`: read from the SQL shape. */
  source: 'tag' | 'sql' | 'none';
  /** True when the label is right for whatever Prisma call issued the statement; false: a guess. */
  certain: boolean;
  /** What else a guess can be. */
  note?: string;
  /** All sqlcommenter tags found in the text (decoded). */
  tags: Record<string, string>;
}

/** Collapse runs of whitespace to one space and trim. */
export function normaliseQuery(query: string): string {
  return query.replace(/\s+/g, ' ').trim();
}

/** A shortened one-line form for tables: normalised, Prisma comments dropped, cut at `width`. */
export function shortenQuery(query: string, width: number): string {
  const text = normaliseQuery(stripTagComments(query));
  return text.length <= width ? text : `${text.slice(0, Math.max(1, width - 1))}…`;
}

const COMMENT = /\/\*([\s\S]*?)\*\//g;
const TAG_LIST = /^\s*[A-Za-z0-9_.%-]+='(?:[^'\\]|\\.)*'(?:\s*,\s*[A-Za-z0-9_.%-]+='(?:[^'\\]|\\.)*')*\s*$/;
const TAG = /([A-Za-z0-9_.%-]+)='((?:[^'\\]|\\.)*)'/g;

function decode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\\'/g, "'"));
  } catch {
    return s;
  }
}

/** The sqlcommenter tags of a statement (other comments, e.g. PG18's `/*, ... *\/`, are ignored). */
export function parseSqlCommenterTags(query: string): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const m of query.matchAll(COMMENT)) {
    const body = m[1] ?? '';
    if (!TAG_LIST.test(body)) continue;
    for (const t of body.matchAll(TAG)) tags[decode(t[1] ?? '')] = decode(t[2] ?? '');
  }
  return tags;
}

/** The query without sqlcommenter comments (they vary per call and clutter the table). */
export function stripTagComments(query: string): string {
  return query.replace(COMMENT, (whole, body: string) => (TAG_LIST.test(body) ? '' : whole));
}

/** Prisma's internal action names → the client method a developer wrote. */
const ACTION_NAMES: Record<string, string> = {
  createOne: 'create',
  updateOne: 'update',
  deleteOne: 'delete',
  upsertOne: 'upsert',
  queryRaw: '$queryRaw',
  executeRaw: '$executeRaw',
  runCommandRaw: '$runCommandRaw',
};

/** The query shape of a `prismaQuery` tag (base64url JSON); undefined when it is not one. */
function tagShape(encoded: string | undefined): unknown {
  if (!encoded) return undefined;
  try {
    const text = /^[{[]/.test(encoded) ? encoded : Buffer.from(encoded, 'base64url').toString('utf8');
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** `count()` reaches Prisma as `aggregate` selecting only `_count`: the client method was count. */
function isCountShape(shape: unknown): boolean {
  const one = Array.isArray(shape) ? shape[0] : shape;
  if (!one || typeof one !== 'object') return false;
  const select = (one as { select?: unknown }).select;
  return !!select && typeof select === 'object' && Object.keys(select).length === 1 && '_count' in select;
}

function fromTag(value: string): { model?: string; operation?: string } {
  // "User.findMany:<shape>", "queryRaw", "executeRaw", "User.findMany"
  const colon = value.indexOf(':');
  const head = colon < 0 ? value : value.slice(0, colon);
  const dot = head.lastIndexOf('.');
  if (dot < 0) return head ? { operation: ACTION_NAMES[head] ?? head } : {};
  const model = head.slice(0, dot);
  let action = head.slice(dot + 1);
  if (action === 'aggregate' && isCountShape(tagShape(colon < 0 ? undefined : value.slice(colon + 1))))
    action = 'count';
  return { ...(model ? { model } : {}), ...(action ? { operation: ACTION_NAMES[action] ?? action } : {}) };
}

// ---- the SQL shape, read with PostgreSQL's parser -------------------------------------------

type PgQuery = typeof import('libpg-query');
let parser: PgQuery | undefined;
let loading: Promise<void> | undefined;

/** Loads PostgreSQL's parser for prismaOrigin (once); until then only comments are read. */
export function loadOriginParser(): Promise<void> {
  loading ??= import('libpg-query').then(async (m) => {
    await m.loadModule();
    parser = m;
  });
  return loading;
}

type AstNode = Record<string, unknown>;
interface ColumnRef {
  parts: string[];
}

/** Every node of `kind` below `node` (depth first). */
function collect(node: unknown, kind: string, out: unknown[] = []): unknown[] {
  if (Array.isArray(node)) {
    for (const n of node) collect(n, kind, out);
  } else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === kind) out.push(v);
      collect(v, kind, out);
    }
  }
  return out;
}

function columnRefs(node: unknown): ColumnRef[] {
  return collect(node, 'ColumnRef').map((c) => ({
    parts: (((c as AstNode).fields as AstNode[] | undefined) ?? []).map((f) =>
      String((f.String as AstNode | undefined)?.sval ?? '*'),
    ),
  }));
}

/** The conjuncts of a WHERE clause (nested ANDs flattened). */
function conjuncts(where: unknown): AstNode[] {
  if (!where || typeof where !== 'object') return [];
  const b = (where as AstNode).BoolExpr as AstNode | undefined;
  if (b && b.boolop === 'AND_EXPR') return ((b.args as unknown[]) ?? []).flatMap(conjuncts);
  return [where as AstNode];
}

/** Prisma's `$a = $b` (a literal `1=1` normalised by pg_stat_statements): it marks a unique where. */
function isTautology(c: AstNode): boolean {
  const e = c.A_Expr as AstNode | undefined;
  return !!e && e.kind === 'AEXPR_OP' && !!(e.lexpr as AstNode)?.ParamRef && !!(e.rexpr as AstNode)?.ParamRef;
}

/** `"col" IN (...)` conjuncts: the columns they test. */
function inColumns(cs: AstNode[]): string[] {
  const out: string[] = [];
  for (const c of cs) {
    const e = c.A_Expr as AstNode | undefined;
    if (e?.kind !== 'AEXPR_IN') continue;
    const ref = columnRefs(e.lexpr)[0];
    if (ref) out.push(ref.parts[ref.parts.length - 1] ?? '');
  }
  return out;
}

interface Target {
  schema: string;
  table: string;
}

function rangeVar(node: unknown): Target | undefined {
  const r = node as AstNode | undefined;
  if (!r || typeof r.relname !== 'string' || typeof r.schemaname !== 'string') return undefined;
  return { schema: r.schemaname, table: r.relname };
}

/**
 * Prisma's signature: every column reference written in full (`"schema"."Table"."column"`, the
 * statement's own table) or through an alias the statement declares (`"j0"."id"` of a relation
 * filter's join), and at least one full reference. Hand-written SQL names columns bare.
 */
function prismaColumns(node: unknown, t: Target, aliases: Set<string>): boolean {
  const refs = columnRefs(node);
  let full = 0;
  for (const r of refs) {
    if (r.parts.length === 3 && r.parts[0] === t.schema && r.parts[1] === t.table) full++;
    else if (r.parts.length === 2 && aliases.has(r.parts[0] ?? '')) continue;
    else return false;
  }
  return full > 0;
}

function aliasesOf(node: unknown): Set<string> {
  const out = new Set<string>();
  for (const a of collect(node, 'alias')) {
    const name = (a as AstNode)?.aliasname;
    if (typeof name === 'string') out.add(name);
  }
  return out;
}

interface Shape {
  table: Target;
  /** The model whose call issued it, when not the table's own (an include's relation load). */
  issuedBy?: string;
  operation: string;
  certain: boolean;
  note?: string;
}

const NESTED_READ = 'or a read Prisma makes inside a write (nested write, emulated upsert)';

function selectShape(sel: AstNode, schema: PrismaModels | undefined): Shape | undefined {
  const from = (sel.fromClause as AstNode[] | undefined) ?? [];
  // count/aggregate: SELECT <aggregates> FROM (SELECT ... OFFSET $n) AS "sub"
  const sub = from[0]?.RangeSubselect as AstNode | undefined;
  if (sub) {
    const inner = (sub.subquery as AstNode | undefined)?.SelectStmt as AstNode | undefined;
    if (from.length !== 1 || (sub.alias as AstNode | undefined)?.aliasname !== 'sub' || !inner) return undefined;
    const shape = selectShape(inner, schema);
    if (!shape) return undefined;
    const targets = ((sel.targetList as AstNode[] | undefined) ?? []).map((t) => t.ResTarget as AstNode);
    const outerRefs = columnRefs(sel.targetList);
    if (
      outerRefs.some((r) => r.parts.length !== 1) ||
      targets.some((t) => typeof t?.name !== 'string' || !/^_(count|sum|avg|min|max)\$/.test(t.name))
    ) {
      return undefined;
    }
    const allCount = targets.every((t) => (t.name as string).startsWith('_count$'));
    // `aggregate({ _count: ... })` alone is the same statement as count(): it is what count() sends.
    return { table: shape.table, operation: allCount ? 'count' : 'aggregate', certain: true };
  }
  if (from.length !== 1) return undefined;
  const base = from[0]?.RangeVar ?? (from[0]?.JoinExpr as AstNode | undefined)?.larg;
  const t = rangeVar((base as AstNode | undefined)?.RangeVar ?? base);
  if (!t) return undefined;
  if (!sel.limitOffset) return undefined; // Prisma's reads always carry OFFSET
  if (
    !prismaColumns(
      { t: sel.targetList, w: sel.whereClause, g: sel.groupClause, o: sel.sortClause, f: sel.fromClause },
      t,
      aliasesOf(sel.fromClause),
    )
  ) {
    return undefined;
  }
  if (sel.groupClause) return { table: t, operation: 'groupBy', certain: true };
  const cs = conjuncts(sel.whereClause);
  const unique = cs.some(isTautology);
  if (sel.limitCount) {
    return {
      table: t,
      operation: unique ? 'findUnique' : 'findFirst',
      certain: false,
      note: `findUnique, findFirst, findMany with take, ${NESTED_READ}`,
    };
  }
  if (unique)
    return {
      table: t,
      operation: 'upsert',
      certain: false,
      note: `a read Prisma makes inside a write by a unique field (emulated upsert, nested write)`,
    };
  const ins = inColumns(cs);
  if (ins.length > 0) {
    const info = schema?.byTable.get(t.table);
    const related = ins.map((c) => info?.relationColumns.get(c)).find(Boolean);
    if (related) {
      // Prisma loads an include with the relation column IN (the parent rows' keys).
      return {
        table: t,
        operation: 'findMany',
        certain: false,
        issuedBy: related,
        note: `the relation load of an include on a ${related} query (its method unknown), or a ${modelName(t.table, schema)}.findMany filtering ${ins.join(', ')} by a list`,
      };
    }
    if (ins.some((c) => info?.uniqueColumns.has(c))) {
      return {
        table: t,
        operation: 'findUnique',
        certain: false,
        note: 'findUniques batched into one IN, a to-one include loading this model, or a findMany with in',
      };
    }
    return {
      table: t,
      operation: 'findMany',
      certain: false,
      note: "or a relation load (include) of another model's query, or findUniques batched into one IN",
    };
  }
  return { table: t, operation: 'findMany', certain: true };
}

function returningOf(stmt: AstNode): unknown[] | undefined {
  const r = (stmt.returningClause as AstNode | undefined)?.exprs ?? stmt.returningList;
  return Array.isArray(r) && r.length > 0 ? r : undefined;
}

/** A write filtering on a relation column may be a nested write of a call on the related model. */
function touchesRelation(where: unknown, t: Target, schema: PrismaModels | undefined): boolean | undefined {
  const info = schema?.byTable.get(t.table);
  if (!info) return undefined;
  return columnRefs(where).some((r) => info.relationColumns.has(r.parts[r.parts.length - 1] ?? ''));
}

function writeShape(
  kind: 'UpdateStmt' | 'DeleteStmt',
  stmt: AstNode,
  schema: PrismaModels | undefined,
): Shape | undefined {
  const t = rangeVar(stmt.relation);
  if (!t) return undefined;
  const returning = returningOf(stmt);
  if (!prismaColumns({ w: stmt.whereClause, r: returning, s: stmt.targetList }, t, new Set())) return undefined;
  const cs = conjuncts(stmt.whereClause);
  const unique = cs.some(isTautology);
  const nested = inColumns(cs).length > 0 || collect(stmt.whereClause, 'SubLink').length > 0;
  const verb = kind === 'UpdateStmt' ? 'update' : 'delete';
  if (returning && unique) {
    if (nested)
      return {
        table: t,
        operation: kind === 'UpdateStmt' ? 'upsert' : 'delete',
        certain: false,
        note: `an emulated upsert's ${verb}, or a nested ${verb}`,
      };
    return { table: t, operation: verb, certain: true };
  }
  const operation = returning ? `${verb}ManyAndReturn` : `${verb}Many`;
  const relation = touchesRelation(stmt.whereClause, t, schema);
  if (!nested && relation === false) return { table: t, operation, certain: true };
  return {
    table: t,
    operation,
    certain: false,
    note:
      relation === undefined
        ? `or a nested ${verb} of a call on a related model (the schema's relations would tell)`
        : `or a nested ${verb} of a call on a related model (it filters on a relation column)`,
  };
}

function insertShape(stmt: AstNode): Shape | undefined {
  const t = rangeVar(stmt.relation);
  if (!t) return undefined;
  const returning = returningOf(stmt);
  const conflict = stmt.onConflictClause as AstNode | undefined;
  const values =
    (((stmt.selectStmt as AstNode | undefined)?.SelectStmt as AstNode | undefined)?.valuesLists as
      | unknown[]
      | undefined) ?? [];
  if (values.length === 0) return undefined;
  // Prisma writes every value as a parameter (or a CAST of one to an enum) and returns full references.
  if (columnRefs(values).length > 0) return undefined;
  if (returning && !prismaColumns(returning, t, new Set())) return undefined;
  if (conflict) {
    return prismaColumns(conflict, t, new Set()) ? { table: t, operation: 'upsert', certain: true } : undefined;
  }
  if (!returning) {
    // Nothing in the statement is Prisma's own: an INSERT of parameters is what anyone writes.
    return {
      table: t,
      operation: 'createMany',
      certain: false,
      note: 'or the nested create of a call on a related model, or hand-written SQL',
    };
  }
  if (values.length > 1) return { table: t, operation: 'createManyAndReturn', certain: true };
  return {
    table: t,
    operation: 'create',
    certain: false,
    note: "or createManyAndReturn of one row, an upsert's create, or the parent row of a nested create",
  };
}

function modelName(table: string, schema: PrismaModels | undefined): string {
  return schema?.byTable.get(table)?.model ?? table;
}

function fromSql(query: string, schema: PrismaModels | undefined): Shape | undefined {
  if (!parser) return undefined;
  let stmts: { stmt?: AstNode }[];
  try {
    stmts = (parser.parseSync(query).stmts ?? []) as unknown as typeof stmts;
  } catch {
    return undefined;
  }
  if (stmts.length !== 1) return undefined;
  const [kind, node] = Object.entries(stmts[0]?.stmt ?? {})[0] ?? [];
  const n = node as AstNode;
  let shape: Shape | undefined;
  if (kind === 'SelectStmt') shape = selectShape(n, schema);
  else if (kind === 'InsertStmt') shape = insertShape(n);
  else if (kind === 'UpdateStmt' || kind === 'DeleteStmt') shape = writeShape(kind, n, schema);
  if (!shape) return undefined;
  // With the schema at hand, a table that is no model of it is no Prisma statement of this application.
  if (schema && !schema.byTable.has(shape.table.table)) return undefined;
  return shape;
}

/** The Prisma origin of one statement's text (`schema`: the application's models, when known). */
export function prismaOrigin(query: string, schema?: PrismaModels): QueryOrigin {
  const tags = parseSqlCommenterTags(query);
  const tag = tags.prismaQuery;
  if (tag) {
    const t = fromTag(tag);
    if (t.model || t.operation) return { ...t, source: 'tag', certain: true, tags };
  }
  const s = fromSql(query, schema);
  if (s) {
    return {
      model: s.issuedBy ?? modelName(s.table.table, schema),
      operation: s.operation,
      source: 'sql',
      certain: s.certain,
      ...(s.note ? { note: s.note } : {}),
      tags,
    };
  }
  return { source: 'none', certain: false, tags };
}

/** `Model.operation`, `$queryRaw`, with `?` for a guess; '' when there is no label. */
export function originLabel(o: QueryOrigin): string {
  if (o.source === 'none') return '';
  const text = o.model ? `${o.model}.${o.operation ?? '?'}` : (o.operation ?? '');
  return o.certain ? text : `${text}?`;
}
