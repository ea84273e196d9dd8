/**
 * Where a statement came from: the Prisma model and operation, read from the SQL text that
 * pg_stat_statements kept for it.
 *
 * 1. Prisma 7.1+ SQL comments (sqlcommenter format, appended by Prisma as
 *    `/*key='value',...*\/` with keys sorted and values URI-encoded). `prismaQuery` (from
 *    `@prisma/sqlcommenter-query-insights`) is `Model.action:shape` or `queryRaw`. Comments do not
 *    change `queryid`: pg_stat_statements keeps the text of the first execution, so a tag is a
 *    hint for the whole row, not a guarantee for every call.
 * 2. Otherwise the SQL shape Prisma emits: `"schema"."Model"` after FROM/INTO/UPDATE, and the
 *    statement kind (RETURNING tells update from updateMany, several VALUES tuples createMany, ...).
 */

export interface QueryOrigin {
  model?: string;
  operation?: string;
  /** `tag`: from a Prisma SQL comment; `sql`: guessed from the SQL shape. */
  source: 'tag' | 'sql' | 'none';
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
};

function fromTag(value: string): { model?: string; operation?: string } {
  // "User.findMany:<shape>", "queryRaw", "executeRaw", "User.findMany"
  const head = value.split(':')[0] ?? value;
  const dot = head.lastIndexOf('.');
  if (dot < 0) return head ? { operation: ACTION_NAMES[head] ?? head } : {};
  const model = head.slice(0, dot);
  const action = head.slice(dot + 1);
  return { ...(model ? { model } : {}), ...(action ? { operation: ACTION_NAMES[action] ?? action } : {}) };
}

const QUALIFIED = /\b(?:FROM|INTO|UPDATE|JOIN)\s+(?:ONLY\s+)?"((?:[^"]|"")+)"\."((?:[^"]|"")+)"/i;

function fromSql(query: string): { model?: string; operation?: string } {
  const sql = normaliseQuery(query.replace(COMMENT, ' '));
  const table = QUALIFIED.exec(sql);
  const model = table ? (table[2] ?? '').replace(/""/g, '"') : undefined;
  const kind = /^\(?\s*(WITH|SELECT|INSERT|UPDATE|DELETE)\b/i.exec(sql)?.[1]?.toUpperCase();
  let operation: string | undefined;
  const returning = /\bRETURNING\b/i.test(sql);
  if (kind === 'INSERT') {
    if (/\bON CONFLICT\b/i.test(sql)) operation = 'upsert';
    else if (/\bVALUES\s*\([^()]*\)\s*,\s*\(/i.test(sql)) operation = returning ? 'createManyAndReturn' : 'createMany';
    else operation = 'create';
  } else if (kind === 'UPDATE') {
    operation = returning ? 'update' : 'updateMany';
  } else if (kind === 'DELETE') {
    operation = returning ? 'delete' : 'deleteMany';
  } else if (kind === 'SELECT') {
    if (/\bAS "_(count|sum|avg|min|max)\$/.test(sql)) {
      if (/\bGROUP BY\b/i.test(sql)) operation = 'groupBy';
      else operation = /^SELECT COUNT\(\*\) AS "_count\$_all" FROM/i.test(sql) ? 'count' : 'aggregate';
    } else {
      // findUnique/findFirst add LIMIT; findMany adds it only with `take`.
      operation = /\bLIMIT\b/i.test(sql) ? 'findFirst/findUnique' : 'findMany';
    }
  }
  // Only a schema-qualified quoted table is Prisma's shape; without it the kind alone says little.
  if (!model) return {};
  return { model, ...(operation ? { operation } : {}) };
}

/** The Prisma origin of one statement's text. */
export function prismaOrigin(query: string): QueryOrigin {
  const tags = parseSqlCommenterTags(query);
  const tag = tags.prismaQuery;
  if (tag) {
    const t = fromTag(tag);
    if (t.model || t.operation) return { ...t, source: 'tag', tags };
  }
  const s = fromSql(query);
  if (s.model || s.operation) return { ...s, source: 'sql', tags };
  return { source: 'none', tags };
}
