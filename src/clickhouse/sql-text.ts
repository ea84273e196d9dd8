/**
 * ClickHouse query texts, read with a lexer of ClickHouse's token grammar (not with patterns over
 * the whole text): normalization (literals → `?`, lists of literals → `?..`, comments and runs of
 * whitespace → one space, generated-looking identifiers → `?`), which is how dbops groups
 * queries on servers without `normalized_query_hash` and how it shows every query text, so a
 * credential inside a literal (`mysql(..., 'password')`, `s3(..., 'secret')`) is never shown;
 * and the masking of error messages, which may quote the query.
 */
import { createHash } from 'node:crypto';

export type TokenKind = 'space' | 'comment' | 'string' | 'number' | 'heredoc' | 'quoted' | 'word' | 'comma' | 'plus' | 'minus' | 'op' | 'unterminated';

export interface Token {
  kind: TokenKind;
  start: number;
  end: number;
}

const isDigit = (c: string | undefined) => c !== undefined && c >= '0' && c <= '9';
const isWordStart = (c: string | undefined) => c !== undefined && (/[A-Za-z_]/.test(c) || c.charCodeAt(0) >= 0x80);
const isWordChar = (c: string | undefined) => c !== undefined && (isWordStart(c) || isDigit(c) || c === '$');
const isSpace = (c: string | undefined) => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';

/** End of a quoted token starting at `i` (the quote), honouring backslash escapes and doubled quotes; -1 when unterminated. */
function quotedEnd(text: string, i: number): number {
  const q = text[i];
  let j = i + 1;
  while (j < text.length) {
    const c = text[j];
    if (c === '\\') {
      j += 2;
      continue;
    }
    if (c === q) {
      if (text[j + 1] === q) {
        j += 2;
        continue;
      }
      return j + 1;
    }
    j++;
  }
  return -1;
}

function numberEnd(text: string, i: number): number {
  let j = i;
  if (text[j] === '0' && (text[j + 1] === 'x' || text[j + 1] === 'X') && /[0-9a-fA-F]/.test(text[j + 2] ?? '')) {
    j += 2;
    while (/[0-9a-fA-F]/.test(text[j] ?? '')) j++;
    return j;
  }
  if (text[j] === '0' && (text[j + 1] === 'b' || text[j + 1] === 'B') && /[01]/.test(text[j + 2] ?? '')) {
    j += 2;
    while (text[j] === '0' || text[j] === '1') j++;
    return j;
  }
  while (isDigit(text[j]) || text[j] === '_') j++;
  if (text[j] === '.') {
    j++;
    while (isDigit(text[j])) j++;
  }
  if ((text[j] === 'e' || text[j] === 'E') && (isDigit(text[j + 1]) || ((text[j + 1] === '+' || text[j + 1] === '-') && isDigit(text[j + 2])))) {
    j += 2;
    while (isDigit(text[j])) j++;
  }
  return j;
}

/** Split a query into tokens; every character belongs to exactly one token. */
export function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const push = (kind: TokenKind, end: number) => {
    out.push({ kind, start: i, end });
    i = end;
  };
  while (i < text.length) {
    const c = text[i];
    const n = text[i + 1];
    if (isSpace(c)) {
      let j = i + 1;
      while (isSpace(text[j])) j++;
      push('space', j);
    } else if (c === '-' && n === '-') {
      const eol = text.indexOf('\n', i);
      push('comment', eol < 0 ? text.length : eol);
    } else if (c === '#' && (n === ' ' || n === '!')) {
      const eol = text.indexOf('\n', i);
      push('comment', eol < 0 ? text.length : eol);
    } else if (c === '/' && n === '*') {
      // Nested block comments, as ClickHouse's lexer reads them.
      let depth = 1;
      let j = i + 2;
      while (j < text.length && depth > 0) {
        if (text[j] === '/' && text[j + 1] === '*') {
          depth++;
          j += 2;
        } else if (text[j] === '*' && text[j + 1] === '/') {
          depth--;
          j += 2;
        } else j++;
      }
      push(depth === 0 ? 'comment' : 'unterminated', j);
    } else if (c === "'") {
      const end = quotedEnd(text, i);
      push(end < 0 ? 'unterminated' : 'string', end < 0 ? text.length : end);
    } else if (c === '"' || c === '`') {
      const end = quotedEnd(text, i);
      push(end < 0 ? 'unterminated' : 'quoted', end < 0 ? text.length : end);
    } else if (c === '$' && /^\$[A-Za-z0-9_]*\$/.test(text.slice(i, i + 64))) {
      const tag = /^\$[A-Za-z0-9_]*\$/.exec(text.slice(i, i + 64))?.[0] ?? '$$';
      const close = text.indexOf(tag, i + tag.length);
      if (close < 0) push('unterminated', text.length);
      else push('heredoc', close + tag.length);
    } else if (isDigit(c) || (c === '.' && isDigit(n) && !isWordChar(text[i - 1]) && text[i - 1] !== ')')) {
      push('number', numberEnd(text, i));
    } else if (isWordStart(c)) {
      let j = i + 1;
      while (isWordChar(text[j])) j++;
      push('word', j);
    } else if (c === ',') push('comma', i + 1);
    else if (c === '+') push('plus', i + 1);
    else if (c === '-') push('minus', i + 1);
    else push('op', i + 1);
  }
  return out;
}

