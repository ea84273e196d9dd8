/**
 * Read replicas in `dbops pool` and `dbops doctor`: each configured replica (DATABASE_REPLICA_URLS)
 * as it sees itself (reachable, in recovery, replay position and lag in bytes and time,
 * connections and headroom) and as the primary sees it (pg_stat_replication: state, replay lag;
 * pg_replication_slots: the slot, active or not, WAL it retains). Findings flag a lagging, an
 * unreachable or a promoted replica, and an inactive slot holding WAL.
 */
import type { ClientBase } from 'pg';
import { messageOf } from '../errors.js';
import type { ComponentCheck } from './doctor-check.js';
import type { Finding } from './findings.js';

export interface ReplicaTargetInfo {
  name: string;
  connect(): Promise<ClientBase & { end(): Promise<void> }>;
}

export interface ReplicaThresholds {
  /** Replay lag (time) that is a warning (ms). */
  lagWarnMs: number;
  /** Replay lag (time) that is critical (ms). */
  lagCriticalMs: number;
}

export const DEFAULT_REPLICA_THRESHOLDS: ReplicaThresholds = { lagWarnMs: 10_000, lagCriticalMs: 60_000 };

/** A standby as the primary sees it. */
export interface SenderRow {
  applicationName: string;
  clientAddr: string | null;
  state: string;
  syncState: string;
  /** Bytes between the primary's current position and what it replayed. */
  replayLagBytes: number | null;
  replayLagMs: number | null;
  slot: SlotRow | null;
}

export interface SlotRow {
  name: string;
  active: boolean;
  /** reserved, extended, unreserved, lost (PostgreSQL 13+). */
  walStatus: string | null;
  /** WAL the primary keeps for it (bytes). */
  retainedBytes: number | null;
}

export interface ReplicaStatus {
  name: string;
  reachable: boolean;
  error?: string;
  version?: string;
  inRecovery?: boolean;
  replayLsn?: string | null;
  /** Bytes of WAL the primary wrote that this replica has not replayed (null: unknown). */
  lagBytes: number | null;
  /** now() − the last replayed transaction's commit time, 0 when everything received is replayed. */
  lagMs: number | null;
  connections?: number;
  maxConnections?: number;
  /** max_connections − reserved − in use. */
  headroom?: number;
  /** The slot it streams from (pg_stat_wal_receiver.slot_name). */
  slotName?: string | null;
  /** Its row in the primary's pg_stat_replication, when one matches. */
  sender: SenderRow | null;
}

export interface ReplicasReport {
  primaryLsn: string | null;
  replicas: ReplicaStatus[];
  /** Every standby the primary streams to, matched or not. */
  senders: SenderRow[];
  /** Slots on the primary (physical), for inactive ones that retain WAL. */
  slots: SlotRow[];
  findings: Finding[];
  thresholds: ReplicaThresholds;
}

