import { describe, expect, it } from 'vitest';
import { readMovable } from '../../src/migrations/dbops-schema.js';

describe('readMovable: a read racing the move of dbops 0.1.0 tables', () => {
  const failing = (errors: unknown[]) => {
    let calls = 0;
    const read = async () => {
      const error = errors[calls++];
      if (error) throw error;
      return calls;
    };
    return { read, calls: () => calls };
  };

  it('reads again when the table was moved away between the lookup and the SELECT', async () => {
    const { read, calls } = failing([
      Object.assign(new Error('cannot open relation "_dbops_data_migrations"'), { code: '42809' }),
      Object.assign(new Error('relation "public._dbops_data_migrations" does not exist'), { code: '42P01' }),
    ]);
    expect(await readMovable(read)).toBe(3);
    expect(calls()).toBe(3);
  });

  it('any other error is thrown at once, and a table that keeps vanishing after three reads', async () => {
    const other = failing([Object.assign(new Error('permission denied'), { code: '42501' })]);
    await expect(readMovable(other.read)).rejects.toThrow(/permission denied/);
    expect(other.calls()).toBe(1);
    const gone = Object.assign(new Error('does not exist'), { code: '42P01' });
    const always = failing([gone, gone, gone, gone]);
    await expect(readMovable(always.read)).rejects.toBe(gone);
    expect(always.calls()).toBe(3);
  });
});
