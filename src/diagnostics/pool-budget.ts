/**
 * The capacity budget: how many connections the application may open (instances × pool size ×
 * deploy surge), set against PgBouncer's client limit and pool sizes, and those against what
 * PostgreSQL has free. Pure arithmetic; every step is also returned as a line of text.
 */

export interface BudgetInput {
  appInstances: number;
  appPoolSize: number;
  /** Deploy surge factor: old and new instances overlap during a rolling deploy (default 2). */
  surge: number;
  /** application_name of the app, when given: its current connections are not counted as others'. */
  appName?: string | undefined;
  postgres: {
    maxConnections: number;
    superuserReserved: number;
    reserved: number;
    /** Client backends now (dbops included). */
    inUse: number;
    /** Of those, the application's own (matched by appName). */
    appInUse: number;
  };
  pgbouncer?:
    | {
        instances: number;
        maxClientConn: number;
        defaultPoolSize: number;
        reservePoolSize: number;
        /** Global max_db_connections (0 = unlimited). */
        maxDbConnections: number;
        /** (database, user) pairs of the pools that exist now. */
        pools: Array<{ database: string; user: string }>;
        /** Per-database pool_size, reserve_pool and max_connections (max_db_connections) from SHOW DATABASES. */
        databases: Array<{ name: string; poolSize: number; reservePool: number; maxConnections: number }>;
        /** PostgreSQL backends that are this PgBouncer's server connections now. */
        serverConnectionsInUse: number;
        /** The application's own pool (its user and database) and where that was learned. */
        appPool?: { database: string; user: string; source: string } | undefined;
        /** Global max_user_connections (0 = unlimited). */
        maxUserConnections?: number | undefined;
        /** Global pool_mode. */
        poolMode?: string | null | undefined;
        /** SHOW USERS (per-user settings; columns other than pool_mode only on versions that have them). */
        users?:
          | Array<{
              name: string;
              poolMode: string | null;
              poolSize: number | null;
              reservePool: number | null;
              maxUserConnections: number | null;
            }>
          | undefined;
        /** Per-database pool_mode (SHOW DATABASES). */
        databaseModes?: Array<{ name: string; poolMode: string | null }> | undefined;
        /** Clients connected now to pools that are not the application's: they take max_client_conn slots too. */
        otherClients?: number | undefined;
      }
    | undefined;
}

export interface BudgetCheck {
  id: 'app-vs-postgres' | 'app-vs-max-client-conn' | 'pgbouncer-vs-postgres' | 'app-vs-pgbouncer-pools';
  demand: number;
  capacity: number;
  ok: boolean;
  text: string;
}

export interface CapacityBudget {
  appConnections: number;
  postgresUsable: number;
  /** Slots PostgreSQL has for the app (direct) or for PgBouncer's server connections. */
  postgresFree: number;
  pgbouncerClientLimit: number | null;
  pgbouncerServerMax: number | null;
  /** The application's own pool: what it may use of PgBouncer's server connections, and under which rules. */
  appPool: AppPoolBudget | null;
  /** Pools of other users or databases: they do not serve the application. */
  otherPools: Array<{ database: string; user: string; max: number }>;
  checks: BudgetCheck[];
  /** The arithmetic, one step per line. */
  lines: string[];
}

