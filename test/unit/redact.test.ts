import { describe, expect, it } from 'vitest';
import { isSecretName, maskUrl, Redactor } from '../../src/config/redact.js';

describe('Redactor', () => {
  it('masks known secrets, their URL-encoded forms and credential shapes', () => {
    const r = new Redactor(['p@ss word!']);
    expect(r.redact('auth failed for p@ss word!')).toBe('auth failed for ***');
    expect(r.redact('url postgres://u:p%40ss%20word!@h/db')).not.toContain('p%40ss');
    expect(r.redact('connect postgresql://app:hunter22@db:5432/x failed')).toBe(
      'connect postgresql://app:***@db:5432/x failed',
    );
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
    expect(r.redact(`postgresql://user:${pw}@localhost:5432/db failed`)).toBe(
      'postgresql://user:***@localhost:5432/db failed',
    );
    expect(r.redact(`a postgresql://u:${pw}@h/db and redis://:x@r:1 here`)).not.toContain('s3cr');
  });
  it('are learnt from an unparseable URL and masked wherever they appear', () => {
    const r = new Redactor();
    r.addUrl(`postgresql://user:${pw}@localhost:5432/db`);
    expect(r.redact(`password authentication failed: ${pw}`)).toBe('password authentication failed: ***');
  });
});

describe('secrets learnt from the whole raw value, not from what a URL parser returns', () => {
  const pw = 'Cn4ry-Q7x';
  const shapes = [
    `canary_user:${pw}@127.0.0.1:5432/db`,
    `postgresql//u:${pw}@127.0.0.1:5432/db`,
    `postgres:/u:${pw}@127.0.0.1:5432/db`,
    `postgresql:user:${pw}@127.0.0.1:5432/db`,
    `redis//:${pw}@127.0.0.1:6379/0`,
    `postgresql://u:${pw} a#b/c@h/db`,
    `postgresql://u:${pw}@/db?host=/run/postgresql`,
  ];
  for (const shape of shapes) {
    it(`finds the password in ${shape}`, () => {
      const r = new Redactor();
      r.addUrl(shape);
      const secret = shape.includes(' a#b/c') ? `${pw} a#b/c` : pw;
      for (const text of [
        secret,
        encodeURIComponent(secret),
        JSON.stringify({ m: `x ${secret} y` }),
        shape,
        `is not valid: ${shape}`,
      ]) {
        expect(r.redact(text), text).not.toContain('Cn4ry');
      }
    });
  }

  it('masks JSON-escaped and form-encoded spellings', () => {
    const r = new Redactor(['q"uo\\te+ sp']);
    expect(r.redact(JSON.stringify({ error: 'q"uo\\te+ sp' }))).not.toContain('uo');
    expect(r.redact(`?p=${new URLSearchParams({ p: 'q"uo\\te+ sp' }).toString().slice(2)}`)).not.toContain('uo');
  });

  it('learns secret query parameters (sslpassword=, password=) and the value as a whole', () => {
    const r = new Redactor();
    r.addUrl('postgresql://u@h/db?sslpassword=Key-Pass-77&password=Pw-88');
    expect(r.redact('Key-Pass-77 Pw-88')).toBe('*** ***');
  });

  it('does not mask a user without a password, nor a URL without credentials', () => {
    const r = new Redactor();
    r.addUrl('postgresql://appuser@db.internal:5432/appdb');
    r.addUrl('redis://127.0.0.1:6379/0');
    expect(r.redact('role "appuser" at db.internal:5432/appdb via redis://127.0.0.1:6379/0')).toBe(
      'role "appuser" at db.internal:5432/appdb via redis://127.0.0.1:6379/0',
    );
  });

  it('a value that is no URL at all, given as a secret setting, is masked whole', () => {
    const r = new Redactor();
    r.addNamed('DATABASE_URL', 'hunter2-plain');
    r.addNamed('DATABASE_PASSWORD', 'pw-part-99');
    r.addNamed('CACHE_KEY_PREFIX', 'myapp');
    expect(r.redact('hunter2-plain pw-part-99 myapp')).toBe('*** *** myapp');
    expect(isSecretName('CLICKHOUSE_URL')).toBe(true);
    expect(isSecretName('DATABASE_HOST')).toBe(false);
  });

  it('keeps placeholders in documentation and hints readable', () => {
    expect(new Redactor().redact('the form is postgresql://USER:PASSWORD@HOST:PORT/DATABASE')).toBe(
      'the form is postgresql://USER:PASSWORD@HOST:PORT/DATABASE',
    );
  });
});

describe('maskUrl', () => {
  it('masks sslpassword and other secret parameters', () => {
    expect(maskUrl('postgresql://u:pw1@h/db?sslpassword=Ssl-Secret-1&sslmode=require')).toBe(
      'postgresql://u:***@h/db?sslpassword=***&sslmode=require',
    );
  });
  it('shows nothing of a value that does not parse as a URL with a host', () => {
    expect(maskUrl('canary_user:Cn4ry@h:5/db')).toBe('***');
    expect(maskUrl('postgres:/u:Cn4ry@h/db')).toBe('***');
    expect(maskUrl('postgresql://u:X a#b@h/db')).toBe('***');
  });
  it('keeps a Unix-socket URL with credentials readable', () => {
    expect(maskUrl('postgresql://u:pw1@/db?host=/run/postgresql')).toBe('postgresql://u:***@/db?host=/run/postgresql');
  });
});
