/**
 * Redis glob patterns, byte for byte as the server matches them (a port of `stringmatchlen` in
 * redis/src/util.c, 7.0), plus the analysis dbops needs before it scans: does a pattern match
 * everything, does it pin one hash tag (so one cluster slot), how to escape a literal prefix.
 *
 * The server does the matching during SCAN; this matcher exists for analysis and for tests that
 * compare it with the server. Patterns and keys are Buffers: keys may be any bytes.
 */

/** Bytes that are special in a Redis glob; escaped when a literal (a key prefix) goes into a pattern. */
const META = new Set([0x2a /* * */, 0x3f /* ? */, 0x5b /* [ */, 0x5d /* ] */, 0x5c /* \ */]);

const STAR = 0x2a;
const QUESTION = 0x3f;
const OPEN = 0x5b;
const CLOSE = 0x5d;
const BACKSLASH = 0x5c;
const CARET = 0x5e;
const DASH = 0x2d;

export const toBuffer = (s: string | Buffer): Buffer => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s);

/** C `char` is signed on x86/arm64 Linux builds: ranges with bytes >= 0x80 compare as negatives. */
const signed = (b: number) => (b >= 128 ? b - 256 : b);

/** Does `key` match the Redis glob `pattern`? (case-sensitive, as SCAN MATCH) */
export function globMatch(pattern: string | Buffer, key: string | Buffer): boolean {
  const p = toBuffer(pattern);
  const s = toBuffer(key);
  // SCAN does not match at all for exactly '*' (so it returns the empty key, which stringmatchlen would not).
  if (p.length === 1 && p[0] === STAR) return true;
  const state = { skipLonger: false };
  return matchAt(p, 0, p.length, s, 0, s.length, state, 0);
}

// Reading past the end returns 0, as the C code reads the sds NUL terminator.
const at = (b: Buffer, i: number) => (i < b.length ? (b[i] as number) : 0);

function matchAt(
  p: Buffer,
  pi: number,
  plen: number,
  s: Buffer,
  si: number,
  slen: number,
  state: { skipLonger: boolean },
  nesting: number,
): boolean {
  // Redis >= 7.0.10 bounds the recursion (CVE-2022-36021).
  if (nesting > 1000) return false;
  while (plen > 0 && slen > 0) {
    const c = at(p, pi);
    if (c === STAR) {
      while (plen > 0 && at(p, pi + 1) === STAR) {
        pi++;
        plen--;
      }
      if (plen === 1) return true;
      while (slen > 0) {
        if (matchAt(p, pi + 1, plen - 1, s, si, slen, state, nesting + 1)) return true;
        if (state.skipLonger) return false;
        si++;
        slen--;
      }
      state.skipLonger = true;
      return false;
    }
    if (c === QUESTION) {
      si++;
      slen--;
    } else if (c === OPEN) {
      pi++;
      plen--;
      const not = at(p, pi) === CARET;
      if (not) {
        pi++;
        plen--;
      }
      let match = false;
      const sc = at(s, si);
      for (;;) {
        const pc = at(p, pi);
        if (pc === BACKSLASH && plen >= 2) {
          pi++;
          plen--;
          if (at(p, pi) === sc) match = true;
        } else if (pc === CLOSE) {
          break;
        } else if (plen === 0) {
          pi--;
          plen++;
          break;
        } else if (plen >= 3 && at(p, pi + 1) === DASH) {
          let start = signed(pc);
          let end = signed(at(p, pi + 2));
          if (start > end) [start, end] = [end, start];
          const v = signed(sc);
          pi += 2;
          plen -= 2;
          if (v >= start && v <= end) match = true;
        } else if (pc === sc) {
          match = true;
        }
        pi++;
        plen--;
      }
      if (not) match = !match;
      if (!match) return false;
      si++;
      slen--;
    } else {
      if (c === BACKSLASH && plen >= 2) {
        pi++;
        plen--;
      }
      if (at(p, pi) !== at(s, si)) return false;
      si++;
      slen--;
    }
    pi++;
    plen--;
    if (slen === 0) {
      while (at(p, pi) === STAR) {
        pi++;
        plen--;
      }
      break;
    }
  }
  return plen === 0 && slen === 0;
}

/** Escape every glob metacharacter of a literal, so it matches only itself. */
export function escapeGlob(literal: string | Buffer): Buffer {
  const src = toBuffer(literal);
  const out: number[] = [];
  for (const b of src) {
    if (META.has(b)) out.push(BACKSLASH);
    out.push(b);
  }
  return Buffer.from(out);
}

/**
 * The pattern dbops sends: `<escaped prefix>:<pattern>` with a prefix, else the pattern itself. A
 * prefix that already ends with `:` (ioredis' `keyPrefix: 'app:'` style) gets no second one.
 */
export function applyPrefix(pattern: string | Buffer, prefix: string | undefined): Buffer {
  const p = toBuffer(pattern);
  if (!prefix) return p;
  return Buffer.concat([escapeGlob(prefix), Buffer.from(prefix.endsWith(':') ? '' : ':'), p]);
}

/** A pattern made only of `*` and `?`: it matches (nearly) every key, FLUSHDB territory. */
export function matchesEverything(pattern: string | Buffer): boolean {
  const p = toBuffer(pattern);
  return p.length > 0 && p.every((b) => b === STAR || b === QUESTION);
}

/**
 * The literal bytes every matching key starts with, and whether the pattern is entirely literal
 * (no wildcard at all: it names one key). Escapes are resolved; stops at the first `*`, `?` or `[`.
 */
export function literalPrefix(pattern: string | Buffer): { bytes: Buffer; exact: boolean } {
  const p = toBuffer(pattern);
  const out: number[] = [];
  let i = 0;
  while (i < p.length) {
    const c = p[i] as number;
    if (c === STAR || c === QUESTION || c === OPEN) return { bytes: Buffer.from(out), exact: false };
    if (c === BACKSLASH && i + 1 < p.length) i++;
    out.push(p[i] as number);
    i++;
  }
  return { bytes: Buffer.from(out), exact: true };
}

/**
 * The bytes Redis Cluster hashes for every key that can match, when the pattern pins them:
 * a literal prefix containing a complete non-empty `{tag}` (Redis hashes only the first `{...}`),
 * or a pattern without wildcards (one key). Undefined when matching keys may live in any slot.
 */
export function pinnedHashInput(pattern: string | Buffer): Buffer | undefined {
  const { bytes, exact } = literalPrefix(pattern);
  const open = bytes.indexOf(0x7b /* { */);
  if (open >= 0) {
    const close = bytes.indexOf(0x7d /* } */, open + 1);
    if (close > open + 1) return bytes.subarray(open + 1, close);
    // `{}` (empty tag) means the whole key is hashed; an unclosed `{` depends on the rest.
  }
  return exact ? bytes : undefined;
}

/** The key as text for people: UTF-8 when it is valid UTF-8, else with \xNN escapes for odd bytes. */
export function displayKey(key: Buffer): string {
  const text = key.toString('utf8');
  if (Buffer.from(text, 'utf8').equals(key) && !/[\x00-\x1f\x7f]/.test(text)) return text;
  let out = '';
  for (const b of key)
    out += b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return out;
}
