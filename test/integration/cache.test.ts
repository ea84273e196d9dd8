/** The cache core against real servers: the shared redis-server (own key namespace) and the 3-primary cluster. */
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flushKeys } from '../../src/cache/flush.js';
import { applyPrefix, escapeGlob, globMatch } from '../../src/cache/glob.js';
import { inspectKeys } from '../../src/cache/keys.js';
import { keySlot } from '../../src/cache/slot.js';
import { collectStats } from '../../src/cache/stats.js';
import { type CacheTarget, openTarget } from '../../src/cache/target.js';
import { redisNamespace, redisUrl, services } from '../helpers/services.js';

const hex = (k: Buffer) => k.toString('hex');
const pat = (ns: string, tail: string | Buffer) => Buffer.concat([escapeGlob(ns), Buffer.from(tail)]);

/** Every key the server's own SCAN MATCH returns (one full iteration, large COUNT). */
async function serverMatch(client: Redis, pattern: Buffer): Promise<Set<string>> {
  const out = new Set<string>();
  let cursor = '0';
  do {
    const [next, keys] = (await client.callBuffer('SCAN', cursor, 'MATCH', pattern, 'COUNT', 10_000)) as [
      Buffer,
      Buffer[],
    ];
    cursor = next.toString();
    for (const k of keys) out.add(hex(k));
  } while (cursor !== '0');
  return out;
}

