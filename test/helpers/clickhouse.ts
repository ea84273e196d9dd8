/**
 * A real ClickHouse server (Debian's clickhouse-server) for one test file or benchmark: its own
 * folder, free loopback ports (HTTP, native TCP, optionally HTTPS with a throw-away certificate),
 * started in about 0.2 s and stopped at the end. Users: `default` (no password), `monitor`
 * (a password, what dbops connects as), `ro` (readonly=1) and `nolog` (log_queries=0).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/db/local-server.js';

export const CLICKHOUSE_SERVER = '/usr/sbin/clickhouse-server';
export const MONITOR_PASSWORD = 'Mon-Pw-7q3Zk9';

export interface ClickHouseServer {
  httpPort: number;
  tcpPort: number;
  httpsPort: number | null;
  /** PEM of the self-signed certificate (with tls). */
  caCert: string | null;
  /** http://user:password@127.0.0.1:port (https with tls: true). */
  url(user?: 'default' | 'monitor' | 'ro' | 'nolog', opts?: { https?: boolean; password?: string }): string;
  /** Run SQL as `default` over HTTP; JSONEachRow rows for a SELECT. */
  query<T = Record<string, unknown>>(sql: string, user?: string): Promise<T[]>;
  exec(sql: string, user?: string): Promise<string>;
  flushLogs(): Promise<void>;
  /** Folder with the server's config and data. */
  dir: string;
  stop(): Promise<void>;
}

export interface ClickHouseServerOptions {
  /** A <query_log> section and log_queries=1 in the default profile (default true). */
  queryLog?: boolean;
  tls?: boolean;
}

function usersXml(queryLog: boolean): string {
  const net = '<networks><ip>127.0.0.1</ip><ip>::1</ip></networks>';
  return `<?xml version="1.0"?>
<yandex>
  <profiles>
    <default><log_queries>${queryLog ? 1 : 0}</log_queries></default>
    <readonly><log_queries>${queryLog ? 1 : 0}</log_queries><readonly>1</readonly></readonly>
    <nolog><log_queries>0</log_queries></nolog>
  </profiles>
  <users>
    <default><password></password>${net}<profile>default</profile><quota>default</quota></default>
    <monitor><password>${MONITOR_PASSWORD}</password>${net}<profile>default</profile><quota>default</quota></monitor>
    <ro><password></password>${net}<profile>readonly</profile><quota>default</quota></ro>
    <nolog><password></password>${net}<profile>nolog</profile><quota>default</quota></nolog>
  </users>
  <quotas><default></default></quotas>
</yandex>
`;
}

export async function startClickHouse(opts: ClickHouseServerOptions = {}): Promise<ClickHouseServer> {
  if (!existsSync(CLICKHOUSE_SERVER)) {
    throw new Error(
      'clickhouse-server is not installed: run `npm test` (it installs it as root) or apt-get install clickhouse-server clickhouse-client',
    );
  }
  const queryLog = opts.queryLog ?? true;
  const dir = mkdtempSync(join(tmpdir(), 'dbops-clickhouse-'));
  for (const d of ['data', 'tmp', 'user_files']) mkdirSync(join(dir, d));
  const [httpPort, tcpPort] = [await freePort(), await freePort()];
  const httpsPort = opts.tls ? await freePort() : null;
  let caCert: string | null = null;
  let tlsXml = '';
  if (httpsPort) {
    caCert = join(dir, 'server.crt');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        join(dir, 'server.key'),
        '-out',
        caCert,
        '-days',
        '2',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
      ],
      { stdio: 'ignore' },
    );
    tlsXml = `<https_port>${httpsPort}</https_port>
  <openSSL><server><certificateFile>${caCert}</certificateFile><privateKeyFile>${join(dir, 'server.key')}</privateKeyFile><verificationMode>none</verificationMode><disableProtocols>sslv2,sslv3</disableProtocols></server></openSSL>`;
  }
  writeFileSync(
    join(dir, 'config.xml'),
    `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>${dir}/server.log</log><errorlog>${dir}/server.err.log</errorlog></logger>
  <http_port>${httpPort}</http_port>
  <tcp_port>${tcpPort}</tcp_port>
  ${tlsXml}
  <listen_host>127.0.0.1</listen_host>
  <max_connections>200</max_connections>
  <max_concurrent_queries>50</max_concurrent_queries>
  <path>${dir}/data/</path>
  <tmp_path>${dir}/tmp/</tmp_path>
  <user_files_path>${dir}/user_files/</user_files_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  ${queryLog ? '<query_log><database>system</database><table>query_log</table><flush_interval_milliseconds>7500</flush_interval_milliseconds></query_log>' : ''}
</yandex>
`,
  );
  writeFileSync(join(dir, 'users.xml'), usersXml(queryLog));
  const child: ChildProcess = spawn(CLICKHOUSE_SERVER, [`--config-file=${join(dir, 'config.xml')}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
    cwd: dir,
  });
  // Never outlive the test process, even when it dies without calling stop().
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const base = `http://127.0.0.1:${httpPort}/`;
  // A new connection per request: the server closes idle keep-alive sockets after 3 s, and a
  // pooled one reused after that fails with "other side closed".
  const exec = (sql: string, user = 'default'): Promise<string> =>
    new Promise((resolve, reject) => {
      const auth = user === 'monitor' ? `&password=${encodeURIComponent(MONITOR_PASSWORD)}` : '';
      const req = request(`${base}?user=${user}${auth}`, { method: 'POST', agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          text += d;
        });
        res.on('end', () =>
          res.statusCode === 200
            ? resolve(text)
            : reject(new Error(`ClickHouse: ${text.trim()} (in: ${sql.slice(0, 200)})`)),
        );
      });
      req.on('error', reject);
      req.end(sql);
    });
  const deadline = Date.now() + 30_000;
  for (;;) {
    const up = await exec('SELECT 1').then(
      () => true,
      () => false,
    );
    if (up) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      const log = existsSync(join(dir, 'server.err.log'))
        ? readFileSync(join(dir, 'server.err.log'), 'utf8').slice(-1500)
        : '';
      child.kill('SIGKILL');
      throw new Error(`clickhouse-server did not start on ${httpPort}: ${stderr.slice(-500)} ${log}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    httpPort,
    tcpPort,
    httpsPort,
    caCert,
    dir,
    url: (user = 'monitor', o = {}) => {
      const password = o.password ?? (user === 'monitor' ? MONITOR_PASSWORD : '');
      const scheme = o.https ? 'https' : 'http';
      const port = o.https ? httpsPort : httpPort;
      return `${scheme}://${user}${password ? `:${encodeURIComponent(password)}` : ''}@127.0.0.1:${port}`;
    },
    exec,
    query: async <T>(sql: string, user?: string) => {
      const text = await exec(`${sql} FORMAT JSONEachRow`, user);
      return text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as T);
    },
    flushLogs: async () => {
      await exec('SYSTEM FLUSH LOGS');
    },
    stop: async () => {
      process.removeListener('exit', killOnExit);
      // A throw-away server: SIGTERM waits about 8 s for idle keep-alive connections, SIGKILL does not.
      await new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
