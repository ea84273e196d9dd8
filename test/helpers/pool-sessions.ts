/**
 * Real sessions for the pool and locks tests: pg clients with an application_name, a staged
 * lock pile-up, and waiting until a backend really waits. Everything opened is closed by close().
 */
import pg from 'pg';

export class Sessions {
  private readonly clients: pg.Client[] = [];
  private readonly pending: Array<Promise<unknown>> = [];

  /** A connected client with this application_name. */
  async open(url: string, applicationName: string): Promise<pg.Client & { pid: number }> {
    const c = new pg.Client({ connectionString: url, application_name: applicationName });
    c.on('error', () => {});
    await c.connect();
    this.clients.push(c);
    const r = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    return Object.assign(c, { pid: Number(r.rows[0]?.pid) });
  }

  /** Close this client too in close() (for clients connected by the test itself). */
  adopt(client: pg.Client): void {
    this.clients.push(client);
  }

  /** Start a query that is expected to block; its outcome is awaited (and ignored) in close(). */
  background(client: pg.Client, sql: string): void {
    this.pending.push(client.query(sql).catch(() => {}));
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.end().catch(() => {})));
    await Promise.allSettled(this.pending);
  }
}

/** Poll until `pid` waits on a heavyweight lock (seen from `observer`). */
export async function waitForLockWait(observer: pg.Client, pid: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await observer.query(`SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1`, [pid]);
    if (r.rows[0]?.wait_event_type === 'Lock') return;
    if (Date.now() > deadline) throw new Error(`pid ${pid} never waited on a lock`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

export interface PileUp {
  holder: number;
  update: number;
  alter: number;
  select: number;
}

/**
 * The classic pile-up on `table`: a session idle in a transaction holding a row lock, an UPDATE
 * of that row blocked behind it, an ALTER TABLE queued for an exclusive lock, and a SELECT stuck
 * behind the queued ALTER (a soft block).
 */
export async function stagePileUp(
  sessions: Sessions,
  url: string,
  observer: pg.Client,
  table: string,
  apps: Partial<Record<keyof PileUp, string>> = {},
): Promise<PileUp> {
  const holder = await sessions.open(url, apps.holder ?? 'holder-app');
  await holder.query('BEGIN');
  await holder.query(`UPDATE ${table} SET n = n + 1 WHERE id = 1`);
  const update = await sessions.open(url, apps.update ?? 'update-app');
  sessions.background(update, `UPDATE ${table} SET n = 0 WHERE id = 1`);
  await waitForLockWait(observer, update.pid);
  const alter = await sessions.open(url, apps.alter ?? 'alter-app');
  sessions.background(alter, `ALTER TABLE ${table} ADD COLUMN note text`);
  await waitForLockWait(observer, alter.pid);
  const select = await sessions.open(url, apps.select ?? 'select-app');
  sessions.background(select, `SELECT count(*) FROM ${table}`);
  await waitForLockWait(observer, select.pid);
  return { holder: holder.pid, update: update.pid, alter: alter.pid, select: select.pid };
}