describe('cache core on a standalone server', () => {
  let client: Redis;
  let target: CacheTarget;
  beforeAll(async () => {
    client = new Redis(redisUrl());
    target = await openTarget({ url: redisUrl(), timeoutMs: 5000 });
  });
  afterAll(async () => {
    await target.close();
    client.disconnect();
  });

  const tails: Array<string | Buffer> = [
    'a',
    'ab',
    'a*b',
    'a?b',
    'a[b',
    'a]b',
    'a\\b',
    'a b',
    'a-b',
    'x^y',
    'abc',
    'A',
    'z',
    'é',
    '日本',
    'a{tag}b',
    '\n',
    '',
    Buffer.from([0xff, 0xfe]),
    Buffer.from([0x61, 0x80]),
    Buffer.from([0xa0]),
  ];
  const patterns: Array<string | Buffer> = [
    '*',
    '?',
    '??',
    'a*',
    'a?b',
    'a\\*b',
    'a\\?b',
    'a*b',
    '[ab]*',
    '[^a]*',
    '[!a]*',
    '[a-c]',
    '[c-a]',
    'a[\\]]b',
    'a[]]b',
    'a[b',
    'a[',
    '[',
    'a\\',
    'a\\\\b',
    'a[b-]',
    '[a-]b',
    '**',
    '*b',
    '日*',
    '?本',
    '???本',
    'a\\[b',
    'a{*}b',
    '[^]',
    Buffer.from([0xff, 0x2a]),
    Buffer.concat([Buffer.from('[a-'), Buffer.from([0xff]), Buffer.from(']*')]),
    Buffer.concat([Buffer.from('[^'), Buffer.from([0x80, 0x2d, 0xff]), Buffer.from(']')]),
    Buffer.concat([Buffer.from('a['), Buffer.from([0x80, 0x2d, 0xff]), Buffer.from(']')]),
  ];

  it('matches exactly what the server matches, for tricky keys and patterns (dry run and glob)', async () => {
    const ns = redisNamespace();
    const keys = tails.map((t) => Buffer.concat([Buffer.from(ns), Buffer.from(t)]));
    for (const k of keys) await client.set(k, '1');
    for (const tail of patterns) {
      const p = pat(ns, tail);
      const server = await serverMatch(client, p);
      const mine = new Set(keys.filter((k) => globMatch(p, k)).map(hex));
      expect([...mine].sort(), `glob ${p.toString('latin1')}`).toEqual([...server].sort());
      const dry = await flushKeys(target, { pattern: p, count: 50, dryRun: true, sampleSize: 100 });
      expect(dry.matched, `dry run ${p.toString('latin1')}`).toBe(server.size);
      expect(dry.removed).toBe(0);
    }
    expect(await client.exists(...keys)).toBe(keys.length); // dry runs removed nothing
    await client.unlink(...keys);
  });

  it('flushes binary, unicode and spaced keys and nothing else', async () => {
    const ns = redisNamespace();
    const victims = [
      Buffer.from(`${ns}u:a b`),
      Buffer.from(`${ns}u:日本`),
      Buffer.concat([Buffer.from(`${ns}u:`), Buffer.from([0xff, 0xfe, 0x00])]),
    ];
    for (let i = 0; i < 2500; i++) victims.push(Buffer.from(`${ns}u:${i}`));
    const keep = [
      Buffer.from(`${ns}v:1`),
      Buffer.from(`${ns}u`),
      Buffer.concat([Buffer.from(`${ns}x:`), Buffer.from([0xff])]),
    ];
    for (const k of [...victims, ...keep]) await client.set(k, 'v');
    const r = await flushKeys(target, { pattern: pat(ns, 'u:*'), count: 100 });
    expect(r.stopped).toBe('done');
    expect(r.removed).toBe(victims.length);
    expect(await client.exists(...victims)).toBe(0);
    expect(await client.exists(...keep)).toBe(keep.length);
    await client.unlink(...keep);
  });

  it('applies the key prefix with its own glob characters escaped', async () => {
    const ns = redisNamespace();
    const prefix = `${ns}a*p`;
    await client.set(`${prefix}:user:1`, '1');
    await client.set(`${prefix}:user:2`, '1');
    await client.set(`${ns}aXp:user:1`, '1'); // would match if the prefix's * were a wildcard
    await client.set(`${prefix}:session:1`, '1');
    const r = await flushKeys(target, { pattern: applyPrefix('user:*', prefix), count: 100 });
    expect(r.removed).toBe(2);
    expect(await client.exists(`${ns}aXp:user:1`, `${prefix}:session:1`)).toBe(2);
    await client.unlink(`${ns}aXp:user:1`, `${prefix}:session:1`);
  });

  it('stops exactly at --max-keys', async () => {
    const ns = redisNamespace();
    for (let i = 0; i < 120; i++) await client.set(`${ns}k:${i}`, '1');
    const r = await flushKeys(target, { pattern: pat(ns, 'k:*'), count: 7, maxKeys: 50 });
    expect(r.stopped).toBe('max-keys');
    expect(r.removed).toBe(50);
    const left = await serverMatch(client, pat(ns, '*'));
    expect(left.size).toBe(70);
    await flushKeys(target, { pattern: pat(ns, '*'), count: 100 });
  });

  it('filters by type with SCAN TYPE', async () => {
    const ns = redisNamespace();
    await client.set(`${ns}s`, '1');
    await client.hset(`${ns}h`, 'f', '1');
    await client.rpush(`${ns}l`, '1');
    const r = await flushKeys(target, { pattern: pat(ns, '*'), count: 100, type: 'hash' });
    expect(r.removed).toBe(1);
    expect(await client.exists(`${ns}s`, `${ns}h`, `${ns}l`)).toBe(2);
    await client.unlink(`${ns}s`, `${ns}l`);
  });

  it('stops after the current batch when the signal aborts', async () => {
    const ns = redisNamespace();
    const pipeline = client.pipeline();
    for (let i = 0; i < 3000; i++) pipeline.set(`${ns}k:${i}`, '1');
    await pipeline.exec();
    const ac = new AbortController();
    const r = await flushKeys(target, {
      pattern: pat(ns, 'k:*'),
      count: 50,
      signal: ac.signal,
      onProgress: (p) => {
        if (p.removed > 0) ac.abort();
      },
    });
    expect(r.stopped).toBe('interrupted');
    const left = (await serverMatch(client, pat(ns, 'k:*'))).size;
    expect(left).toBeGreaterThan(0);
    expect(r.removed).toBe(3000 - left); // every UNLINK reply was counted before returning
    await flushKeys(target, { pattern: pat(ns, '*'), count: 1000 });
  });

  it('keys: exact count, sample and memory', async () => {
    const ns = redisNamespace();
    for (let i = 0; i < 300; i++) await client.set(`${ns}m:${i}`, 'x'.repeat(100));
    const r = await inspectKeys(target, { pattern: pat(ns, 'm:*'), count: 30, limit: 5, memory: true });
    expect(r.count).toBe(300);
    expect(r.sample).toHaveLength(5);
    expect(r.sample.every((s) => typeof s.bytes === 'number' && (s.bytes as number) > 100)).toBe(true);
    expect(r.memory?.estimatedTotalBytes).toBeGreaterThan(300 * 100);
    await flushKeys(target, { pattern: pat(ns, '*'), count: 1000 });
  });

  it('stats reads memory, keyspace and hit counters', async () => {
    const s = await collectStats(target);
    expect(s.nodes).toHaveLength(1);
    expect(s.nodes[0]?.usedMemoryBytes).toBeGreaterThan(0);
    expect(s.nodes[0]?.role).toBe('master');
  });
});

