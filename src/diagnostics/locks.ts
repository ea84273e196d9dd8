/**
 * The blocking tree. Edges come from pg_blocking_pids(), which also reports "soft" blocks (a
 * waiter queued behind another waiter for a conflicting lock, as in the ALTER TABLE pile-up);
 * pg_locks joins cannot see queue order. pg_blocking_pids is called for lock waiters only: it
 * takes the lock manager's partition locks, and the manual warns against calling it often.
 * Building the tree is pure: each waiter appears once, under its deepest blocker, with every
 * blocker listed.
 */
import type { ClientBase as Client } from 'pg';
import type { Backend } from './activity.js';

export interface BlockEdge {
  waiter: number;
  /** 0 = a prepared transaction. */
  blocker: number;
  /** 'holds': the blocker holds a conflicting lock; 'queued': it is only ahead in the queue (soft). */
  kind: 'holds' | 'queued';
}

export interface WaitTarget {
  locktype: string;
  /**
   * The lock mode as pg_locks shows it. For a row (`tuple`) lock it encodes the row-lock strength:
   * AccessExclusiveLock is FOR UPDATE, ExclusiveLock FOR NO KEY UPDATE, RowShareLock FOR SHARE,
   * AccessShareLock FOR KEY SHARE; it is no table lock.
   */
  mode: string;
  /** Relation name for relation-level and row (tuple) locks in this database. */
  relation: string | null;
  /** A row lock: the row's (page,tuple) address (its ctid). */
  row: string | null;
  /** A wait for another transaction to end (locktype transactionid): its id. */
  transactionId: string | null;
  /**
   * For a transactionid wait: the row the waiter already holds a row lock on while it waits (its
   * relation and ctid), when it holds one: the row the other transaction changed or locked.
   */
  rowOf: { relation: string; row: string } | null;
  /** How long it has waited for this lock (pg_locks.waitstart, PostgreSQL 14+); null before 14. */
  waitMs: number | null;
}

export interface LockEdges {
  edges: BlockEdge[];
  /** What each waiter is waiting for (its ungranted lock). */
  waitingFor: Record<number, WaitTarget>;
}

