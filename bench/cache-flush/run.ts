/**
 * cache-flush: delete 1,000,000 `user:<n>` keys out of 2,000,000 (plus 1,000,000 `session:<n>`),
 * one fresh redis-server per method, while a separate process PINGs about every millisecond.
 *
 *   raw    UNLINK of the known keys, 1000 per command, through `redis-cli --pipe` (physical reference)
 *   naive  KEYS user:* then DEL in 1000-key chunks (the original design)
 *   cli    redis-cli --scan --pattern 'user:*' | xargs redis-cli unlink
 *   dbops  dbops cache flush 'user:*' --yes (also --in-flight 1 and 4, and the SCAN-only --dry-run)
 * then dbops on a 3-primary cluster, and dbops' peak RSS for 10,000,000 matching keys.
 *
 * Options: --quick skips the 10M RSS run. BENCH_KEYS overrides 1,000,000.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { keySlot } from '../../src/cache/slot.js';
import { startRedis, startRedisCluster } from '../../test/helpers/servers.js';
import { fmt, printTable } from '../lib/measure.js';
import { type Probe, sh, startProber } from '../lib/proc.js';

const N = Number(process.env.BENCH_KEYS ?? 1_000_000);
const quick = process.argv.includes('--quick');
const bin = fileURLToPath(new URL('../../bin/dbops.js', import.meta.url));

async function populate(client: Redis): Promise<void> {
  await client.call('DEBUG', 'POPULATE', String(N), 'user', '32');
  await client.call('DEBUG', 'POPULATE', String(N), 'session', '32');
}

async function countUser(client: Redis): Promise<number> {
  let cursor = '0';
  let n = 0;
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', 'user:*', 'COUNT', 10_000);
    cursor = next;
    n += keys.length;
  } while (cursor !== '0');
  return n;
}

interface Row {
  method: string;
  wall: number;
  probe: Probe;
  ok: boolean;
  rssMb?: number;
}

function respCommand(parts: string[]): string {
  let s = `*${parts.length}\r\n`;
  for (const p of parts) s += `$${Buffer.byteLength(p)}\r\n${p}\r\n`;
  return s;
}

function unlinkPipeFile(keys: (i: number) => string, count: number): string {
  const file = join(tmpdir(), `dbops-bench-unlink-${process.pid}.resp`);
  const chunks: string[] = [];
  for (let i = 0; i < count; i += 1000) {
    const parts = ['UNLINK'];
    for (let j = i; j < Math.min(count, i + 1000); j++) parts.push(keys(j));
    chunks.push(respCommand(parts));
  }
  writeFileSync(file, chunks.join(''));
  return file;
}

const methods: Array<{ name: string; run: (port: number, client: Redis) => Promise<{ rssMb?: number }> }> = [
  {
    name: 'raw: UNLINK 1000 x 1000 via redis-cli --pipe',
    run: async (port) => {
      const file = unlinkPipeFile((i) => `user:${i}`, N);
      const r = await sh('bash', ['-c', `redis-cli -p ${port} --pipe < ${file}`]);
      if (r.code !== 0) throw new Error(r.stderr);
      return {};
    },
  },
  {
    name: 'naive: KEYS + DEL in 1000-key chunks',
    run: async (_port, client) => {
      const keys = await client.keys('user:*');
      const pending: Array<Promise<number>> = [];
      for (let i = 0; i < keys.length; i += 1000) pending.push(client.del(...keys.slice(i, i + 1000)));
      await Promise.all(pending);
      return {};
    },
  },
  {
    name: 'cli: redis-cli --scan | xargs redis-cli unlink',
    run: async (port) => {
      const r = await sh('bash', [
        '-c',
        `redis-cli -p ${port} --scan --pattern 'user:*' | xargs redis-cli -p ${port} unlink > /dev/null`,
      ]);
      if (r.code !== 0) throw new Error(r.stderr);
      return {};
    },
  },
  ...[2, 1, 4].map((depth) => ({
    name: `dbops cache flush (COUNT 1000, in-flight ${depth}${depth === 2 ? ', default' : ''})`,
    run: (port: number) => dbops(`redis://127.0.0.1:${port}/0`, ['--in-flight', String(depth)]),
  })),
];

async function dbops(
  url: string,
  extra: string[] = [],
  nodeOptions?: string,
): Promise<{ rssMb: number; removed: number }> {
  const r = await sh(
    '/usr/bin/time',
    ['-f', 'RSS_KB=%M', bin, '--json', 'cache', 'flush', 'user:*', '--yes', ...extra],
    {
      env: { ...process.env, REDIS_URL: url, NO_COLOR: '1', ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}) },
    },
  );
  if (r.code !== 0) throw new Error(`dbops exited ${r.code}: ${r.stderr}`);
  const rss = Number(/RSS_KB=(\d+)/.exec(r.stderr)?.[1] ?? 0);
  const doc = JSON.parse(r.stdout) as { removed: number };
  return { rssMb: rss / 1024, removed: doc.removed };
}

/** One method on a fresh server with the 2M keys, a PING prober running; `keepsAll`: a dry run deletes nothing. */
async function standalone(method: (typeof methods)[number], keepsAll = false): Promise<Row> {
  const server = await startRedis(['--enable-debug-command', 'yes']);
  const client = new Redis(server.url);
  try {
    await populate(client);
    const stop = await startProber(server.port);
    const t0 = process.hrtime.bigint();
    const extra = await method.run(server.port, client);
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const probe = await stop();
    const ok = keepsAll
      ? Number(await client.dbsize()) === 2 * N
      : Number(await client.dbsize()) === N &&
        (await countUser(client)) === 0 &&
        (await client.exists('session:0', `session:${N - 1}`)) === 2;
    return { method: method.name, wall, probe, ok, ...(extra.rssMb ? { rssMb: extra.rssMb } : {}) };
  } finally {
    client.disconnect();
    await server.stop();
  }
}

