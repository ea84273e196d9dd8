/**
 * ClickHouse query texts, read with a lexer of ClickHouse's token grammar (not with patterns over
 * the whole text): normalization (literals → `?`, lists of literals → `?..`, comments and runs of
 * whitespace → one space, generated-looking identifiers → `?`), which is how dbops groups
 * queries on servers without `normalized_query_hash` and how it shows every query text, so a
 * credential inside a literal (`mysql(..., 'password')`, `s3(..., 'secret')`) is never shown;
 * and the masking of error messages, which may quote the query.
 */
export type TokenKind =
  | 'space'
  | 'comment'
  | 'string'
  | 'number'
  | 'heredoc'
  | 'quoted'
  | 'word'
  | 'comma'
  | 'plus'
  | 'minus'
  | 'op'
  | 'unterminated';

export interface Token {
  kind: TokenKind;
  start: number;
  end: number;
}

// Character classes by code, from a table: the lexer runs over every logged query text
// (10,000 texts in one report), so each character costs one array read, not a chain of calls.
const DIGIT = 1;
const WORD_START = 2;
const WORD = 4;
const SPACE = 8;
const HEX = 16;
const CLASS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const digit = c >= 48 && c <= 57;
  const letter = (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
  CLASS[c] =
    (digit ? DIGIT | WORD : 0) |
    (letter ? WORD_START | WORD : 0) |
    (c === 36 ? WORD : 0) |
    (c === 32 || (c >= 9 && c <= 13) ? SPACE : 0) |
    (digit || (c >= 65 && c <= 70) || (c >= 97 && c <= 102) ? HEX : 0);
}
// Non-ASCII (UTF-16 units >= 128) counts as a letter, as in ClickHouse's lexer; NaN (past the end) as nothing.
function has(c: number, bit: number): boolean {
  if (c < 128) return ((CLASS[c] as number) & bit) !== 0;
  return c >= 128 && (bit & (WORD_START | WORD)) !== 0;
}
const isDigit = (c: number) => has(c, DIGIT);
const isWordStart = (c: number) => has(c, WORD_START);
const isWordChar = (c: number) => has(c, WORD);
const isSpace = (c: number) => has(c, SPACE);
const isHex = (c: number) => has(c, HEX);
const isTagChar = (c: number) => c !== 36 && c < 128 && has(c, WORD);

/** The UTF-16 unit at `i`, 0 outside the text: an out-of-range read would throw optimized code back to the interpreter. */
const at = (text: string, i: number): number => (i >>> 0 < text.length ? text.charCodeAt(i) : 0);