/** Read the blocking edges (one query; only backends waiting on a heavyweight lock are probed). */
export async function readLockEdges(client: Client): Promise<LockEdges> {
  const r = await client.query(
    `WITH waiters AS (
       SELECT pid, pg_blocking_pids(pid) AS blockers
         FROM pg_stat_activity
        WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()
     )
     SELECT w.pid AS waiter, b.blocker,
            EXISTS (
              SELECT 1 FROM pg_locks wl JOIN pg_locks hl
                ON hl.granted AND hl.pid = b.blocker AND hl.locktype = wl.locktype
               AND hl.database IS NOT DISTINCT FROM wl.database AND hl.relation IS NOT DISTINCT FROM wl.relation
               AND hl.page IS NOT DISTINCT FROM wl.page AND hl.tuple IS NOT DISTINCT FROM wl.tuple
               AND hl.virtualxid IS NOT DISTINCT FROM wl.virtualxid AND hl.transactionid IS NOT DISTINCT FROM wl.transactionid
               AND hl.classid IS NOT DISTINCT FROM wl.classid AND hl.objid IS NOT DISTINCT FROM wl.objid
               AND hl.objsubid IS NOT DISTINCT FROM wl.objsubid
             WHERE wl.pid = w.pid AND NOT wl.granted
            ) AS holds,
            t.locktype, t.mode, t.relation, t.wait_ms, t.row, t.transactionid, t.held_relation, t.held_row
       FROM waiters w
       CROSS JOIN LATERAL unnest(w.blockers) AS b(blocker)
       LEFT JOIN LATERAL (
         SELECT l.locktype, l.mode,
                -- waitstart exists from PostgreSQL 14; through to_jsonb older servers give NULL instead of an error
                EXTRACT(EPOCH FROM now() - (to_jsonb(l) ->> 'waitstart')::timestamptz) * 1000 AS wait_ms,
                CASE WHEN l.relation IS NOT NULL AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                     THEN l.relation::regclass::text ELSE l.relation::text END AS relation,
                CASE WHEN l.locktype = 'tuple' THEN format('(%s,%s)', l.page, l.tuple) END AS row,
                l.transactionid::text AS transactionid,
                h.relation AS held_relation, h.row AS held_row
           FROM pg_locks l
           -- waiting for a transaction to end: the row lock it holds meanwhile names the row
           LEFT JOIN LATERAL (
             SELECT CASE WHEN g.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                         THEN g.relation::regclass::text ELSE g.relation::text END AS relation,
                    format('(%s,%s)', g.page, g.tuple) AS row
               FROM pg_locks g
              WHERE l.locktype = 'transactionid' AND g.pid = w.pid AND g.granted AND g.locktype = 'tuple'
              LIMIT 1
           ) h ON true
          WHERE l.pid = w.pid AND NOT l.granted LIMIT 1
       ) t ON true
      ORDER BY w.pid, b.blocker`,
  );
  const edges: BlockEdge[] = [];
  const waitingFor: Record<number, WaitTarget> = {};
  for (const row of r.rows) {
    const waiter = Number(row.waiter);
    const blocker = Number(row.blocker);
    // A prepared transaction (pid 0) holds its locks without being in the queue.
    edges.push({ waiter, blocker, kind: row.holds || blocker === 0 ? 'holds' : 'queued' });
    if (row.locktype) {
      const waitMs = row.wait_ms === null || row.wait_ms === undefined ? null : Math.max(0, Number(row.wait_ms));
      waitingFor[waiter] = {
        locktype: row.locktype,
        mode: row.mode,
        relation: row.relation ?? null,
        row: row.row ?? null,
        transactionId: row.transactionid ?? null,
        rowOf: row.held_relation ? { relation: row.held_relation, row: row.held_row } : null,
        waitMs,
      };
    }
  }
  return { edges, waitingFor };
}

export interface LockNode {
  pid: number;
  /** Blocking nobody's way but its own: a root holds what others wait for. */
  root: boolean;
  state: string | null;
  application: string;
  user: string | null;
  database: string | null;
  clientAddr: string | null;
  waitEventType: string | null;
  waitEvent: string | null;
  xactAgeMs: number | null;
  stateAgeMs: number | null;
  queryAgeMs: number | null;
  query: string | null;
  /** What this waiter asks for; null for roots. */
  waitingFor: WaitTarget | null;
  /** Every blocker of this waiter (it is drawn under the deepest one). */
  blockedBy: Array<{ pid: number; kind: 'holds' | 'queued' }>;
  /** Waiters below this node, transitively. */
  blockedCount: number;
  /** Part of a wait cycle (a deadlock the server has not yet broken). */
  cycle?: boolean;
  terminate: string | null;
  children: LockNode[];
}

export interface BlockingTree {
  roots: LockNode[];
  /** Distinct sessions waiting on a lock held or queued by another. */
  waiterCount: number;
}

