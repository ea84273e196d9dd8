import { describe, expect, it } from 'vitest';
import { describeRedis, redisOptions } from '../../src/db/redis.js';

describe('redisOptions', () => {
  it('connects to an IPv6 literal without its brackets', () => {
    const o = redisOptions('redis://[::1]:6380/2', 1000);
    expect(o.host).toBe('::1');
    expect(o.port).toBe(6380);
    expect(o.db).toBe(2);
  });
  it('bounds every retry and takes ACL user and password from the URL', () => {
    const o = redisOptions('rediss://app:s%40cret@cache.internal:6390/0', 1500);
    expect(o).toMatchObject({ username: 'app', password: 's@cret', connectTimeout: 1500, maxRetriesPerRequest: 0 });
    expect(o.retryStrategy?.(1)).toBeNull();
    expect(o.tls).toMatchObject({ servername: 'cache.internal' });
    expect(describeRedis('rediss://app:s%40cret@cache.internal:6390/0')).toBe('rediss://cache.internal:6390/0');
  });
});
