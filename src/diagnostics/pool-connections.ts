/**
 * The connections `dbops pool` and `dbops locks` read through: PostgreSQL, and PgBouncer's console
 * when one is configured. A connection that failed during a report is closed and opened again for
 * the next one, so a watch keeps going through a restart or a dropped connection.
 */
import type { Client } from 'pg';
import { isServerFull } from '../db/pg.js';
import { messageOf } from '../errors.js';
import {
  type BouncerSource,
  collectLocksReport,
  collectPoolReport,
  collectServerFullReport,
  type LocksReport,
  type PoolOptions,
  type PoolReport,
  type ServerFullReport,
} from './pool.js';

export interface PoolOpeners {
  /** Opens a PostgreSQL connection (its closing is the opener's business). */
  pg: () => Promise<Client>;
  /** Opens the PgBouncer console; absent when none is configured. */
  console?: (() => Promise<Client>) | undefined;
}

export class PoolConnections {
  private pg: Client | undefined;
  private bouncer: BouncerSource;
  private bouncerStale = false;

  constructor(private readonly open: PoolOpeners) {}

  /**
   * Before the first report: PostgreSQL must answer (else its error is thrown), except when it is
   * full (that is the report's finding); the console's failure is data.
   */
  async connect(): Promise<void> {
    [this.pg, this.bouncer] = await Promise.all([
      this.open.pg().catch((error: unknown) => {
        if (isServerFull(error)) return undefined;
        throw error;
      }),
      this.openConsole(),
    ]);
  }

  /** The pool report; a full PostgreSQL (no slot for dbops) gives the server-full report instead of an error. */
  async poolReport(opts: PoolOptions): Promise<PoolReport | ServerFullReport> {
    if (!this.pg) {
      try {
        this.pg = await this.open.pg();
      } catch (error) {
        if (!isServerFull(error)) throw error;
        if (this.bouncerStale || (this.bouncer && 'error' in this.bouncer)) this.bouncer = await this.openConsole();
        this.bouncerStale = false;
        const e = error as { message?: string; details?: { endpoint?: string } };
        // The server's own words (the dbops message repeats the endpoint).
        const cause = (error as { cause?: unknown }).cause;
        return collectServerFullReport(
          { message: messageOf(cause ?? error), endpoint: e.details?.endpoint ?? 'the configured server' },
          this.bouncer,
          opts,
        );
      }
    }
    return this.round(async (pg) => {
      if (this.bouncerStale) {
        this.bouncer = await this.openConsole();
        this.bouncerStale = false;
      }
      const report = await collectPoolReport(pg, this.bouncer, opts);
      // A console that could not be reached, or failed while read, is opened afresh next time.
      const failed = Boolean(report.pgbouncer && 'error' in report.pgbouncer && report.pgbouncer.error);
      if (this.bouncer && ('error' in this.bouncer || failed)) {
        if ('client' in this.bouncer) await this.bouncer.client.end().catch(() => {});
        this.bouncerStale = true;
      }
      return report;
    });
  }

  async locksReport(opts: PoolOptions): Promise<LocksReport> {
    return this.round((pg) => collectLocksReport(pg, opts));
  }

  /** One report; when it fails, its PostgreSQL connection is closed and the next report opens another. */
  private async round<R>(read: (pg: Client) => Promise<R>): Promise<R> {
    this.pg ??= await this.open.pg();
    const pg = this.pg;
    try {
      return await read(pg);
    } catch (error) {
      this.pg = undefined;
      await pg.end().catch(() => {});
      throw error;
    }
  }

  private async openConsole(): Promise<BouncerSource> {
    if (!this.open.console) return undefined;
    try {
      return { client: await this.open.console() };
    } catch (error) {
      return { error: messageOf(error) };
    }
  }
}