/** Build the forest: roots first (blockers that wait for nobody), each waiter once. */
export function buildBlockingTree(
  edges: BlockEdge[],
  backends: Map<number, Backend>,
  waitingFor: Record<number, WaitTarget> = {},
): BlockingTree {
  const blockersOf = new Map<number, BlockEdge[]>();
  const involved = new Set<number>();
  for (const e of edges) {
    if (e.waiter === e.blocker) continue;
    const list = blockersOf.get(e.waiter) ?? [];
    if (!list.some((x) => x.blocker === e.blocker)) list.push(e);
    blockersOf.set(e.waiter, list);
    involved.add(e.waiter).add(e.blocker);
  }
  // Depth = longest chain of blockers above a node; a cycle's back edge counts as 0.
  const depth = new Map<number, number>();
  const visiting = new Set<number>();
  const depthOf = (pid: number): number => {
    const known = depth.get(pid);
    if (known !== undefined) return known;
    if (visiting.has(pid)) return 0;
    visiting.add(pid);
    let d = 0;
    for (const e of blockersOf.get(pid) ?? []) d = Math.max(d, depthOf(e.blocker) + 1);
    visiting.delete(pid);
    depth.set(pid, d);
    return d;
  };
  const parentOf = new Map<number, number>();
  for (const [waiter, list] of blockersOf) {
    depthOf(waiter);
    const best = [...list].sort((a, b) => depthOf(b.blocker) - depthOf(a.blocker) || a.blocker - b.blocker)[0];
    if (best) parentOf.set(waiter, best.blocker);
  }
  const nodes = new Map<number, LockNode>();
  const nodeFor = (pid: number): LockNode => {
    let n = nodes.get(pid);
    if (n) return n;
    const b = backends.get(pid);
    const blockedBy = (blockersOf.get(pid) ?? []).map((e) => ({ pid: e.blocker, kind: e.kind }));
    n = {
      pid,
      root: blockedBy.length === 0,
      state: pid === 0 ? 'prepared transaction' : (b?.state ?? null),
      application: b?.application ?? '',
      user: b?.user ?? null,
      database: b?.database ?? null,
      clientAddr: b?.clientAddr ?? null,
      waitEventType: b?.waitEventType ?? null,
      waitEvent: b?.waitEvent ?? null,
      xactAgeMs: b?.xactAgeMs ?? null,
      stateAgeMs: b?.stateAgeMs ?? null,
      queryAgeMs: b?.queryAgeMs ?? null,
      query: b?.query ?? null,
      waitingFor: waitingFor[pid] ?? null,
      blockedBy,
      blockedCount: 0,
      terminate: pid === 0 ? null : `SELECT pg_terminate_backend(${pid});`,
      children: [],
    };
    nodes.set(pid, n);
    return n;
  };
  const roots: LockNode[] = [];
  for (const pid of [...involved].sort((a, b) => a - b)) {
    const node = nodeFor(pid);
    const parent = parentOf.get(pid);
    if (parent === undefined) roots.push(node);
    else nodeFor(parent).children.push(node);
  }
  // Nodes in a wait cycle are not reachable from any root: lift the lowest pid of each cycle.
  const reached = new Set<number>();
  const mark = (n: LockNode) => {
    if (reached.has(n.pid)) return;
    reached.add(n.pid);
    n.children.forEach(mark);
  };
  roots.forEach(mark);
  for (const pid of [...involved].sort((a, b) => a - b)) {
    if (reached.has(pid)) continue;
    const node = nodeFor(pid);
    const parent = parentOf.get(pid);
    if (parent !== undefined) {
      const p = nodeFor(parent);
      p.children = p.children.filter((c) => c.pid !== pid);
    }
    node.cycle = true;
    roots.push(node);
    mark(node);
  }
  const count = (n: LockNode): number => {
    n.children.sort((a, b) => (b.queryAgeMs ?? 0) - (a.queryAgeMs ?? 0) || a.pid - b.pid);
    n.blockedCount = n.children.reduce((sum, c) => sum + 1 + count(c), 0);
    return n.blockedCount;
  };
  roots.forEach(count);
  roots.sort((a, b) => b.blockedCount - a.blockedCount || (b.xactAgeMs ?? 0) - (a.xactAgeMs ?? 0) || a.pid - b.pid);
  return { roots, waiterCount: blockersOf.size };
}

/** Every node of the forest, depth-first, with its depth. */
export function walkTree(tree: BlockingTree): Array<{ node: LockNode; depth: number }> {
  const out: Array<{ node: LockNode; depth: number }> = [];
  const visit = (node: LockNode, depth: number) => {
    out.push({ node, depth });
    for (const c of node.children) visit(c, depth + 1);
  };
  for (const r of tree.roots) visit(r, 0);
  return out;
}
