import { describe, expect, it } from 'vitest';
import {
  literalValues,
  maskErrorText,
  normalizedHash,
  normalizeQuery,
  textQueryId,
  tokenize,
} from '../../src/diagnostics/clickhouse/sql-text.js';

describe('ClickHouse query normalization (the rules of its normalizeQuery)', () => {
  it.each([
    ['SELECT * FROM t WHERE id = 42', 'SELECT * FROM t WHERE id = ?'],
    ["SELECT * FROM t WHERE s = 'a''b' AND x IN (1, 2, 3)", 'SELECT * FROM t WHERE s = ? AND x IN (?..)'],
    ['SELECT [1, -2, 3.5e3, 0x1F]', 'SELECT [?..]'],
    ['SELECT  a,\n\t b -- trailing comment\nFROM  t /* block /* nested */ */ LIMIT 10', 'SELECT a, b FROM t LIMIT ?'],
    ["SELECT $$heredoc 'x'$$, $tag$y$tag$", 'SELECT ?..'],
    ['SELECT count() FROM events_20240101_shard', 'SELECT count() FROM `?`'],
    ['SELECT t1.c2 FROM t1', 'SELECT t1.c2 FROM t1'],
    ["SELECT * FROM mysql('h:3306', 'db', 'tbl', 'user', 'pw')", 'SELECT * FROM mysql(?..)'],
    ['SELECT sha224(x), f (1)', 'SELECT sha224(x), f (?)'],
    ['SELECT "quoted id", `back tick`', 'SELECT `?`, `?`'],
    ["SELECT 'it\\'s', 1", 'SELECT ?..'],
  ])('%s', (query, normalized) => {
    expect(normalizeQuery(query)).toBe(normalized);
  });

  it('drops everything from an unterminated string on (a cut-off credential)', () => {
    expect(normalizeQuery("SELECT * FROM s3('https://b/k', 'AKIA', 'secret-cut-of")).toBe('SELECT * FROM s3(?..,');
    expect(normalizeQuery("SELECT * FROM s3('https://b/k', 'AKIA', 'secret-cut-of")).not.toContain('secret');
  });

  it('groups the same shape under one hash whatever the literals, the spacing and the comments', () => {
    const a = "SELECT * FROM t WHERE a = 1 AND b = 'x'";
    const b = "  SELECT  *\n FROM t /* c */ WHERE a = 2 AND b = 'yy' -- end";
    expect(normalizeQuery(a)).toBe(normalizeQuery(b));
    expect(normalizedHash(a)).toBe(normalizedHash(b));
    expect(textQueryId(a)).toMatch(/^t[0-9a-f]{14}$/);
    expect(normalizedHash(a)).not.toBe(normalizedHash('SELECT * FROM u WHERE a = 1'));
  });

  it('hashes exactly what normalizeQuery writes: same text, same hash; different text, different hash', () => {
    const samples = [
      'SELECT 1',
      'SELECT 1 ',
      ' SELECT 1',
      'SELECT  1',
      'SELECT\t1',
      'SELECT 1 -- c',
      'SELECT [1, 2]',
      'SELECT [1, 2, 3]',
      'SELECT [1]',
      "SELECT 'a', 1 , x",
      'SELECT f(1, -2)',
      'SELECT a  ,  b',
      'SELECT a , b',
      "SELECT * FROM s3('u', 'k', 'secr",
      'SELECT x FROM t1',
      'SELECT x FROM t123',
    ];
    const byText = new Map<string, number>();
    for (const q of samples) {
      const text = normalizeQuery(q);
      expect(text).toBe(text.trim());
      const seen = byText.get(text);
      if (seen === undefined) {
        expect([...byText.values()]).not.toContain(normalizedHash(q));
        byText.set(text, normalizedHash(q));
      } else expect(normalizedHash(q)).toBe(seen);
    }
    expect(byText.size).toBeGreaterThan(6);
  });

  it('gives every character to exactly one token', () => {
    const q = 'SELECT a.b, \'x\\\'y\', "q""q", `b`, 1.5e-3, $t$z$t$ -- c\n/* d */ FROM t';
    const tokens = tokenize(q);
    expect(tokens.map((t) => q.slice(t.start, t.end)).join('')).toBe(q);
    expect(tokens.filter((t) => t.kind === 'string').map((t) => q.slice(t.start, t.end))).toEqual(["'x\\'y'"]);
  });
});

describe('masking of error messages', () => {
  it("cuts a syntax error's quotation of the query", () => {
    const query = "SELEC * FROM mysql('h', 'd', 't', 'u', 'Pw-9f2')";
    const msg =
      "Syntax error: failed at position 1: SELEC * FROM mysql('h', 'd', 't', 'u', 'Pw-9f2'). Expected one of: SELECT, WITH (code 62)";
    const masked = maskErrorText(msg, query);
    expect(masked).not.toContain('Pw-9f2');
    expect(masked).toContain('failed at position 1');
    expect(masked).toContain('Expected one of');
  });

  it('masks every literal of the query that the message repeats, also cut off ones', () => {
    const query = "SELECT * FROM url('http://u:Secr3t@h/x', CSV, 'a String') WHERE k = 'ab'";
    expect(maskErrorText("cannot reach 'http://u:Secr3t@h/x': refused, key 'ab'", query)).toBe(
      "cannot reach '***': refused, key '***'",
    );
    expect(literalValues("SELECT 'it''s', $x$raw$x$, 'open")).toEqual(
      expect.arrayContaining(["it''s", "it's", 'raw', 'open']),
    );
  });
});