/** ClickHouse's rule: an identifier of 36+ characters, with whitespace or with more than two digits looks generated. */
function isComplexIdentifier(name: string): boolean {
  if (name.length >= 36) return true;
  if (/\s/.test(name)) return true;
  return (name.match(/[0-9]/g)?.length ?? 0) > 2;
}

const LITERAL: ReadonlySet<TokenKind> = new Set(['string', 'number', 'heredoc']);

/**
 * The query with its literals replaced: `SELECT * FROM t WHERE id IN (1, 2, 3) AND s = 'x'` →
 * `SELECT * FROM t WHERE id IN (?..) AND s = ?`. Follows the rules of ClickHouse's own
 * normalizeQuery (20.8+), so texts look alike on every server version. Text from an unterminated
 * string or comment on is dropped (it may be a cut-off credential).
 */
export function normalizeQuery(text: string): string {
  const tokens = tokenize(text);
  let out = '';
  let inSequence = 0;
  let prevComma = false;
  let prevSpace = false;
  let prevInsignificant = false;
  for (let k = 0; k < tokens.length; k++) {
    const t = tokens[k] as Token;
    if (t.kind === 'space' || t.kind === 'comment') {
      if (!prevInsignificant) {
        if (inSequence === 0) {
          if (t.start !== 0) out += ' ';
        } else prevSpace = true;
      }
      prevInsignificant = true;
      continue;
    }
    prevInsignificant = false;
    if (LITERAL.has(t.kind)) {
      if (inSequence === 0) out += '?';
      inSequence++;
      prevSpace = false;
      prevComma = false;
      continue;
    }
    if (t.kind === 'comma' && inSequence > 0) {
      prevComma = true;
      continue;
    }
    if (prevComma && (t.kind === 'plus' || t.kind === 'minus')) continue;
    if (t.kind !== 'comma') {
      if (inSequence > 1) out += '..';
      if (prevComma) out += ',';
      if (prevSpace) out += ' ';
      inSequence = 0;
      prevComma = false;
      prevSpace = false;
    }
    if (t.kind === 'unterminated') break;
    const raw = text.slice(t.start, t.end);
    if (t.kind === 'quoted' || (t.kind === 'word' && text[t.end] !== '(')) {
      const name = t.kind === 'quoted' ? raw.slice(1, -1) : raw;
      out += isComplexIdentifier(name) ? '`?`' : raw;
      continue;
    }
    out += raw;
  }
  if (inSequence > 1) out += '..';
  return out.trim();
}

/** A stable key for a normalized text, for servers without normalized_query_hash. */
export function textKey(normalized: string): string {
  return `t${createHash('sha1').update(normalized).digest('hex').slice(0, 15)}`;
}

/** The contents of the string literals, heredocs and unterminated strings of a query, raw and unescaped. */
export function literalValues(text: string): string[] {
  const out = new Set<string>();
  for (const t of tokenize(text)) {
    if (t.kind !== 'string' && t.kind !== 'heredoc' && !(t.kind === 'unterminated' && text[t.start] === "'")) continue;
    const raw = text.slice(t.start, t.end);
    let inner: string;
    if (t.kind === 'heredoc') {
      const tag = /^\$[A-Za-z0-9_]*\$/.exec(raw)?.[0] ?? '$$';
      inner = raw.slice(tag.length, raw.length - tag.length);
    } else inner = t.kind === 'string' ? raw.slice(1, -1) : raw.slice(1);
    if (inner) out.add(inner);
    const unescaped = inner.replace(/''/g, "'").replace(/\\(.)/g, '$1');
    if (unescaped) out.add(unescaped);
  }
  return [...out];
}

export const MASKED = '***';

/**
 * An error message of the query log, made safe to show: a syntax error's quotation of the query
 * is cut (the report shows the normalized query instead), and every string literal of the query
 * the error belongs to is masked wherever the message repeats it.
 */
export function maskErrorText(message: string, query: string): string {
  let out = message.replace(/(failed at position \d+)[\s\S]*?(?=Expected|$)/, '$1 (the quoted query is not shown) ');
  const values = literalValues(query).sort((a, b) => b.length - a.length);
  for (const v of values) {
    if (v.length >= 3) out = out.split(v).join(MASKED);
    else out = out.split(`'${v}'`).join(`'${MASKED}'`);
  }
  return out.replace(/\s+/g, ' ').trim();
}