/** End of a quoted token starting at `i` (the quote), honouring backslash escapes and doubled quotes; -1 when unterminated. */
function quotedEnd(text: string, i: number): number {
  const q = at(text, i);
  let j = i + 1;
  while (j < text.length) {
    const c = at(text, j);
    if (c === 92) {
      j += 2;
      continue;
    }
    if (c === q) {
      if (at(text, j + 1) === q) {
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
  const x = at(text, j + 1);
  if (at(text, j) === 48 && (x === 120 || x === 88) && isHex(at(text, j + 2))) {
    j += 2;
    while (isHex(at(text, j))) j++;
    return j;
  }
  if (at(text, j) === 48 && (x === 98 || x === 66) && (at(text, j + 2) === 48 || at(text, j + 2) === 49)) {
    j += 2;
    while (at(text, j) === 48 || at(text, j) === 49) j++;
    return j;
  }
  while (isDigit(at(text, j)) || at(text, j) === 95) j++;
  if (at(text, j) === 46) {
    j++;
    while (isDigit(at(text, j))) j++;
  }
  const e = at(text, j);
  const s1 = at(text, j + 1);
  if ((e === 101 || e === 69) && (isDigit(s1) || ((s1 === 43 || s1 === 45) && isDigit(at(text, j + 2))))) {
    j += 2;
    while (isDigit(at(text, j))) j++;
  }
  return j;
}

/** Length of a heredoc tag (`$tag$`) at `i`, or 0. */
function heredocTag(text: string, i: number): number {
  let j = i + 1;
  while (j < text.length && j - i < 64 && isTagChar(at(text, j))) j++;
  return at(text, j) === 36 ? j + 1 - i : 0;
}

/** The token at `i`: its kind and end, written into `t` (no allocation per token). */
function scan(text: string, i: number, t: Token): void {
  const c = at(text, i);
  const n = at(text, i + 1);
  t.start = i;
  if (isSpace(c)) {
    let j = i + 1;
    while (isSpace(at(text, j))) j++;
    t.kind = 'space';
    t.end = j;
  } else if ((c === 45 && n === 45) || (c === 35 && (n === 32 || n === 33))) {
    const eol = text.indexOf('\n', i);
    t.kind = 'comment';
    t.end = eol < 0 ? text.length : eol;
  } else if (c === 47 && n === 42) {
    // Nested block comments, as ClickHouse's lexer reads them.
    let depth = 1;
    let j = i + 2;
    while (j < text.length && depth > 0) {
      const a = at(text, j);
      const b = at(text, j + 1);
      if (a === 47 && b === 42) {
        depth++;
        j += 2;
      } else if (a === 42 && b === 47) {
        depth--;
        j += 2;
      } else j++;
    }
    t.kind = depth === 0 ? 'comment' : 'unterminated';
    t.end = j;
  } else if (c === 39 || c === 34 || c === 96) {
    const end = quotedEnd(text, i);
    t.kind = end < 0 ? 'unterminated' : c === 39 ? 'string' : 'quoted';
    t.end = end < 0 ? text.length : end;
  } else if (c === 36 && heredocTag(text, i) > 0) {
    const len = heredocTag(text, i);
    const close = text.indexOf(text.slice(i, i + len), i + len);
    t.kind = close < 0 ? 'unterminated' : 'heredoc';
    t.end = close < 0 ? text.length : close + len;
  } else if (isDigit(c) || (c === 46 && isDigit(n) && !isWordChar(at(text, i - 1)) && at(text, i - 1) !== 41)) {
    t.kind = 'number';
    t.end = numberEnd(text, i);
  } else if (isWordStart(c)) {
    let j = i + 1;
    while (isWordChar(at(text, j))) j++;
    t.kind = 'word';
    t.end = j;
  } else {
    t.kind = c === 44 ? 'comma' : c === 43 ? 'plus' : c === 45 ? 'minus' : 'op';
    t.end = i + 1;
  }
}

/** Split a query into tokens; every character belongs to exactly one token. */
export function tokenize(text: string): Token[] {
  const out: Token[] = [];
  for (let i = 0; i < text.length; ) {
    const t: Token = { kind: 'op', start: i, end: i + 1 };
    scan(text, i, t);
    out.push(t);
    i = t.end;
  }
  return out;
}

/** ClickHouse's rule: an identifier of 36+ characters, with whitespace or with more than two digits looks generated. */
function isComplexIdentifier(name: string): boolean {
  if (name.length >= 36) return true;
  let digits = 0;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (isSpace(c)) return true;
    if (isDigit(c) && ++digits > 2) return true;
  }
  return false;
}

/** Where normalization writes: a string for display, or a hash for grouping (no string built). */
interface Sink {
  /** Copy text[start, end) as it is. */
  keep(start: number, end: number): void;
  /** Write a replacement (`?`, `..`, `,`, a space, `` `?` ``). */
  emit(s: string): void;
}

/**
 * The normalization itself, ClickHouse's normalizeQuery rules: literals → `?`, a list of literals
 * → `?..`, comments and whitespace → one space (none at either end), complex identifiers → `?`.
 * Returns at an unterminated string or comment, dropping the rest (it may be a cut-off credential).
 */
function normalizeInto(text: string, sink: Sink): void {
  let inSequence = 0;
  let prevComma = false;
  let prevSpace = false;
  let prevInsignificant = false;
  // A space is written only before the next output, so there is none at either end.
  let started = false;
  let pendingSpace = -1; // -1 none, -2 write ' ', else the index of a single ' ' to copy
  const flushSpace = () => {
    if (started && pendingSpace >= 0) sink.keep(pendingSpace, pendingSpace + 1);
    else if (started && pendingSpace === -2) sink.emit(' ');
    pendingSpace = -1;
    started = true;
  };
  const t: Token = { kind: 'op', start: 0, end: 0 };
  for (let i = 0; i < text.length; i = t.end) {
    scan(text, i, t);
    const k = t.kind;
    if (k === 'space' || k === 'comment') {
      if (!prevInsignificant) {
        // A single ' ' can be copied with its neighbours; anything else becomes one written space.
        if (inSequence === 0)
          pendingSpace = k === 'space' && t.end === t.start + 1 && at(text, t.start) === 32 ? t.start : -2;
        else prevSpace = true;
      }
      prevInsignificant = true;
      continue;
    }
    prevInsignificant = false;
    if (k === 'string' || k === 'number' || k === 'heredoc') {
      if (inSequence === 0) {
        flushSpace();
        sink.emit('?');
      }
      inSequence++;
      prevSpace = false;
      prevComma = false;
      continue;
    }
    if (k === 'comma' && inSequence > 0) {
      prevComma = true;
      continue;
    }
    if (prevComma && (k === 'plus' || k === 'minus')) continue;
    if (k !== 'comma') {
      if (inSequence > 1) sink.emit('..');
      if (prevComma) sink.emit(',');
      if (prevSpace && k !== 'unterminated') sink.emit(' ');
      inSequence = 0;
      prevComma = false;
      prevSpace = false;
    }
    if (k === 'unterminated') return;
    flushSpace();
    if (
      (k === 'quoted' && isComplexIdentifier(text.slice(t.start + 1, t.end - 1))) ||
      (k === 'word' && at(text, t.end) !== 40 && isComplexIdentifier(text.slice(t.start, t.end)))
    ) {
      sink.emit('`?`');
      continue;
    }
    sink.keep(t.start, t.end);
  }
  if (inSequence > 1) sink.emit('..');
}

/**
 * The query with its literals replaced: `SELECT * FROM t WHERE id IN (1, 2, 3) AND s = 'x'` →
 * `SELECT * FROM t WHERE id IN (?..) AND s = ?`. Follows the rules of ClickHouse's own
 * normalizeQuery (20.8+), so texts look alike on every server version.
 */
export function normalizeQuery(text: string): string {
  // Kept tokens are copied as spans of the original text, not one by one.
  let out = '';
  let from = -1;
  let to = -1;
  const flush = () => {
    if (from >= 0) out += text.slice(from, to);
    from = -1;
  };
  normalizeInto(text, {
    keep(start, end) {
      if (from >= 0 && to === start) to = end;
      else {
        flush();
        from = start;
        to = end;
      }
    },
    emit(s) {
      flush();
      out += s;
    },
  });
  flush();
  return out;
}

/**
 * A 53-bit hash of normalizeQuery(text), computed without building the string: how dbops groups
 * 10,000 texts of an old server's query log (like ClickHouse's 64-bit normalized_query_hash, a
 * collision would merge two groups; at 53 bits it takes millions of distinct shapes to be likely).
 */
export function normalizedHash(text: string): number {
  // Two FNV-1a variants over the UTF-16 units of the normalized text.
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x9e3779b9;
  const unit = (c: number) => {
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  };
  normalizeInto(text, {
    keep(start, end) {
      for (let i = start; i < end; i++) unit(text.charCodeAt(i));
    },
    emit(s) {
      for (let i = 0; i < s.length; i++) unit(s.charCodeAt(i));
    },
  });
  return (a >>> 0) * 0x200000 + ((b >>> 0) & 0x1fffff);
}

/** The queryid of a group on a server without normalized_query_hash: `t` + the hash in hex. */
export function textQueryId(text: string): string {
  return `t${normalizedHash(text).toString(16).padStart(14, '0')}`;
}

/** The contents of the string literals, heredocs and unterminated strings of a query, raw and unescaped. */
export function literalValues(text: string): string[] {
  const out = new Set<string>();
  for (const t of tokenize(text)) {
    if (t.kind !== 'string' && t.kind !== 'heredoc' && !(t.kind === 'unterminated' && text[t.start] === "'")) continue;
    const raw = text.slice(t.start, t.end);
    let inner: string;
    if (t.kind === 'heredoc') {
      const len = heredocTag(raw, 0);
      inner = raw.slice(len, raw.length - len);
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