async function readPrimary(
  primary: ClientBase,
): Promise<{ lsn: string | null; senders: SenderRow[]; slots: SlotRow[] }> {
  const lsnRow = await primary.query<{ lsn: string | null }>(
    `SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS lsn`,
  );
  const lsn = lsnRow.rows[0]?.lsn ?? null;
  const version = Number(
    (await primary.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`)).rows[0]?.v ?? 0,
  );
  const slots = await primary.query<{
    name: string;
    active: boolean;
    wal_status: string | null;
    retained: string | null;
    pid: number | null;
  }>(
    `SELECT slot_name AS name, active, ${version >= 130000 ? 'wal_status' : 'NULL::text'} AS wal_status,
            CASE WHEN restart_lsn IS NULL OR pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint END::text AS retained,
            active_pid AS pid
       FROM pg_replication_slots WHERE slot_type = 'physical' ORDER BY slot_name`,
  );
  const slotRows = slots.rows.map((s) => ({
    name: s.name,
    active: s.active,
    walStatus: s.wal_status,
    retainedBytes: s.retained === null ? null : Number(s.retained),
    pid: s.pid,
  }));
  const senders = await primary.query<{
    pid: number;
    application_name: string;
    client_addr: string | null;
    state: string;
    sync_state: string;
    lag_bytes: string | null;
    lag_ms: number | null;
  }>(
    `SELECT pid, application_name, client_addr::text AS client_addr, state, sync_state,
            CASE WHEN pg_is_in_recovery() OR replay_lsn IS NULL THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint END::text AS lag_bytes,
            (extract(epoch FROM replay_lag) * 1000)::float8 AS lag_ms
       FROM pg_stat_replication ORDER BY application_name, pid`,
  );
  return {
    lsn,
    slots: slotRows.map(({ pid: _pid, ...s }) => s),
    senders: senders.rows.map((r) => {
      const slot = slotRows.find((s) => s.pid === r.pid);
      return {
        applicationName: r.application_name,
        clientAddr: r.client_addr,
        state: r.state,
        syncState: r.sync_state,
        replayLagBytes: r.lag_bytes === null ? null : Number(r.lag_bytes),
        replayLagMs: r.lag_ms === null ? null : Math.round(r.lag_ms),
        slot: slot
          ? { name: slot.name, active: slot.active, walStatus: slot.walStatus, retainedBytes: slot.retainedBytes }
          : null,
      };
    }),
  };
}

async function readReplica(
  target: ReplicaTargetInfo,
  primaryLsn: string | null,
): Promise<ReplicaStatus & { receiverApp: string | null }> {
  let client: Awaited<ReturnType<ReplicaTargetInfo['connect']>> | undefined;
  try {
    client = await target.connect();
    const { rows } = await client.query<{
      version: string;
      recovery: boolean;
      replay: string | null;
      lag_bytes: string | null;
      lag_ms: number | null;
      conns: number;
      max: number;
      reserved: number;
      slot: string | null;
      conninfo: string | null;
    }>(
      `SELECT current_setting('server_version') AS version, pg_is_in_recovery() AS recovery,
              pg_last_wal_replay_lsn()::text AS replay,
              CASE WHEN $1::text IS NULL OR pg_last_wal_replay_lsn() IS NULL THEN NULL
                   ELSE greatest(pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn()), 0)::bigint END::text AS lag_bytes,
              CASE WHEN NOT pg_is_in_recovery() THEN NULL
                   WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                   ELSE (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::float8 END AS lag_ms,
              (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend') AS conns,
              current_setting('max_connections')::int AS max,
              current_setting('superuser_reserved_connections')::int AS reserved,
              (SELECT slot_name FROM pg_stat_wal_receiver LIMIT 1) AS slot,
              (SELECT conninfo FROM pg_stat_wal_receiver LIMIT 1) AS conninfo`,
      [primaryLsn],
    );
    const r = rows[0];
    if (!r) throw new Error('no answer');
    return {
      name: target.name,
      reachable: true,
      version: r.version,
      inRecovery: r.recovery,
      replayLsn: r.replay,
      lagBytes: r.lag_bytes === null ? null : Number(r.lag_bytes),
      lagMs: r.lag_ms === null ? null : Math.round(r.lag_ms),
      connections: r.conns,
      maxConnections: r.max,
      headroom: r.max - r.reserved - r.conns,
      slotName: r.slot,
      sender: null,
      receiverApp: applicationNameOf(r.conninfo),
    };
  } catch (error) {
    return {
      name: target.name,
      reachable: false,
      error: messageOf(error),
      lagBytes: null,
      lagMs: null,
      sender: null,
      receiverApp: null,
    };
  } finally {
    await client?.end().catch(() => {});
  }
}

/** application_name=... in a walreceiver's conninfo (keyword/value form, as PostgreSQL shows it). */
function applicationNameOf(conninfo: string | null): string | null {
  if (!conninfo) return null;
  for (const part of conninfo.split(' ')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq) === 'application_name') return part.slice(eq + 1).replace(/^'|'$/g, '');
  }
  return null;
}

/** Reads the primary and every replica (in parallel); never throws for a replica: an unreachable one is reported. */
export async function collectReplicas(
  primary: ClientBase,
  targets: ReplicaTargetInfo[],
  thresholds: Partial<ReplicaThresholds> = {},
): Promise<ReplicasReport> {
  const t = { ...DEFAULT_REPLICA_THRESHOLDS, ...thresholds };
  const p = await readPrimary(primary);
  const read = await Promise.all(targets.map((target) => readReplica(target, p.lsn)));
  const unmatched = [...p.senders];
  const replicas: ReplicaStatus[] = read.map(({ receiverApp, ...r }) => {
    // The primary's row for this replica: by its slot, else by the application name it streams as, else the only one left.
    let i = r.slotName ? unmatched.findIndex((s) => s.slot?.name === r.slotName) : -1;
    if (i < 0 && receiverApp) {
      const same = unmatched.filter((s) => s.applicationName === receiverApp);
      if (same.length === 1) i = unmatched.indexOf(same[0] as SenderRow);
    }
    if (i < 0 && r.reachable && read.length === 1 && unmatched.length === 1) i = 0;
    const sender = i >= 0 ? (unmatched.splice(i, 1)[0] ?? null) : null;
    return { ...r, sender };
  });
  return {
    primaryLsn: p.lsn,
    replicas,
    senders: p.senders,
    slots: p.slots,
    findings: replicaFindings(replicas, p.slots, t),
    thresholds: t,
  };
}

export function replicaFindings(replicas: ReplicaStatus[], slots: SlotRow[], t: ReplicaThresholds): Finding[] {
  const out: Finding[] = [];
  const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  for (const r of replicas) {
    if (!r.reachable) {
      out.push({
        severity: 'critical',
        code: 'replica-unreachable',
        message: `replica ${r.name} cannot be reached: ${r.error ?? 'no answer'}`,
        suggestion: 'reads sent to it fail; dbops doctor shows why (address, password, TLS)',
      });
      continue;
    }
    if (r.inRecovery === false) {
      out.push({
        severity: 'critical',
        code: 'replica-not-in-recovery',
        message: `replica ${r.name} is not a standby (pg_is_in_recovery() is false): promoted, or the URL names a primary`,
        suggestion: 'check DATABASE_REPLICA_URLS; a promoted replica no longer follows the primary',
      });
      continue;
    }
    const lag = r.lagMs ?? r.sender?.replayLagMs ?? null;
    if (lag !== null && lag >= t.lagWarnMs) {
      out.push({
        severity: lag >= t.lagCriticalMs ? 'critical' : 'warning',
        code: 'replica-lag',
        message: `replica ${r.name} replays ${sec(lag)} behind the primary${r.lagBytes === null ? '' : ` (${r.lagBytes} bytes of WAL)`}`,
        suggestion:
          'readers of this replica see data that old; a long query on it (hot_standby_feedback, max_standby_streaming_delay), its disk or network, or recovery_min_apply_delay; dbops waits for it before invalidating the cache (docs/cache-invalidation.md)',
      });
    }
  }
  for (const s of slots) {
    if (!s.active) {
      out.push({
        severity: s.walStatus === 'lost' ? 'critical' : 'warning',
        code: 'replication-slot-inactive',
        message: `replication slot ${s.name} is inactive${s.retainedBytes === null ? '' : ` and holds ${s.retainedBytes} bytes of WAL`}${s.walStatus ? ` (wal_status ${s.walStatus})` : ''}`,
        suggestion:
          'a standby that no longer streams keeps WAL on the primary until its disk fills: reconnect it, or drop the slot (SELECT pg_drop_replication_slot(...))',
        statements: [`SELECT pg_drop_replication_slot('${s.name.replace(/'/g, "''")}');`],
      });
    }
  }
  return out;
}

