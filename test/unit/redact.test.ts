import { describe, expect, it } from 'vitest';
import { maskUrl, Redactor } from '../../src/config/redact.js';

describe('Redactor', () => {
  it('masks known secrets, their URL-encoded forms and credential shapes', () => {
    const r = new Redactor(['p@ss word!']);
    expect(r.redact('auth failed for p@ss word!')).toBe('auth failed for ***');
    expect(r.redact('url postgres://u:p%40ss%20word!@h/db')).not.toContain('p%40ss');
    expect(r.redact('connect postgresql://app:hunter22@db:5432/x failed')).toBe('connect postgresql://app:***@db:5432/x failed');
    expect(r.redact('host=db password=hunter22 user=x')).toBe('host=db password=*** user=x');
    expect(r.redact('{"password":"hunter22"}')).toBe('{"password":"***"}');
    expect(r.redact('redis://:onlypass@r:6379')).toBe('redis://:***@r:6379');
  });

  it('leaves ordinary text alone', () => {
    expect(new Redactor().redact('applied 3 migrations in 12 ms')).toBe('applied 3 migrations in 12 ms');
  });

  it('maskUrl keeps everything but the password', () => {
    expect(maskUrl('postgres://u:secret@h:5432/db?sslmode=require')).toBe('postgres://u:***@h:5432/db?sslmode=require');
    expect(maskUrl('postgres://u@h/db')).toBe('postgres://u@h/db');
  });
});

describe('passwords with URL-special characters', () => {
  const pw = 's3cr/et#p?w@rd';
  it('are masked by pattern even when the URL does not parse', () => {
    const r = new Redactor();
    expect(r.redact(`postgresql://user:${pw}@localhost:5432/db failed`)).toBe('postgresql://user:***@localhost:5432/db failed');
    expect(r.redact(`a postgresql://u:${pw}@h/db and redis://:x@r:1 here`)).not.toContain('s3cr');
  });
  it('are learnt from an unparseable URL and masked wherever they appear', () => {
    const r = new Redactor();
    r.addUrl(`postgresql://user:${pw}@localhost:5432/db`);
    expect(r.redact(`password authentication failed: ${pw}`)).toBe('password authentication failed: ***');
  });
});
