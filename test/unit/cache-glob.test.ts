import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import {
  applyPrefix,
  displayKey,
  escapeGlob,
  globMatch,
  literalPrefix,
  matchesEverything,
  pinnedHashInput,
} from '../../src/cache/glob.js';
import { hashPart, keySlot } from '../../src/cache/slot.js';

const b = (...bytes: number[]) => Buffer.from(bytes);

describe('globMatch (Redis stringmatchlen semantics)', () => {
  const cases: Array<[string | Buffer, string | Buffer, boolean]> = [
    ['*', '', true], // SCAN skips matching for exactly '*'
    ['**', '', false], // ...while stringmatchlen never matches an empty key
    ['*', 'anything', true],
    ['?', '', false],
    ['?', 'a', true],
    ['?', 'ab', false],
    ['user:*', 'user:', true],
    ['user:*', 'user:1', true],
    ['user:*', 'users:1', false],
    ['h?llo', 'hallo', true],
    ['h*llo', 'hllo', true],
    ['h[ae]llo', 'hello', true],
    ['h[ae]llo', 'hillo', false],
    ['h[^e]llo', 'hallo', true],
    ['h[^e]llo', 'hello', false],
    ['h[a-b]llo', 'hbllo', true],
    ['h[b-a]llo', 'hallo', true], // reversed ranges are swapped
    ['a\\*b', 'a*b', true],
    ['a\\*b', 'axb', false],
    ['a\\?', 'a?', true],
    ['a[\\]]b', 'a]b', true],
    ['a[]]b', 'a]b', false], // `]` right after `[` closes the (empty) class
    ['a\\', 'a\\', true], // a trailing backslash is literal
    ['a[', 'a', false],
    ['a[b', 'ab', true], // unterminated class: its characters still match
    ['a[b-]', 'a]', true], // `b-]` is a range from ']' to 'b'
    ['**a', 'xa', true],
    ['*a*', 'bab', true],
    ['日*', '日本', true],
    ['?本', '日本', false], // ? is one byte; 日 is three
    ['???本', '日本', true],
    [b(0x75, 0x2a), b(0x75, 0xff, 0xfe), true],
    [b(0x5b, 0x80, 0x2d, 0xff, 0x5d), b(0xa0), true],
    // C chars are signed: [a-\xff] is the range -1..97: 'a' and \xff are inside, 'b' and \xa0 (-96) are not
    [Buffer.concat([Buffer.from('[a-'), b(0xff), Buffer.from(']')]), 'a', true],
    [Buffer.concat([Buffer.from('[a-'), b(0xff), Buffer.from(']')]), b(0xff), true],
    [Buffer.concat([Buffer.from('[a-'), b(0xff), Buffer.from(']')]), 'b', false],
    [Buffer.concat([Buffer.from('[a-'), b(0xff), Buffer.from(']')]), b(0xa0), false],
    ['a b*', 'a b c', true],
  ];
  for (const [pattern, key, expected] of cases) {
    it(`${displayKey(Buffer.from(pattern))} ~ ${displayKey(Buffer.from(key))} = ${expected}`, () => {
      expect(globMatch(pattern, key)).toBe(expected);
    });
  }

  it('bounds the backtracking (no exponential blow-up)', () => {
    const t0 = Date.now();
    expect(globMatch('a*a*a*a*a*a*a*a*a*a*a*a*b', 'a'.repeat(60))).toBe(false);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});

describe('escapeGlob / applyPrefix', () => {
  it('escapes every metacharacter so the prefix matches only itself', () => {
    expect(escapeGlob('a*b?c[d]e\\f').toString()).toBe('a\\*b\\?c\\[d\\]e\\\\f');
    const p = applyPrefix('user:*', 'ap[p]*');
    expect(p.toString()).toBe('ap\\[p\\]\\*:user:*');
    expect(globMatch(p, 'ap[p]*:user:1')).toBe(true);
    expect(globMatch(p, 'app:user:1')).toBe(false);
    expect(globMatch(p, 'apXp]*:user:1')).toBe(false);
  });
  it('without a prefix the pattern is unchanged', () => {
    expect(applyPrefix('user:*', undefined).toString()).toBe('user:*');
  });
  it('a prefix that ends with a colon (ioredis keyPrefix style) gets no second one', () => {
    expect(applyPrefix('user:*', 'app:').toString()).toBe('app:user:*');
    expect(applyPrefix('user:*', 'app').toString()).toBe('app:user:*');
  });
});

describe('pattern analysis', () => {
  it('detects match-everything patterns', () => {
    for (const p of ['*', '**', '?*', '*?*']) expect(matchesEverything(p)).toBe(true);
    for (const p of ['', 'a*', '\\*', '[*]', '* ']) expect(matchesEverything(p)).toBe(false);
  });
  it('literal prefixes resolve escapes and stop at wildcards', () => {
    expect(literalPrefix('user:\\*x*')).toEqual({ bytes: Buffer.from('user:*x'), exact: false });
    expect(literalPrefix('a[bc]')).toEqual({ bytes: Buffer.from('a'), exact: false });
    expect(literalPrefix('plain')).toEqual({ bytes: Buffer.from('plain'), exact: true });
  });
  it('finds the hash tag a pattern pins, as Redis Cluster hashes it', () => {
    expect(pinnedHashInput('{user}:*')?.toString()).toBe('user');
    expect(pinnedHashInput('x{user}*')?.toString()).toBe('user');
    expect(pinnedHashInput('{us*}:x')).toBeUndefined(); // wildcard inside the tag
    expect(pinnedHashInput('*{user}:x')).toBeUndefined(); // wildcard before the tag
    expect(pinnedHashInput('{}{user}*')).toBeUndefined(); // empty first tag: whole key hashed
    expect(pinnedHashInput('{user*')).toBeUndefined();
    expect(pinnedHashInput('{a}{b}*')?.toString()).toBe('a'); // only the first tag counts
    expect(pinnedHashInput('exact:key')?.toString()).toBe('exact:key'); // one key, one slot
    expect(pinnedHashInput('\\{user\\}:*')?.toString()).toBe('user'); // escaped braces are still braces in the key
    expect(pinnedHashInput('user:*')).toBeUndefined();
  });
});

describe('keySlot', () => {
  const require = createRequire(import.meta.url);
  // ioredis' own dependency, used here only as a reference implementation.
  const reference = require('cluster-key-slot') as (key: string | Buffer) => number;
  it('agrees with cluster-key-slot on text, tags and binary keys', () => {
    // ('{}{x}' is left out: cluster-key-slot hashes 'x', Redis the whole key; the integration test asks the server.)
    const keys: Array<string | Buffer> = [
      'foo',
      '',
      'user:1',
      '{user}:1',
      'a{}b',
      'x{y',
      '日本語',
      b(0xff, 0xfe, 0x00),
      b(0x7b, 0xff, 0x7d),
    ];
    for (let i = 0; i < 500; i++) keys.push(`k:${i}:${'z'.repeat(i % 7)}`);
    for (const k of keys) expect(keySlot(k)).toBe(reference(k));
  });
  it('known slots from the Redis docs', () => {
    expect(keySlot('foo')).toBe(12182);
    expect(keySlot('{user1000}.following')).toBe(keySlot('user1000'));
    expect(hashPart(Buffer.from('{}x')).toString()).toBe('{}x');
    expect(hashPart(Buffer.from('{}{x}')).toString()).toBe('{}{x}');
  });
});