async function clusterRow(): Promise<Row> {
  const cluster = await startRedisCluster();
  try {
    const clients = cluster.ports.map((p) => new Redis(p, '127.0.0.1'));
    const slotsOwner = new Array<number>(16384);
    const slots = (await clients[0]?.cluster('SLOTS')) as unknown as Array<[number, number, [string, number]]>;
    for (const [from, to, [, port]] of slots)
      for (let s = from; s <= to; s++) slotsOwner[s] = cluster.ports.indexOf(port);
    // Load each key on the primary that owns its slot, with redis-cli --pipe per node.
    const perNode: string[][] = cluster.ports.map(() => []);
    for (const prefix of ['user', 'session']) {
      for (let i = 0; i < N; i++) {
        const key = `${prefix}:${i}`;
        perNode[slotsOwner[keySlot(key)] as number]?.push(respCommand(['SET', key, 'v'.repeat(32)]));
      }
    }
    await Promise.all(
      cluster.ports.map(async (port, i) => {
        const file = join(tmpdir(), `dbops-bench-cluster-${port}.resp`);
        writeFileSync(file, (perNode[i] as string[]).join(''));
        perNode[i] = [];
        const r = await sh('bash', ['-c', `redis-cli -p ${port} --pipe < ${file}`]);
        if (r.code !== 0) throw new Error(r.stderr);
      }),
    );
    const stop = await startProber(cluster.ports[0] as number);
    const t0 = process.hrtime.bigint();
    const r = await dbops(cluster.url);
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const probe = await stop();
    let total = 0;
    let users = 0;
    for (const c of clients) {
      total += Number(await c.dbsize());
      users += await countUser(c);
    }
    for (const c of clients) c.disconnect();
    return {
      method: 'dbops on the 3-primary cluster',
      wall,
      probe,
      ok: total === N && users === 0 && r.removed === N,
      rssMb: r.rssMb,
    };
  } finally {
    await cluster.stop();
  }
}