export interface AppPoolBudget {
  database: string;
  user: string;
  source: string;
  poolMode: string;
  poolSize: number;
  reservePool: number;
  /** max_db_connections of its database (0 = unlimited). */
  maxDbConnections: number;
  /** max_user_connections of its user (0 = unlimited). */
  maxUserConnections: number;
  /** min(pool_size + reserve_pool, max_db_connections, max_user_connections). */
  maxServerConnections: number;
  /** The rule that sets maxServerConnections. */
  limitedBy: 'pool_size + reserve_pool' | 'max_db_connections' | 'max_user_connections';
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

type Bouncer = NonNullable<BudgetInput['pgbouncer']>;

/** The server connections one (database, user) pool may hold, under PgBouncer's per-pool, per-database and per-user caps. */
function poolLimit(b: Bouncer, database: string, user: string): Omit<AppPoolBudget, 'source'> {
  const db = b.databases.find((d) => d.name === database);
  const u = b.users?.find((x) => x.name === user);
  const poolSize = u?.poolSize ?? db?.poolSize ?? b.defaultPoolSize;
  const reservePool = u?.reservePool ?? db?.reservePool ?? b.reservePoolSize;
  const maxDbConnections = db && db.maxConnections > 0 ? db.maxConnections : b.maxDbConnections;
  const maxUserConnections = u?.maxUserConnections ?? b.maxUserConnections ?? 0;
  const poolMode =
    u?.poolMode || b.databaseModes?.find((d) => d.name === database)?.poolMode || b.poolMode || 'session';
  let max = poolSize + reservePool;
  let limitedBy: AppPoolBudget['limitedBy'] = 'pool_size + reserve_pool';
  if (maxDbConnections > 0 && maxDbConnections < max) {
    max = maxDbConnections;
    limitedBy = 'max_db_connections';
  }
  if (maxUserConnections > 0 && maxUserConnections < max) {
    max = maxUserConnections;
    limitedBy = 'max_user_connections';
  }
  return {
    database,
    user,
    poolMode,
    poolSize,
    reservePool,
    maxDbConnections,
    maxUserConnections,
    maxServerConnections: max,
    limitedBy,
  };
}

export function capacityBudget(input: BudgetInput): CapacityBudget {
  const { appInstances, appPoolSize, surge, postgres: pg } = input;
  const appConnections = Math.ceil(appInstances * appPoolSize * surge);
  const usable = pg.maxConnections - pg.superuserReserved - pg.reserved;
  const lines: string[] = [];
  const checks: BudgetCheck[] = [];
  lines.push(
    `application: ${appInstances} instances × pool ${appPoolSize} × surge ${surge} = ${appConnections} connections at most`,
  );
  lines.push(
    `PostgreSQL: max_connections ${pg.maxConnections} − superuser_reserved ${pg.superuserReserved} − reserved ${pg.reserved} = ${usable} usable by ordinary roles`,
  );
  const bouncer = input.pgbouncer;
  if (!bouncer) {
    const others = pg.inUse - pg.appInUse;
    const free = usable - others;
    lines.push(
      input.appName
        ? `PostgreSQL: ${usable} usable − ${others} in use by others (${pg.inUse} in use, ${pg.appInUse} of them app=${input.appName}) = ${free} for the application`
        : `PostgreSQL: ${usable} usable − ${pg.inUse} in use now = ${free} for the application (give --app-name to leave its current connections out)`,
    );
    const ok = appConnections <= free;
    checks.push({
      id: 'app-vs-postgres',
      demand: appConnections,
      capacity: free,
      ok,
      text: `application ${appConnections} ${ok ? '≤' : '>'} ${free} free on PostgreSQL${ok ? '' : `: short by ${appConnections - free}`}`,
    });
    lines.push(checks[0]?.text ?? '');
    return {
      appConnections,
      postgresUsable: usable,
      postgresFree: free,
      pgbouncerClientLimit: null,
      pgbouncerServerMax: null,
      appPool: null,
      otherPools: [],
      checks,
      lines,
    };
  }
  const clientLimit = bouncer.maxClientConn * bouncer.instances;
  const otherClients = bouncer.otherClients ?? 0;
  const clientRoom = clientLimit - otherClients;
  lines.push(
    `PgBouncer clients: max_client_conn ${bouncer.maxClientConn}${bouncer.instances > 1 ? ` × ${bouncer.instances} PgBouncer instances = ${clientLimit}` : ''}${
      otherClients > 0 ? ` − ${otherClients} clients of other pools now = ${clientRoom}` : ''
    }`,
  );
  const clientOk = appConnections <= clientRoom;
  checks.push({
    id: 'app-vs-max-client-conn',
    demand: appConnections,
    capacity: clientRoom,
    ok: clientOk,
    text: `application ${appConnections} ${clientOk ? '≤' : '>'} ${clientRoom} PgBouncer client slots${clientOk ? '' : `: ${appConnections - clientRoom} connections would be refused`}`,
  });
  // Server side: every (database, user) pool may open pool_size + reserve_pool, capped per database.
  const pools = bouncer.pools.length > 0 ? bouncer.pools : [{ database: '(any)', user: '(any)' }];
  const byDb = new Map<string, string[]>();
  for (const p of pools) byDb.set(p.database, [...(byDb.get(p.database) ?? []), p.user]);
  let perInstance = 0;
  const parts: string[] = [];
  for (const [database, users] of byDb) {
    const db = bouncer.databases.find((d) => d.name === database);
    const size = db?.poolSize ?? bouncer.defaultPoolSize;
    const reserve = db?.reservePool ?? bouncer.reservePoolSize;
    const cap =
      db && db.maxConnections > 0
        ? db.maxConnections
        : bouncer.maxDbConnections > 0
          ? bouncer.maxDbConnections
          : Number.POSITIVE_INFINITY;
    // max_user_connections caps each user's pools too (global here; per-user values where SHOW USERS has them).
    const userCap = bouncer.maxUserConnections ?? 0;
    const perPool = userCap > 0 ? Math.min(size + reserve, userCap) : size + reserve;
    const raw = perPool * users.length;
    const total = Math.min(raw, cap);
    perInstance += total;
    parts.push(
      `${database}: (pool_size ${size} + reserve_pool ${reserve}${perPool < size + reserve ? `, max_user_connections ${userCap}` : ''}) × ${users.length} user${users.length === 1 ? '' : 's'} = ${raw}${total < raw ? `, capped by max_db_connections ${cap} → ${total}` : ''}`,
    );
  }
  const serverMax = perInstance * bouncer.instances;
  lines.push(
    `PgBouncer servers: ${parts.join('; ')}${bouncer.pools.length === 0 ? ' (no pools yet: one database/user pair assumed)' : ''}${
      parts.length > 1 || bouncer.instances > 1
        ? `; ${[parts.length > 1 ? 'sum' : '', bouncer.instances > 1 ? `× ${bouncer.instances} instances` : ''].filter(Boolean).join(' ')} = ${serverMax}`
        : ''
    }`,
  );
  const others = pg.inUse - bouncer.serverConnectionsInUse;
  const free = usable - others;
  lines.push(
    `PostgreSQL: ${usable} usable − ${others} in use by others (${pg.inUse} in use, ${bouncer.serverConnectionsInUse} of them PgBouncer's) = ${free} for PgBouncer`,
  );
  const serverOk = serverMax <= free;
  checks.push({
    id: 'pgbouncer-vs-postgres',
    demand: serverMax,
    capacity: free,
    ok: serverOk,
    text: `PgBouncer ${plural(serverMax, 'server connection')} ${serverOk ? '≤' : '>'} ${free} free on PostgreSQL${serverOk ? '' : `: short by ${serverMax - free}`}`,
  });
  // What the application can use: only its own pool.
  const app = bouncer.appPool;
  const appPool = app ? { ...poolLimit(bouncer, app.database, app.user), source: app.source } : null;
  const otherPools = bouncer.pools
    .filter((p) => !app || p.database !== app.database || p.user !== app.user)
    .map((p) => ({
      database: p.database,
      user: p.user,
      max: poolLimit(bouncer, p.database, p.user).maxServerConnections,
    }));
  if (appPool) {
    const caps = [
      `pool_size ${appPool.poolSize} + reserve_pool ${appPool.reservePool} = ${appPool.poolSize + appPool.reservePool}`,
      appPool.maxDbConnections > 0 ? `max_db_connections ${appPool.maxDbConnections}` : '',
      appPool.maxUserConnections > 0 ? `max_user_connections ${appPool.maxUserConnections}` : '',
    ].filter(Boolean);
    lines.push(
      `the application's pool ${appPool.database}/${appPool.user} (${appPool.source}, pool_mode ${appPool.poolMode}): ${caps.join(', ')} → ${plural(appPool.maxServerConnections, 'server connection')} at most (${appPool.limitedBy})`,
    );
  }
  if (otherPools.length > 0) {
    lines.push(
      `other pools, not the application's: ${otherPools.map((p) => `${p.database}/${p.user} (up to ${p.max})`).join(', ')}${app ? '' : " (name the application's pool with --pool-user/--pool-db)"}`,
    );
  }
  const appMax = appPool ? appPool.maxServerConnections * bouncer.instances : serverMax;
  const queued = appConnections > appMax;
  const session = appPool?.poolMode === 'session';
  checks.push({
    id: 'app-vs-pgbouncer-pools',
    demand: appConnections,
    capacity: appMax,
    ok: !queued,
    text: queued
      ? session
        ? `application ${appConnections} client connections share ${plural(appMax, 'server connection')} in session mode: beyond ${plural(appMax, 'connected client')}, the rest wait until a client disconnects`
        : `application ${appConnections} client connections share ${plural(appMax, 'server connection')}: beyond ${plural(appMax, 'concurrent transaction')}, clients queue in PgBouncer`
      : `application ${appConnections} ≤ ${plural(appMax, 'server connection')}: no queueing in PgBouncer even at full pool use`,
  });
  for (const c of checks) lines.push(c.text);
  return {
    appConnections,
    postgresUsable: usable,
    postgresFree: free,
    pgbouncerClientLimit: clientLimit,
    pgbouncerServerMax: serverMax,
    appPool,
    otherPools,
    checks,
    lines,
  };
}
