/** Redis keys for the cache tests: fill a namespace, count what matches. */
import type { Redis } from 'ioredis';

/** Sets `${ns}${tail}:0 .. n-1` to '1', in pipelines of 1,000. */
export async function fillKeys(client: Redis, ns: string, n: number, tail = 'user'): Promise<void> {
  for (let i = 0; i < n; i += 1000) {
    const p = client.pipeline();
    for (let j = i; j < Math.min(n, i + 1000); j++) p.set(`${ns}${tail}:${j}`, '1');
    await p.exec();
  }
}

/** Distinct keys matching: SCAN may return a key twice while the server rehashes its table. */
export async function countMatching(client: Redis, pattern: string): Promise<number> {
  let cursor = '0';
  const seen = new Set<string>();
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 10_000);
    cursor = next;
    for (const k of keys) seen.add(k);
  } while (cursor !== '0');
  return seen.size;
}
