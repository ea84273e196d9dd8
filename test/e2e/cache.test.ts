/** `dbops cache ...` as a user runs it: the built CLI against real redis-servers and the cluster. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, runDbops, runOnTerminal, startDbops } from '../helpers/cli.js';
import { countMatching, fillKeys } from '../helpers/redis-keys.js';
import { freePort, type RedisServer, startRedis } from '../helpers/servers.js';
import { redisNamespace, redisUrl, services } from '../helpers/services.js';

const SECRET = 'Cache-Pw-u7Qx93Lk';

async function waitUntil(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('dbops cache on the shared server', () => {
  let client: Redis;
  const env = () => cleanEnv({ REDIS_URL: redisUrl() });
  beforeAll(() => {
    client = new Redis(redisUrl());
  });
  afterAll(() => client.disconnect());

  it('refuses an empty pattern, a match-everything pattern without --all, and deleting without --yes off a terminal', async () => {
    const ns = redisNamespace();
    await fillKeys(client, ns, 10);
    const empty = await runDbops(['cache', 'flush', '', '--yes'], { env: env() });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/empty pattern/);
    const all = await runDbops(['cache', 'flush', '*', '--yes'], { env: env() });
    expect(all.code).toBe(2);
    expect(all.stderr).toMatch(/matches every key/);
    expect(all.stderr).toMatch(/FLUSHDB ASYNC/);
    const all2 = await runDbops(['cache', 'flush', '?*?', '--yes'], { env: env() });
    expect(all2.code).toBe(2);
    const noYes = await runDbops(['cache', 'flush', `${ns}user:*`], { env: env() });
    expect(noYes.code).toBe(2);
    expect(noYes.stderr).toMatch(/--yes/);
    expect(await countMatching(client, `${ns}*`)).toBe(10);
  });

  it('on a terminal: shows the count and a sample, asks, and deletes only after yes', async () => {
    const ns = redisNamespace();
    await fillKeys(client, ns, 10);
    // a real pseudo-terminal; the answer is typed at the prompt
    const onTty = (answer: string) =>
      runOnTerminal(['cache', 'flush', `${ns}user:*`], { env: cleanEnv({ REDIS_URL: redisUrl() }), answer });
    const no = await onTty('n');
    expect(no.out).toMatch(/matching keys\s*│\s*10/);
    expect(no.out).toMatch(new RegExp(`${ns}user:\\d+`));
    expect(no.out).toMatch(/delete 10 keys matching .*\? \[y\/N\]/);
    expect(no.out).toMatch(/not confirmed: nothing deleted/);
    expect(no.code).toBe(2);
    expect(await countMatching(client, `${ns}user:*`)).toBe(10);
    const yes = await onTty('y');
    expect(yes.code).toBe(0);
    expect(await countMatching(client, `${ns}user:*`)).toBe(0);
  });

  it('--dry-run counts and samples but removes nothing; --yes --json removes exactly the matches', async () => {
    const ns = redisNamespace();
    await fillKeys(client, ns, 1500, 'user');
    await fillKeys(client, ns, 500, 'session');
    const dry = await runDbops(['--json', 'cache', 'flush', `${ns}user:*`, '--dry-run', '--count', '100'], {
      env: env(),
    });
    expect(dry.code).toBe(0);
    const d = JSON.parse(dry.stdout);
    expect(d).toMatchObject({
      dryRun: true,
      matched: 1500,
      removed: 0,
      stopped: 'done',
      target: { mode: 'standalone', nodes: 1, db: 0 },
    });
    expect(d.sample).toHaveLength(20);
    expect(await countMatching(client, `${ns}user:*`)).toBe(1500);
    const r = await runDbops(['--json', 'cache', 'flush', `${ns}user:*`, '--yes', '--count', '100'], { env: env() });
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ ok: true, removed: 1500, stopped: 'done' });
    expect(doc.target.version).toMatch(/^\d+\.\d+/);
    // The target is printed before anything is deleted.
    expect(r.stderr).toMatch(
      new RegExp(
        `→ Redis redis://127.0.0.1:${services().redis.port}/0 \\(REDIS_URL from the environment\\): standalone, db 0, 1 node, server \\d`,
      ),
    );
    expect(await countMatching(client, `${ns}user:*`)).toBe(0);
    expect(await countMatching(client, `${ns}session:*`)).toBe(500);
  });

  it('CACHE_KEY_PREFIX is put before the pattern (escaped); --no-prefix matches raw names', async () => {
    const ns = redisNamespace();
    const prefix = `${ns}app[1]`;
    await client.set(`${prefix}:user:1`, '1');
    await client.set(`${ns}app1:user:1`, '1');
    const r = await runDbops(['--json', 'cache', 'flush', 'user:*', '--yes'], {
      env: cleanEnv({ REDIS_URL: redisUrl(), CACHE_KEY_PREFIX: prefix }),
    });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ removed: 1, prefix });
    expect(await client.exists(`${prefix}:user:1`, `${ns}app1:user:1`)).toBe(1);
    const raw = await runDbops(['--json', 'cache', 'flush', `${ns}app1:*`, '--yes', '--no-prefix'], {
      env: cleanEnv({ REDIS_URL: redisUrl(), CACHE_KEY_PREFIX: prefix }),
    });
    expect(JSON.parse(raw.stdout)).toMatchObject({ removed: 1, prefix: null });
  });

  it('--max-keys stops after N deletions with exit 3', async () => {
    const ns = redisNamespace();
    await fillKeys(client, ns, 300);
    const r = await runDbops(
      ['--json', 'cache', 'flush', `${ns}user:*`, '--yes', '--max-keys', '120', '--count', '50'],
      { env: env() },
    );
    expect(r.code).toBe(3);
    expect(JSON.parse(r.stdout)).toMatchObject({ removed: 120, stopped: 'max-keys' });
    expect(await countMatching(client, `${ns}user:*`)).toBe(180);
    await runDbops(['cache', 'flush', `${ns}*`, '--yes'], { env: env() });
  });

  it('cache keys counts and samples; cache stats reports the server', async () => {
    const ns = redisNamespace();
    await fillKeys(client, ns, 250);
    const k = await runDbops(['--json', 'cache', 'keys', `${ns}user:*`, '--limit', '3', '--memory'], { env: env() });
    expect(k.code).toBe(0);
    const doc = JSON.parse(k.stdout);
    expect(doc).toMatchObject({ count: 250, approximate: false });
    expect(doc.sample).toHaveLength(3);
    expect(doc.memory.sampleKeys).toBe(3);
    const human = await runDbops(['cache', 'keys', `${ns}user:*`, '--limit', '2'], { env: env() });
    expect(human.stdout).toMatch(/matching keys\s*│\s*250/);
    const s = await runDbops(['--json', 'cache', 'stats'], { env: env() });
    expect(s.code).toBe(0);
    const st = JSON.parse(s.stdout);
    expect(st.nodes).toHaveLength(1);
    expect(st.nodes[0].usedMemoryBytes).toBeGreaterThan(0);
    expect(st.total).toHaveProperty('hitRatio');
    await runDbops(['cache', 'flush', `${ns}*`, '--yes'], { env: env() });
  });
});

describe('dbops cache failures, auth and TLS (private servers)', () => {
  const servers: RedisServer[] = [];
  afterAll(async () => {
    for (const s of servers) await s.stop();
  });

  async function populated(n: number, extra: string[] = []): Promise<{ server: RedisServer; client: Redis }> {
    const server = await startRedis(['--enable-debug-command', 'yes', ...extra]);
    servers.push(server);
    const client = new Redis(server.url);
    client.on('error', () => {});
    await client.call('DEBUG', 'POPULATE', String(n), 'user', '8');
    await client.call('DEBUG', 'POPULATE', '1000', 'session', '8');
    return { server, client };
  }

  it('Redis killed mid-flush: non-zero exit with the count so far', async () => {
    const { server, client } = await populated(200_000);
    const pid = Number(/process_id:(\d+)/.exec(await client.info('server'))?.[1]);
    const run = startDbops(['--json', 'cache', 'flush', 'user:*', '--yes', '--count', '100', '--pause-ms', '1'], {
      env: cleanEnv({ REDIS_URL: server.url }),
    });
    await waitUntil(async () => Number(await client.dbsize()) < 195_000, 'some progress');
    client.disconnect();
    process.kill(pid, 'SIGKILL');
    const r = await run.done;
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(doc.stopped).toBe('error');
    expect(doc.removed).toBeGreaterThan(0);
    expect(r.stderr).toMatch(
      new RegExp(`flush stopped by an error: .*; ${doc.removed.toLocaleString('en-US')} keys removed so far`),
    );
    expect(r.stderr).toMatch(/run the same command again/);
  });

  it('connection lost mid-flush (CLIENT KILL): non-zero exit, then the same command completes the job', async () => {
    const { server, client } = await populated(200_000);
    const env = cleanEnv({ REDIS_URL: server.url });
    const run = startDbops(['--json', 'cache', 'flush', 'user:*', '--yes', '--count', '100', '--pause-ms', '1'], {
      env,
    });
    await waitUntil(async () => Number(await client.dbsize()) < 195_000, 'some progress');
    await client.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    const r = await run.done;
    expect(r.code).toBe(1);
    const first = JSON.parse(r.stdout);
    const left = await countMatching(client, 'user:*');
    expect(left).toBeGreaterThan(0);
    // The reported count never exceeds what was really removed (a reply lost with the connection is not counted).
    expect(first.removed).toBeLessThanOrEqual(200_000 - left);
    expect(first.removed).toBeGreaterThan(0);
    const again = await runDbops(['--json', 'cache', 'flush', 'user:*', '--yes'], { env });
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout).removed).toBe(left);
    expect(await countMatching(client, 'user:*')).toBe(0);
    expect(await countMatching(client, 'session:*')).toBe(1000);
    client.disconnect();
  });

  it('Ctrl-C stops after the current batch, prints progress, exit 130', async () => {
    const { server, client } = await populated(200_000);
    const run = startDbops(['--json', 'cache', 'flush', 'user:*', '--yes', '--count', '100', '--pause-ms', '1'], {
      env: cleanEnv({ REDIS_URL: server.url }),
    });
    await waitUntil(async () => Number(await client.dbsize()) < 195_000, 'some progress');
    run.child.kill('SIGINT');
    const r = await run.done;
    expect(r.code).toBe(130);
    const doc = JSON.parse(r.stdout);
    expect(doc.stopped).toBe('interrupted');
    const left = await countMatching(client, 'user:*');
    expect(left).toBeGreaterThan(0);
    expect(doc.removed).toBe(200_000 - left);
    expect(r.stderr).toMatch(/interrupted after the current batch: [\d,]+ keys removed so far/);
    client.disconnect();
  });

  it('a password (requirepass) and an ACL user work, and no password is ever printed', async () => {
    const server = await startRedis(['--requirepass', SECRET, '--user', 'ops', 'on', `>${SECRET}x`, '~*', '+@all']);
    servers.push(server);
    const url = `redis://:${SECRET}@127.0.0.1:${server.port}/0`;
    const admin = new Redis(url);
    await fillKeys(admin, 'a:', 50);
    const r = await runDbops(['cache', 'flush', 'a:user:*', '--yes'], { env: cleanEnv({ REDIS_URL: url }) });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/redis:\/\/:\*\*\*@127\.0\.0\.1/);
    const aclUrl = `redis://ops:${SECRET}x@127.0.0.1:${server.port}/0`;
    await fillKeys(admin, 'b:', 50);
    const acl = await runDbops(['--json', 'cache', 'flush', 'b:user:*', '--yes'], {
      env: cleanEnv({ REDIS_URL: aclUrl }),
    });
    expect(acl.code).toBe(0);
    expect(JSON.parse(acl.stdout).removed).toBe(50);
    expect(acl.stderr).toMatch(/redis:\/\/ops:\*\*\*@/);
    const stats = await runDbops(['cache', 'stats', '--redis-url', aclUrl, '-v'], { env: cleanEnv() });
    expect(stats.code).toBe(0);
    const wrong = await runDbops(['--json', 'cache', 'flush', 'x:*', '--yes'], {
      env: cleanEnv({ REDIS_URL: `redis://ops:${SECRET}WRONG@127.0.0.1:${server.port}/0` }),
    });
    expect(wrong.code).toBe(5);
    expect(wrong.stderr).toMatch(/refused the login/);
    for (const out of [r, acl, stats, wrong]) expect(out.stdout + out.stderr).not.toContain(SECRET);
    admin.disconnect();
  });

  it('TLS (rediss://) with a self-signed certificate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dbops-tls-'));
    const ca = join(dir, 'ca.crt');
    const cert = join(dir, 'redis.crt');
    const key = join(dir, 'redis.key');
    const q = { stdio: 'ignore' } as const;
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=dbops test CA',
        '-keyout',
        join(dir, 'ca.key'),
        '-out',
        ca,
      ],
      q,
    );
    execFileSync(
      'openssl',
      [
        'req',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-subj',
        '/CN=127.0.0.1',
        '-keyout',
        key,
        '-out',
        join(dir, 'redis.csr'),
      ],
      q,
    );
    execFileSync(
      'bash',
      [
        '-c',
        `printf 'subjectAltName=IP:127.0.0.1' > ${dir}/ext && openssl x509 -req -in ${dir}/redis.csr -CA ${ca} -CAkey ${dir}/ca.key -CAcreateserial -days 1 -extfile ${dir}/ext -out ${cert}`,
      ],
      q,
    );
    const tlsPort = await freePort();
    const server = await startRedis([
      '--tls-port',
      String(tlsPort),
      '--tls-cert-file',
      cert,
      '--tls-key-file',
      key,
      '--tls-ca-cert-file',
      ca,
      '--tls-auth-clients',
      'no',
    ]);
    servers.push(server);
    const plain = new Redis(server.url);
    await fillKeys(plain, 't:', 40);
    const env = cleanEnv({ REDIS_URL: `rediss://127.0.0.1:${tlsPort}/0`, NODE_EXTRA_CA_CERTS: ca });
    const r = await runDbops(['--json', 'cache', 'flush', 't:user:*', '--yes'], { env });
    expect(r.stderr).not.toMatch(/Warning/);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      removed: 40,
      target: { endpoint: `rediss://127.0.0.1:${tlsPort}/0` },
    });
    // Without trusting the CA, the certificate is refused: unreachable, exit 5.
    const untrusted = await runDbops(['cache', 'stats'], {
      env: cleanEnv({ REDIS_URL: `rediss://127.0.0.1:${tlsPort}/0` }),
    });
    expect(untrusted.code).toBe(5);
    plain.disconnect();
  });

  it('unreachable Redis: exit 5 within --timeout (refused port, and a server that never answers)', async () => {
    const closed = await freePort();
    const refused = await runDbops(['--timeout', '1s', 'cache', 'flush', 'x:*', '--yes'], {
      env: cleanEnv({ REDIS_URL: `redis://:${SECRET}@127.0.0.1:${closed}/0` }),
      timeoutMs: 20_000,
    });
    expect(refused.code).toBe(5);
    expect(refused.stderr).toMatch(/unreachable/);
    const silent: Server = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const port = (silent.address() as { port: number }).port;
    const hung = await runDbops(['--timeout', '1s', 'cache', 'stats'], {
      env: cleanEnv({ REDIS_URL: `redis://:${SECRET}@127.0.0.1:${port}/0` }),
      timeoutMs: 20_000,
    });
    silent.close();
    expect(hung.code).toBe(5);
    expect(hung.signal).toBeNull(); // exited by itself, not killed by the test's 20 s guard
    expect(hung.stderr).toMatch(/did not answer within 1000 ms|unreachable/);
    expect(refused.stderr + hung.stderr).not.toContain(SECRET);
  });
});

describe('dbops cache on the 3-primary cluster', () => {
  it('flushes across all primaries and reports per node; stats per node', async () => {
    const port = services().cluster.ports[0] as number;
    const url = `redis://127.0.0.1:${port}/0`;
    const cluster = new Cluster([{ host: '127.0.0.1', port }]);
    const ns = redisNamespace();
    for (let i = 0; i < 1000; i++) await cluster.set(`${ns}user:${i}`, '1');
    const r = await runDbops(['--json', 'cache', 'flush', `${ns}user:*`, '--yes', '--count', '100'], {
      env: cleanEnv({ REDIS_URL: url }),
    });
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ removed: 1000, target: { mode: 'cluster', nodes: 3 } });
    expect(doc.nodes).toHaveLength(3);
    expect(r.stderr).toMatch(/cluster, db 0, 3 primaries/);
    const human = await runDbops(['cache', 'stats'], { env: cleanEnv({ REDIS_URL: url }) });
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/total/);
    cluster.disconnect();
  });
});
