/**
 * Load `pg` without its Cloudflare probe. On Node 20 (no global `navigator`), pg/lib/stream.js
 * decides whether it runs in a Cloudflare Worker by constructing a `Response`, which loads
 * Node's whole fetch implementation: about 35 ms of a `dbops pool` run. A `navigator` that says
 * Node.js, present only while pg's modules initialise, skips that probe. Node 21+ has its own
 * `navigator`, and there this does nothing. (Worth moving into src/db/pg.ts for every command.)
 */
export async function preloadPg(): Promise<void> {
  const g = globalThis as { navigator?: unknown };
  if (g.navigator !== undefined) {
    await import('pg');
    return;
  }
  Object.defineProperty(globalThis, 'navigator', { value: { userAgent: `Node.js/${process.versions.node}` }, configurable: true, writable: true });
  try {
    await import('pg');
  } finally {
    delete g.navigator;
  }
}
