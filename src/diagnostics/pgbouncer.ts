/**
 * PgBouncer's admin console: pools, server connections, clients and limits. The console speaks
 * only the simple query protocol, so every query here is a constant string with no parameters
 * and no statement name (node-postgres then uses the simple protocol). A console error never
 * throws out of `readPgBouncer`: it becomes `error` in the result.
 */
import type { Client } from 'pg';
import { messageOf } from '../errors.js';
import type { Backend } from './activity.js';

export interface BouncerPool {
  database: string;
  user: string;
  clActive: number;
  clWaiting: number;
  svActive: number;
  svIdle: number;
  svUsed: number;
  svTested: number;
  svLogin: number;
  /** Longest time a waiting client has waited, ms. */
  maxWaitMs: number;
  poolMode: string;
}

export interface BouncerServer {
  database: string;
  user: string;
  state: string;
  /** The connection's handle in the console (`ptr`; `id` since PgBouncer 1.23): what a client's `link` names. */
  ptr: string;
  id: string;
  /** The PostgreSQL backend pid of this server connection. */
  remotePid: number;
  applicationName: string;
  /** Client connection this server is linked to ('' when none). */
  link: string;
}

export interface BouncerClient {
  database: string;
  user: string;
  state: string;
  /** How long this client has waited for a server connection (ms); null when the version has no wait column. */
  waitMs: number | null;
  addr: string;
  port: number;
  applicationName: string;
  ptr: string;
  id: string;
  /** The server connection this client holds ('' when none). */
  link: string;
}

export interface BouncerDatabase {
  name: string;
  poolSize: number;
  reservePool: number;
  /** max_db_connections for this database (0 = unlimited). */
  maxConnections: number;
  currentConnections: number;
  poolMode: string | null;
}

export interface BouncerUser {
  name: string;
  poolMode: string | null;
  /** Per-user settings, null where this version's SHOW USERS has no such column (or the user sets none). */
  poolSize: number | null;
  reservePool: number | null;
  maxUserConnections: number | null;
}

export interface BouncerConsole {
  version: string | null;
  pools: BouncerPool[];
  servers: BouncerServer[];
  clients: BouncerClient[];
  databases: BouncerDatabase[];
  users: BouncerUser[];
  config: Record<string, string>;
  /** Set when the console could not be read completely. */
  error: string | null;
}

const n = (v: unknown) => (v === null || v === undefined || v === '' ? 0 : Number(v));
const s = (v: unknown) => (v === null || v === undefined ? '' : String(v));
/** PgBouncer splits waits into whole seconds plus a microsecond part. */
const waitMs = (sec: unknown, us: unknown) => Math.round(n(sec) * 1000 + n(us) / 1000);
/** A client's wait, or null when this PgBouncer's SHOW CLIENTS has no wait column. */
const clientWaitMs = (r: Record<string, unknown>) => ('wait' in r || 'wait_us' in r ? waitMs(r.wait, r.wait_us) : null);

/** The console's own pseudo-database. */
const ADMIN_DB = 'pgbouncer';

