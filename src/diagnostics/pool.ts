/**
 * `dbops pool` and `dbops locks` as data: one snapshot of PostgreSQL's connections (in one
 * read-only transaction with a statement timeout), PgBouncer's console when configured, the
 * blocking tree, the capacity budget and the findings. Never prints, never kills anything.
 */
import type { Client, ClientBase } from 'pg';
import { queryError, SERVER_FULL_HINT } from '../db/pg.js';
import { withReadOnly } from '../db/readonly.js';
import { isDbopsError } from '../errors.js';
import {
  type ConnectionGroup,
  groupConnections,
  type Headroom,
  headroom,
  idleInTransaction,
  isIdleInTransaction,
  longRunning,
  readActivity,
  type ServerInfo,
  type SessionRow,
  type StatementStats,
} from './activity.js';
import { DEFAULT_THRESHOLDS, evaluateFindings, type Finding, type Thresholds, worstSeverity } from './findings.js';
import { type BlockingTree, buildBlockingTree, readLockEdges } from './locks.js';
import { type PgBouncerView, pgbouncerView, readPgBouncer } from './pgbouncer.js';
import { type CapacityBudget, capacityBudget } from './pool-budget.js';

export interface BudgetOptions {
  appInstances: number;
  appPoolSize: number;
  surge: number;
  pgbouncerInstances: number;
}

export interface PoolOptions {
  /** Statement timeout of the diagnostic queries (ms). */
  queryTimeoutMs: number;
  thresholds?: Partial<Thresholds>;
  /** application_name of the application, for the budget. */
  appName?: string | undefined;
  /** Compute the capacity budget (needs the number of application instances). */
  budget?: BudgetOptions | undefined;
  /** The application's own PgBouncer pool (its user and database), and where that came from. */
  appPool?: { database: string; user: string; source: string } | undefined;
}

/** The PgBouncer console: a connected client, or why it could not be connected; undefined when not configured. */
export type BouncerSource = { client: Client } | { error: string } | undefined;

/** The figures of the original design, each defined in docs/pool.md. */
export interface PoolFigures {
  /** Client backends that are busy: running a query or inside a transaction (dbops excluded). */
  active: number;
  idle: number;
  idleInTransaction: number;
  /** Clients waiting for a server connection in PgBouncer (Σ cl_waiting); null without the console. */
  waiting: number | null;
  /** Backends waiting for a heavyweight lock. */
  lockWaiting: number;
  /** max_connections. */
  max: number;
  /** max_connections − reserved slots. */
  usable: number;
}

export interface PoolMetrics {
  /** Client backends on the server, all databases, dbops included. */
  totalConnections: number;
  /** Backends in state active, dbops excluded. */
  activeQueries: number;
  /** pg_stat_statements, this database: Σ time / Σ calls (ms); null without it. */
  avgQueryTimeMs: number | null;
  /** pg_stat_statements, this database: statements whose mean exceeds slowMs; null without it. */
  slowQueries: number | null;
  slowQueryMs: number;
  /** pg_stat_database, this database: xact_rollback / (xact_commit + xact_rollback); null before any. */
  errorRate: number | null;
  xactCommit: number;
  xactRollback: number;
  /** When this database's statistics were last reset (the counters run since then). */
  statsReset: string | null;
}

export interface PoolReport {
  ok: boolean;
  worst: Finding['severity'] | null;
  takenAt: string;
  server: Omit<ServerInfo, 'takenAt'>;
  pool: PoolFigures;
  metrics: PoolMetrics;
  headroom: Headroom;
  groups: ConnectionGroup[];
  idleInTransaction: SessionRow[];
  longRunning: SessionRow[];
  locks: BlockingTree;
  pgbouncer: (PgBouncerView & { configured: true }) | { configured: boolean; error: string | null } | null;
  budget: CapacityBudget | null;
  findings: Finding[];
  thresholds: Thresholds;
}

type BouncerRead = { error: string } | { raw: Awaited<ReturnType<typeof readPgBouncer>> } | undefined;

async function readBouncer(source: BouncerSource, timeoutMs: number): Promise<BouncerRead> {
  if (!source) return undefined;
  if ('error' in source) return { error: source.error };
  return { raw: await readPgBouncer(source.client, timeoutMs) };
}