/** `dbops doctor`'s check of one replica: reachable, how fast, version, a standby, its lag and headroom. */
export async function checkReplica(target: { name: string; url: string }, timeoutMs: number): Promise<ComponentCheck> {
  const { connectPg } = await import('../db/pg.js');
  const check: ComponentCheck = {
    component: 'postgres-replica',
    label: `replica ${target.name}`,
    endpoint: target.name,
    ok: false,
    details: {},
    warnings: [],
  };
  const t0 = process.hrtime.bigint();
  const status = await readReplica(
    {
      name: target.name,
      connect: async () => {
        const c = await connectPg({
          connectionString: target.url,
          timeoutMs,
          queryTimeoutMs: timeoutMs,
          label: `replica ${target.name}`,
          applicationName: 'dbops doctor',
        });
        check.connectMs = Math.round((Number(process.hrtime.bigint() - t0) / 1e6) * 10) / 10;
        return c;
      },
    },
    null,
  );
  if (!status.reachable) {
    check.error = {
      message: status.error ?? 'unreachable',
      hint: 'check DATABASE_REPLICA_URLS: address, password, TLS',
      code: 'UNREACHABLE',
    };
    return check;
  }
  check.ok = true;
  if (status.version !== undefined) check.version = status.version;
  check.details.standby = status.inRecovery;
  check.details.replayLagMs = status.lagMs;
  check.details.replayLsn = status.replayLsn;
  check.details.connections = status.connections;
  check.details.maxConnections = status.maxConnections;
  check.details.headroom = status.headroom;
  check.details.slot = status.slotName ?? null;
  if (status.inRecovery === false)
    check.warnings.push('not a standby (pg_is_in_recovery() is false): promoted, or the URL names a primary');
  if (status.lagMs !== null && status.lagMs >= DEFAULT_REPLICA_THRESHOLDS.lagWarnMs)
    check.warnings.push(`replays ${(status.lagMs / 1000).toFixed(1)} s behind`);
  return check;
}