async function show(
  client: Client,
  what: 'VERSION' | 'POOLS' | 'SERVERS' | 'CLIENTS' | 'DATABASES' | 'CONFIG' | 'USERS',
  timeoutMs: number,
) {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`SHOW ${what} did not answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    // A constant string and no values: the simple query protocol, the only one the console speaks.
    const r = await Promise.race([client.query(`SHOW ${what}`), timeout]);
    return r.rows as Array<Record<string, unknown>>;
  } finally {
    clearTimeout(timer);
  }
}

/** Read the console. Never throws: a failure leaves what was read and sets `error`. */
export async function readPgBouncer(client: Client, timeoutMs: number): Promise<BouncerConsole> {
  const out: BouncerConsole = {
    version: null,
    pools: [],
    servers: [],
    clients: [],
    databases: [],
    users: [],
    config: {},
    error: null,
  };
  try {
    const v = await show(client, 'VERSION', timeoutMs);
    out.version = s(Object.values(v[0] ?? {})[0]).replace(/^PgBouncer\s*/i, '') || null;
    out.pools = (await show(client, 'POOLS', timeoutMs))
      .filter((r) => r.database !== ADMIN_DB)
      .map((r) => ({
        database: s(r.database),
        user: s(r.user),
        clActive: n(r.cl_active),
        clWaiting: n(r.cl_waiting),
        svActive: n(r.sv_active),
        svIdle: n(r.sv_idle),
        svUsed: n(r.sv_used),
        svTested: n(r.sv_tested),
        svLogin: n(r.sv_login),
        maxWaitMs: waitMs(r.maxwait, r.maxwait_us),
        poolMode: s(r.pool_mode),
      }));
    out.servers = (await show(client, 'SERVERS', timeoutMs)).map((r) => ({
      database: s(r.database),
      user: s(r.user),
      state: s(r.state),
      remotePid: n(r.remote_pid),
      applicationName: s(r.application_name),
      link: s(r.link),
      ptr: s(r.ptr),
      id: s(r.id),
    }));
    out.clients = (await show(client, 'CLIENTS', timeoutMs))
      .filter((r) => r.database !== ADMIN_DB)
      .map((r) => ({
        database: s(r.database),
        user: s(r.user),
        state: s(r.state),
        waitMs: clientWaitMs(r),
        addr: s(r.addr),
        port: n(r.port),
        applicationName: s(r.application_name),
        ptr: s(r.ptr),
        id: s(r.id),
        link: s(r.link),
      }));
    out.databases = (await show(client, 'DATABASES', timeoutMs))
      .filter((r) => r.name !== ADMIN_DB)
      .map((r) => ({
        name: s(r.name),
        poolSize: n(r.pool_size),
        // PgBouncer 1.24 renamed SHOW DATABASES' reserve_pool to reserve_pool_size.
        reservePool: n(r.reserve_pool_size ?? r.reserve_pool),
        maxConnections: n(r.max_connections),
        currentConnections: n(r.current_connections),
        poolMode: r.pool_mode === null || r.pool_mode === undefined ? null : s(r.pool_mode),
      }));
    for (const r of await show(client, 'CONFIG', timeoutMs)) out.config[s(r.key)] = s(r.value);
    // Per-user pool_size / reserve_pool_size / max_user_connections columns exist on newer versions only.
    const opt = (r: Record<string, unknown>, key: string) =>
      r[key] === undefined || r[key] === null || r[key] === '' ? null : Number(r[key]);
    out.users = (await show(client, 'USERS', timeoutMs)).map((r) => ({
      name: s(r.name),
      poolMode: r.pool_mode === null || r.pool_mode === undefined || r.pool_mode === '' ? null : s(r.pool_mode),
      poolSize: opt(r, 'pool_size'),
      reservePool: opt(r, 'reserve_pool_size') ?? opt(r, 'reserve_pool'),
      maxUserConnections: opt(r, 'max_user_connections'),
    }));
  } catch (error) {
    out.error = messageOf(error);
  }
  return out;
}

/** A pool's server connections, each joined to the PostgreSQL backend it is. */
export interface PoolView extends BouncerPool {
  /** Server connections joined to pg_stat_activity by remote_pid. */
  backends: Array<
    Pick<
      Backend,
      'pid' | 'state' | 'application' | 'xactAgeMs' | 'stateAgeMs' | 'waitEventType' | 'waitEvent' | 'query'
    > & { serverState: string }
  >;
  /** Server connections whose remote_pid is not on the PostgreSQL server dbops reads. */
  unmatchedServers: number;
  /** Its clients that wait or hold a server connection (SHOW CLIENTS), each holder linked to that connection and its backend. */
  clients: PoolClient[];
  /** Its clients grouped by state, application, user and address: who waits, who holds. */
  clientGroups: ClientGroup[];
  /** One sentence: why clients wait, from what the server connections are doing. */
  explanation: string | null;
}

export interface PoolClient {
  state: string;
  applicationName: string;
  user: string;
  addr: string;
  port: number;
  waitMs: number | null;
  /** The server connection it holds, and that connection's PostgreSQL backend when found. */
  server: { state: string; pid: number; backend: Pick<Backend, 'pid' | 'state' | 'xactAgeMs' | 'query'> | null } | null;
}

export interface ClientGroup {
  /** `waiting` (queued for a server connection) or `active` (SHOW CLIENTS' own states otherwise). */
  state: string;
  applicationName: string;
  user: string;
  addr: string;
  count: number;
  /** Longest wait in the group (ms); null when the version does not say. */
  longestWaitMs: number | null;
  /** Clients of the group holding a server connection, and those connections' backend pids. */
  linked: number;
  pids: number[];
}

export interface PgBouncerView {
  version: string | null;
  error: string | null;
  pools: PoolView[];
  clientsWaiting: number;
  clientsActive: number;
  /** Longest client wait over all pools, ms. */
  maxWaitMs: number;
  /** Server connections whose backend was found on PostgreSQL. */
  serverConnections: number;
  config: {
    maxClientConn: number | null;
    defaultPoolSize: number | null;
    reservePoolSize: number | null;
    maxDbConnections: number | null;
    maxUserConnections: number | null;
    poolMode: string | null;
    idleTransactionTimeout: number | null;
    queryWaitTimeout: number | null;
  };
  databases: BouncerDatabase[];
  users: BouncerUser[];
  /** Clients per (database, user) pool now (SHOW CLIENTS). */
  clientsByPool: Array<{ database: string; user: string; count: number }>;
}

const cfgNum = (cfg: Record<string, string>, key: string) =>
  cfg[key] === undefined || cfg[key] === '' ? null : Number(cfg[key]);

const fmtSec = (ms: number | null) => (ms === null ? '?' : `${(ms / 1000).toFixed(1)} s`);

/** Describe what a pool's server connections are doing, in one phrase per (state, application). */
function explain(pool: PoolView): string | null {
  if (pool.clWaiting === 0) return null;
  const parts = new Map<string, { count: number; oldestXact: number | null; pids: number[] }>();
  for (const b of pool.backends) {
    const what =
      b.state === 'active' && b.waitEventType === 'Lock'
        ? 'active but waiting on a lock'
        : b.state === 'active'
          ? 'running a query'
          : (b.state ?? b.serverState);
    const key = `${what} from app=${b.application || '(none)'}`;
    const p = parts.get(key) ?? { count: 0, oldestXact: null, pids: [] };
    p.count++;
    p.pids.push(b.pid);
    if (b.xactAgeMs !== null) p.oldestXact = Math.max(p.oldestXact ?? 0, b.xactAgeMs);
    parts.set(key, p);
  }
  const busy = pool.svActive + pool.svUsed + pool.svIdle + pool.svTested + pool.svLogin;
  const phrases = [...parts.entries()]
    .sort((a, b) => b[1].count - a[1].count)
    .map(
      ([key, p]) =>
        `${p.count} ${p.count === 1 ? 'backend' : 'backends'} ${key} (pid ${p.pids.slice(0, 5).join(', ')}${p.pids.length > 5 ? ', …' : ''}${p.oldestXact !== null ? `; oldest transaction ${fmtSec(p.oldestXact)}` : ''})`,
    );
  const who = pool.clientGroups
    .filter((g) => g.state.startsWith('waiting'))
    .map(
      (g) =>
        `${g.count} of app=${g.applicationName || '(none)'} user ${g.user} from ${g.addr || '?'}${g.longestWaitMs !== null ? ` up to ${fmtSec(g.longestWaitMs)}` : ''}`,
    );
  const head = `${pool.clWaiting} ${pool.clWaiting === 1 ? 'client' : 'clients'} waiting on pool ${pool.database}/${pool.user} (longest ${fmtSec(pool.maxWaitMs)}${who.length > 0 ? `; ${who.join(', ')}` : ''})`;
  if (phrases.length === 0)
    return `${head}; its ${busy} server connections are not visible on the PostgreSQL server dbops reads`;
  return `${head} because ${phrases.join(', ')}${pool.unmatchedServers ? `, and ${pool.unmatchedServers} server connections not found on this PostgreSQL` : ''}`;
}

/** A pool's clients, each linked to the server connection it holds (client.link = server ptr/id) and its backend. */
function poolClients(raw: BouncerConsole, p: BouncerPool, byPid: Map<number, Backend>): PoolClient[] {
  const servers = raw.servers.filter((x) => x.database === p.database && x.user === p.user);
  const serverOf = (c: BouncerClient) =>
    servers.find(
      (x) =>
        (c.link !== '' && (x.ptr === c.link || x.id === c.link)) ||
        (x.link !== '' && (x.link === c.ptr || x.link === c.id)),
    );
  return raw.clients
    .filter((c) => c.database === p.database && c.user === p.user)
    .map((c) => {
      const srv = serverOf(c);
      const b = srv ? byPid.get(srv.remotePid) : undefined;
      return {
        state: c.state,
        applicationName: c.applicationName,
        user: c.user,
        addr: c.addr,
        port: c.port,
        waitMs: c.waitMs,
        server: srv
          ? {
              state: srv.state,
              pid: srv.remotePid,
              backend: b ? { pid: b.pid, state: b.state, xactAgeMs: b.xactAgeMs, query: b.query } : null,
            }
          : null,
      };
    });
}

function groupClients(clients: PoolClient[]): ClientGroup[] {
  const groups = new Map<string, ClientGroup>();
  for (const c of clients) {
    const state = c.state.startsWith('waiting') ? 'waiting' : c.state;
    const key = JSON.stringify([state, c.applicationName, c.user, c.addr]);
    const g = groups.get(key) ?? {
      state,
      applicationName: c.applicationName,
      user: c.user,
      addr: c.addr,
      count: 0,
      longestWaitMs: null,
      linked: 0,
      pids: [],
    };
    g.count++;
    if (c.waitMs !== null && state === 'waiting') g.longestWaitMs = Math.max(g.longestWaitMs ?? 0, c.waitMs);
    if (c.server) {
      g.linked++;
      g.pids.push(c.server.pid);
    }
    groups.set(key, g);
  }
  // Waiting first, then by size.
  return [...groups.values()].sort(
    (a, b) => Number(b.state === 'waiting') - Number(a.state === 'waiting') || b.count - a.count,
  );
}

/** Join the console to pg_stat_activity (SHOW SERVERS remote_pid = pid) and summarise. */
export function pgbouncerView(raw: BouncerConsole, backends: Backend[]): PgBouncerView {
  const byPid = new Map(backends.map((b) => [b.pid, b]));
  let serverConnections = 0;
  const pools: PoolView[] = raw.pools.map((p) => {
    const view: PoolView = {
      ...p,
      backends: [],
      unmatchedServers: 0,
      clients: [],
      clientGroups: [],
      explanation: null,
    };
    const clients = poolClients(raw, p, byPid);
    view.clientGroups = groupClients(clients);
    // Listed one by one: those waiting and those holding a server connection (idle ones only counted).
    view.clients = clients.filter((c) => c.state.startsWith('waiting') || c.server !== null);
    for (const srv of raw.servers) {
      if (srv.database !== p.database || srv.user !== p.user) continue;
      const b = byPid.get(srv.remotePid);
      if (!b) {
        view.unmatchedServers++;
        continue;
      }
      serverConnections++;
      view.backends.push({
        pid: b.pid,
        state: b.state,
        application: b.application,
        xactAgeMs: b.xactAgeMs,
        stateAgeMs: b.stateAgeMs,
        waitEventType: b.waitEventType,
        waitEvent: b.waitEvent,
        query: b.query,
        serverState: srv.state,
      });
    }
    view.explanation = explain(view);
    return view;
  });
  const cfg = raw.config;
  return {
    version: raw.version,
    error: raw.error,
    pools,
    clientsWaiting: pools.reduce((a, p) => a + p.clWaiting, 0),
    clientsActive: pools.reduce((a, p) => a + p.clActive, 0),
    maxWaitMs: pools.reduce((a, p) => Math.max(a, p.maxWaitMs), 0),
    serverConnections,
    config: {
      maxClientConn: cfgNum(cfg, 'max_client_conn'),
      defaultPoolSize: cfgNum(cfg, 'default_pool_size'),
      reservePoolSize: cfgNum(cfg, 'reserve_pool_size'),
      maxDbConnections: cfgNum(cfg, 'max_db_connections'),
      maxUserConnections: cfgNum(cfg, 'max_user_connections'),
      poolMode: cfg.pool_mode ?? null,
      idleTransactionTimeout: cfgNum(cfg, 'idle_transaction_timeout'),
      queryWaitTimeout: cfgNum(cfg, 'query_wait_timeout'),
    },
    databases: raw.databases,
    users: raw.users,
    clientsByPool: [
      ...raw.clients.reduce(
        (m, c) => m.set(`${c.database}\u0000${c.user}`, (m.get(`${c.database}\u0000${c.user}`) ?? 0) + 1),
        new Map<string, number>(),
      ),
    ].map(([k, count]) => {
      const [database = '', user = ''] = k.split('\u0000');
      return { database, user, count };
    }),
  };
}