export async function collectPoolReport(pg: Client, bouncer: BouncerSource, opts: PoolOptions): Promise<PoolReport> {
  const t: Thresholds = { ...DEFAULT_THRESHOLDS, ...opts.thresholds };
  // The console and PostgreSQL are read at the same time, over their own connections.
  const bouncerPromise = readBouncer(bouncer, opts.queryTimeoutMs);
  let snapshot: Awaited<ReturnType<typeof readActivity>>;
  let lockEdges: Awaited<ReturnType<typeof readLockEdges>>;
  try {
    [snapshot, lockEdges] = await withReadOnly(pg, opts.queryTimeoutMs, async (c) => {
      const s = await readActivity(c, { slowMs: t.slowMs });
      // pg_blocking_pids only matters when someone waits on a lock in this snapshot.
      const waiting = s.backends.some((x) => x.waitEventType === 'Lock');
      return [s, waiting ? await readLockEdges(c) : { edges: [], waitingFor: {} }] as const;
    });
  } catch (error) {
    await bouncerPromise.catch(() => {});
    throw isDbopsError(error) ? error : queryError(error, 'reading pg_stat_activity');
  }
  const { server, backends, database, statements } = snapshot;
  const byPid = new Map(backends.map((b) => [b.pid, b]));
  const locks = buildBlockingTree(lockEdges.edges, byPid, lockEdges.waitingFor);
  const head = headroom(server, backends);
  const others = backends.filter((b) => !b.self);
  const b = await bouncerPromise;
  const view = b && 'raw' in b ? pgbouncerView(b.raw, backends) : undefined;
  const bouncerError: string | null = b === undefined ? null : 'error' in b ? b.error : (view?.error ?? null);
  const pool: PoolFigures = {
    active: others.filter((x) => x.state !== null && x.state !== 'idle').length,
    idle: others.filter((x) => x.state === 'idle').length,
    idleInTransaction: others.filter(isIdleInTransaction).length,
    waiting: view ? view.clientsWaiting : null,
    lockWaiting: others.filter((x) => x.waitEventType === 'Lock').length,
    max: server.maxConnections,
    usable: head.usable,
  };
  const xacts = database.xactCommit + database.xactRollback;
  const metrics: PoolMetrics = {
    totalConnections: backends.length,
    activeQueries: others.filter((x) => x.state === 'active').length,
    avgQueryTimeMs:
      statements.available && statements.calls > 0
        ? Math.round((statements.totalMs / statements.calls) * 1000) / 1000
        : null,
    slowQueries: statements.available ? statements.slowStatements : null,
    slowQueryMs: t.slowMs,
    errorRate: xacts > 0 ? database.xactRollback / xacts : null,
    xactCommit: database.xactCommit,
    xactRollback: database.xactRollback,
    statsReset: database.statsReset,
  };
  let budget: CapacityBudget | null = null;
  if (opts.budget) {
    const cfg = view?.config;
    budget = capacityBudget({
      appInstances: opts.budget.appInstances,
      appPoolSize: opts.budget.appPoolSize,
      surge: opts.budget.surge,
      appName: opts.appName,
      postgres: {
        maxConnections: server.maxConnections,
        superuserReserved: server.superuserReserved,
        reserved: server.reserved,
        inUse: backends.length,
        appInUse: opts.appName ? backends.filter((x) => x.application === opts.appName).length : 0,
      },
      pgbouncer:
        view && cfg && cfg.maxClientConn !== null
          ? {
              instances: opts.budget.pgbouncerInstances,
              maxClientConn: cfg.maxClientConn,
              defaultPoolSize: cfg.defaultPoolSize ?? 20,
              reservePoolSize: cfg.reservePoolSize ?? 0,
              maxDbConnections: cfg.maxDbConnections ?? 0,
              pools: view.pools.map((p) => ({ database: p.database, user: p.user })),
              databases: view.databases,
              serverConnectionsInUse: view.serverConnections,
              appPool: opts.appPool,
              maxUserConnections: cfg.maxUserConnections ?? 0,
              poolMode: cfg.poolMode,
              users: view.users,
              databaseModes: view.databases.map((d) => ({ name: d.name, poolMode: d.poolMode })),
              otherClients: opts.appPool
                ? view.clientsByPool
                    .filter((c) => c.database !== opts.appPool?.database || c.user !== opts.appPool?.user)
                    .reduce((a, c) => a + c.count, 0)
                : 0,
            }
          : undefined,
    });
  }
  const idleTx = idleInTransaction(others);
  const long = longRunning(backends, t.longMs);
  const findings = evaluateFindings(
    {
      server,
      backends,
      headroom: head,
      idleInTransaction: idleTx,
      longRunning: long,
      locks,
      statements,
      errorRate: { rate: metrics.errorRate, xacts },
      pgbouncer: view ?? null,
      pgbouncerError: bouncerError,
      budget,
    },
    t,
  );
  const worst = worstSeverity(findings);
  const { takenAt, ...serverInfo } = server;
  return {
    ok: worst !== 'critical',
    worst,
    takenAt,
    server: serverInfo,
    pool,
    metrics,
    headroom: head,
    groups: groupConnections(others),
    idleInTransaction: idleTx,
    longRunning: long,
    locks,
    pgbouncer: view ? { configured: true, ...view } : bouncer ? { configured: true, error: bouncerError } : null,
    budget,
    findings,
    thresholds: t,
  };
}