async function rss10m(nodeOptions?: string): Promise<{ keys: number; wall: number; rssMb: number; ok: boolean }> {
  const keys = 10_000_000;
  const server = await startRedis(['--enable-debug-command', 'yes']);
  const client = new Redis(server.url);
  try {
    await client.call('DEBUG', 'POPULATE', String(keys), 'user', '8');
    const t0 = process.hrtime.bigint();
    const r = await dbops(server.url, [], nodeOptions);
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    return { keys, wall, rssMb: r.rssMb, ok: r.removed === keys && Number(await client.dbsize()) === 0 };
  } finally {
    client.disconnect();
    await server.stop();
  }
}

const version = execFileSync('redis-server', ['--version'], { encoding: 'utf8' }).split(' ')[2];
console.log(
  `redis-server ${version}; ${N.toLocaleString('en-US')} user + ${N.toLocaleString('en-US')} session keys per fresh server; PING prober every ~1 ms\n`,
);
const rows: Row[] = [];
for (const m of methods) {
  rows.push(await standalone(m));
  process.stderr.write(`done: ${m.name}\n`);
}
rows.push(
  await standalone(
    {
      name: 'dbops --dry-run (SCAN only, reference)',
      run: (port) => dbops(`redis://127.0.0.1:${port}/0`, ['--dry-run']).then(() => ({})),
    },
    true,
  ),
);
rows.push(await clusterRow());
const rate = (r: Row) => N / r.wall;
const raw = rows[0] as Row;
const naive = rows[1] as Row;
const cli = rows[2] as Row;
const dbopsRow = rows[3] as Row;
const clusterR = rows[rows.length - 1] as Row;
printTable(
  rows.map((r) => ({
    method: r.method,
    'wall s': fmt(r.wall, 2),
    'keys/s': Math.round(rate(r)).toLocaleString('en-US'),
    'x raw': fmt(rate(r) / rate(raw), 2),
    'PING p99 ms': fmt(r.probe.p99, 2),
    'PING max ms': fmt(r.probe.max, 1),
    pings: r.probe.n,
    'dbops RSS MB': r.rssMb ? fmt(r.rssMb, 0) : '',
    'user:* gone, rest intact': r.ok ? 'yes' : 'NO',
  })),
);
const goal = (label: string, met: boolean, detail: string) =>
  console.log(`${met ? 'MET    ' : 'NOT MET'} ${label}: ${detail}`);
console.log('');
goal('dbops >= 0.9x naive keys/s', rate(dbopsRow) >= 0.9 * rate(naive), `${fmt(rate(dbopsRow) / rate(naive), 2)}x`);
goal(
  'dbops PING p99 < 2 ms and max < 10 ms',
  dbopsRow.probe.p99 < 2 && dbopsRow.probe.max < 10,
  `p99 ${fmt(dbopsRow.probe.p99, 2)} ms, max ${fmt(dbopsRow.probe.max, 1)} ms (naive max ${fmt(naive.probe.max, 0)} ms)`,
);
goal('dbops >= 3x the redis-cli pipeline', rate(dbopsRow) >= 3 * rate(cli), `${fmt(rate(dbopsRow) / rate(cli), 2)}x`);
goal(
  'cluster >= 1.5x single-node keys/s',
  rate(clusterR) >= 1.5 * rate(dbopsRow),
  `${fmt(rate(clusterR) / rate(dbopsRow), 2)}x`,
);
goal(
  'exactly the user keys removed in every run',
  rows.every((r) => r.ok),
  rows.every((r) => r.ok) ? 'yes' : 'no',
);
if (quick) {
  console.log('SKIPPED peak RSS for 10,000,000 matching keys (--quick)');
} else {
  const big = await rss10m();
  goal(
    'dbops peak RSS < 100 MB for 10,000,000 matching keys',
    big.rssMb < 100 && big.ok,
    `${fmt(big.rssMb, 0)} MB, ${fmt(big.wall, 1)} s, ${Math.round(big.keys / big.wall).toLocaleString('en-US')} keys/s, all removed: ${big.ok ? 'yes' : 'NO'}`,
  );
}