describe('cache core on the 3-primary cluster', () => {
  let target: CacheTarget;
  let cluster: Cluster;
  beforeAll(async () => {
    const port = services().cluster.ports[0];
    target = await openTarget({ url: `redis://127.0.0.1:${port}/0`, timeoutMs: 5000 });
    cluster = new Cluster([{ host: '127.0.0.1', port: port as number }]);
  });
  afterAll(async () => {
    await target.close();
    cluster.disconnect();
  });

  it('computes the same slots as the server', async () => {
    const node = target.nodes[0]?.client as Redis;
    for (const k of ['foo', '{user}:1', '{}{x}', 'a{}b', '{a}{b}', '日本']) {
      expect(keySlot(k), k).toBe(Number(await node.cluster('KEYSLOT', k)));
    }
  });

  it('flushes keys spread over every primary, grouped by slot, with a per-node report', async () => {
    expect(target.info.mode).toBe('cluster');
    expect(target.nodes).toHaveLength(3);
    const ns = redisNamespace();
    const keys: string[] = [];
    for (let i = 0; i < 3000; i++) keys.push(`${ns}u:${i}`);
    for (const k of keys) await cluster.set(k, '1');
    await cluster.set(`${ns}keep`, '1');
    const r = await flushKeys(target, { pattern: pat(ns, 'u:*'), count: 200 });
    expect(r.stopped).toBe('done');
    expect(r.removed).toBe(3000);
    expect(r.nodes).toHaveLength(3);
    expect(r.nodes.every((n) => n.removed > 0 && n.complete)).toBe(true);
    expect(r.nodes.reduce((a, n) => a + n.removed, 0)).toBe(3000);
    for (let i = 0; i < keys.length; i += 500) {
      const chunk = keys.slice(i, i + 500);
      const counts = await Promise.all(chunk.map((k) => cluster.exists(k)));
      expect(counts.reduce((a, b) => a + b, 0)).toBe(0);
    }
    expect(await cluster.exists(`${ns}keep`)).toBe(1);
    await cluster.unlink(`${ns}keep`);
  });

  it('a pattern pinning one hash tag goes only to the owning node', async () => {
    const ns = redisNamespace();
    const tag = `{${ns}t}`;
    for (let i = 0; i < 200; i++) await cluster.set(`${tag}:${i}`, '1');
    await cluster.set(`{${ns}other}:1`, '1');
    const r = await flushKeys(target, { pattern: Buffer.from(`${escapeGlob(tag).toString()}:*`), count: 100 });
    expect(r.pinnedSlot).toBe(keySlot(`${ns}t`));
    expect(r.nodes).toHaveLength(1);
    expect(r.nodes[0]?.node).toBe(target.ownerOf(keySlot(`${ns}t`))?.id);
    expect(r.removed).toBe(200);
    expect(await cluster.exists(`{${ns}other}:1`)).toBe(1);
    await cluster.unlink(`{${ns}other}:1`);
  });

  it('stats report every primary', async () => {
    const s = await collectStats(target);
    expect(s.nodes).toHaveLength(3);
    expect(s.nodes.every((n) => n.role === 'master')).toBe(true);
  });
});