/**
 * What `dbops pool` reports when PostgreSQL refuses it a connection because it is full
 * (SQLSTATE 53300): a critical finding, not an unreachable server, with PgBouncer's console (which
 * needs no PostgreSQL slot) read as usual.
 */
export interface ServerFullReport {
  /** Always false: a full server is a critical finding. */
  ok: boolean;
  worst: 'critical';
  takenAt: string;
  serverFull: { endpoint: string; message: string; hint: string };
  pgbouncer: (PgBouncerView & { configured: true }) | { configured: boolean; error: string | null } | null;
  findings: Finding[];
  thresholds: Thresholds;
}

export async function collectServerFullReport(
  full: { message: string; endpoint: string },
  bouncer: BouncerSource,
  opts: PoolOptions,
): Promise<ServerFullReport> {
  const t: Thresholds = { ...DEFAULT_THRESHOLDS, ...opts.thresholds };
  const b = await readBouncer(bouncer, opts.queryTimeoutMs);
  const view = b && 'raw' in b ? pgbouncerView(b.raw, []) : undefined;
  const bouncerError: string | null = b === undefined ? null : 'error' in b ? b.error : (view?.error ?? null);
  const findings: Finding[] = [
    {
      severity: 'critical',
      code: 'postgres-full',
      message: `PostgreSQL at ${full.endpoint} is full: it refused dbops a connection (${full.message})`,
      suggestion: SERVER_FULL_HINT,
    },
    ...evaluateFindings(
      { locks: { roots: [], waiterCount: 0 }, pgbouncer: view ?? null, pgbouncerError: bouncerError },
      t,
    ),
  ];
  return {
    ok: false,
    worst: 'critical',
    takenAt: new Date().toISOString(),
    serverFull: { endpoint: full.endpoint, message: full.message, hint: SERVER_FULL_HINT },
    pgbouncer: view ? { configured: true, ...view } : bouncer ? { configured: true, error: bouncerError } : null,
    findings,
    thresholds: t,
  };
}

export interface LocksReport {
  ok: boolean;
  worst: Finding['severity'] | null;
  takenAt: string;
  locks: BlockingTree;
  findings: Finding[];
  thresholds: Thresholds;
}

/** The blocking tree alone (`dbops locks`). */
export async function collectLocksReport(pg: Client, opts: PoolOptions): Promise<LocksReport> {
  const t: Thresholds = { ...DEFAULT_THRESHOLDS, ...opts.thresholds };
  try {
    return await withReadOnly(pg, opts.queryTimeoutMs, async (c) => {
      const { server, backends } = await readActivityLight(c);
      const edges = await readLockEdges(c);
      const locks = buildBlockingTree(edges.edges, new Map(backends.map((b) => [b.pid, b])), edges.waitingFor);
      const findings = evaluateFindings({ locks }, t);
      const worst = worstSeverity(findings);
      return { ok: worst !== 'critical', worst, takenAt: server.takenAt, locks, findings, thresholds: t };
    });
  } catch (error) {
    throw isDbopsError(error) ? error : queryError(error, 'reading the blocking tree');
  }
}

/** Activity without pg_stat_statements and database counters. */
async function readActivityLight(c: ClientBase) {
  const s = await readActivity(c, { slowMs: 0, backendsOnly: true });
  return { server: s.server, backends: s.backends };
}

export type { StatementStats };
