/** The migration-side API of cache invalidation: templates, prefix, the collector, and its types. */
import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  expandTemplate,
  type Invalidate,
  Owed,
  prefixKey,
  prefixPattern,
  type TemplateFields,
} from '../../src/migrations/invalidation.js';

describe('key templates', () => {
  it('fills every {field} from each row, and a one-field template from bare values', () => {
    expect(expandTemplate('user:{id}', [{ id: 1 }, { id: 'b' }, { id: 3n }])).toEqual(['user:1', 'user:b', 'user:3']);
    expect(expandTemplate('org:{orgId}:user:{id}', [{ orgId: 7, id: 1, name: 'extra fields are fine' }])).toEqual([
      'org:7:user:1',
    ]);
    expect(expandTemplate('user:{id}', [1, 2])).toEqual(['user:1', 'user:2']);
  });

  it('names what a row lacks', () => {
    expect(() => expandTemplate('user:{id}', [{ uid: 1 }])).toThrow(/a row has no id/);
    expect(() => expandTemplate('a:{x}:{y}', [1])).toThrow(/needs x, y/);
    expect(() => expandTemplate('user:1', [{ id: 1 }])).toThrow(/no \{field\}/);
  });

  it('types: the rows must carry the fields the template names', () => {
    expectTypeOf<TemplateFields<'org:{orgId}:user:{id}'>>().toEqualTypeOf<'orgId' | 'id'>();
    const invalidate = (() => {}) as Invalidate;
    invalidate('user:{id}', [{ id: 1 }]);
    invalidate('user:{id}', [{ id: 'x', email: 'y' }] as { id: string; email: string }[]);
    invalidate('user:{id}', [1, 2]);
    invalidate(['a', 'b']);
    invalidate('just-a-key');
    // @ts-expect-error a row without the template's field
    invalidate('user:{id}', [{ uid: 1 }]);
    // @ts-expect-error a field of the wrong type
    invalidate('user:{id}', [{ id: { nested: true } }]);
  });
});

describe('prefix and the collector', () => {
  it('puts CACHE_KEY_PREFIX in front as cache flush does, escaping its glob characters in patterns', () => {
    expect(prefixKey('user:1', 'app')).toBe('app:user:1');
    expect(prefixKey('user:1', 'app:')).toBe('app:user:1');
    expect(prefixKey('user:1', undefined)).toBe('user:1');
    expect(prefixPattern('user:*', 'a*p')).toBe('a\\*p:user:*');
  });

  it('collects keys once each and patterns once each, prefixed', () => {
    const owed = new Owed('app');
    expect(owed.empty).toBe(true);
    owed.addPatterns(['list:*', 'list:*']);
    const invalidate = owed.invalidate();
    invalidate('user:{id}', [{ id: 1 }, { id: 1 }, { id: 2 }]);
    invalidate(['stats']);
    expect(owed.patterns).toEqual(['app:list:*']);
    expect([...owed.keys]).toEqual(['app:user:1', 'app:user:2', 'app:stats']);
    expect(() => invalidate([''])).toThrow(/non-empty string/);
  });
});
