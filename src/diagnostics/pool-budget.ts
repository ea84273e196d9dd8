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
  checks: BudgetCheck[];
  /** The arithmetic, one step per line. */
  lines: string[];
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

export function capacityBudget(input: BudgetInput): CapacityBudget {
  const { appInstances, appPoolSize, surge, postgres: pg } = input;
  const appConnections = Math.ceil(appInstances * appPoolSize * surge);
  const usable = pg.maxConnections - pg.superuserReserved - pg.reserved;
  const lines: string[] = [];
  const checks: BudgetCheck[] = [];
  lines.push(`application: ${appInstances} instances × pool ${appPoolSize} × surge ${surge} = ${appConnections} connections at most`);
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
    return { appConnections, postgresUsable: usable, postgresFree: free, pgbouncerClientLimit: null, pgbouncerServerMax: null, checks, lines };
  }
  const clientLimit = bouncer.maxClientConn * bouncer.instances;
  lines.push(
    `PgBouncer clients: max_client_conn ${bouncer.maxClientConn}${bouncer.instances > 1 ? ` × ${bouncer.instances} PgBouncer instances = ${clientLimit}` : ''}`,
  );
  const clientOk = appConnections <= clientLimit;
  checks.push({
    id: 'app-vs-max-client-conn',
    demand: appConnections,
    capacity: clientLimit,
    ok: clientOk,
    text: `application ${appConnections} ${clientOk ? '≤' : '>'} ${clientLimit} PgBouncer client slots${clientOk ? '' : `: ${appConnections - clientLimit} connections would be refused`}`,
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
    const cap = db && db.maxConnections > 0 ? db.maxConnections : bouncer.maxDbConnections > 0 ? bouncer.maxDbConnections : Number.POSITIVE_INFINITY;
    const raw = (size + reserve) * users.length;
    const total = Math.min(raw, cap);
    perInstance += total;
    parts.push(
      `${database}: (pool_size ${size} + reserve_pool ${reserve}) × ${users.length} user${users.length === 1 ? '' : 's'} = ${raw}${total < raw ? `, capped by max_db_connections ${cap} → ${total}` : ''}`,
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
  const queued = appConnections > serverMax;
  checks.push({
    id: 'app-vs-pgbouncer-pools',
    demand: appConnections,
    capacity: serverMax,
    ok: !queued,
    text: queued
      ? `application ${appConnections} client connections share ${plural(serverMax, 'server connection')}: beyond ${plural(serverMax, 'concurrent transaction')}, clients queue in PgBouncer`
      : `application ${appConnections} ≤ ${plural(serverMax, 'server connection')}: no queueing in PgBouncer even at full pool use`,
  });
  for (const c of checks) lines.push(c.text);
  return { appConnections, postgresUsable: usable, postgresFree: free, pgbouncerClientLimit: clientLimit, pgbouncerServerMax: serverMax, checks, lines };
}
