/**
 * The composition root of one command: configuration → clients. Creates connections on demand,
 * hands them to core code, and closes exactly what it opened. No singletons.
 */
import type { Client } from 'pg';
import type { DatabaseSettings, ResolvedConfig } from '../config/config.js';
import { ConfigError } from '../errors.js';
import type { Output } from '../output/output.js';

export interface PgOptions {
  /** Use DIRECT_DATABASE_URL (bypasses PgBouncer): migrations and locks. */
  direct?: boolean;
  statementTimeoutMs?: number;
  applicationName?: string;
}

export class CommandContext {
  readonly config: ResolvedConfig;
  readonly out: Output;
  readonly env: Record<string, string | undefined>;
  /** Aborted on the first SIGINT/SIGTERM: long operations stop after their current step. */
  readonly signal: AbortSignal;
  /** Connect timeout in ms (--timeout overrides DBOPS_CONNECT_TIMEOUT_MS). */
  readonly timeoutMs: number;
  private readonly closers: Array<() => Promise<unknown>> = [];
  private databasePromise: Promise<DatabaseSettings> | undefined;

  private readonly onGraceful: (() => void) | undefined;

  constructor(init: {
    config: ResolvedConfig;
    out: Output;
    env: Record<string, string | undefined>;
    signal: AbortSignal;
    timeoutMs?: number | undefined;
    onGraceful?: () => void;
  }) {
    this.onGraceful = init.onGraceful;
    this.config = init.config;
    this.out = init.out;
    this.env = init.env;
    this.signal = init.signal;
    this.timeoutMs = init.timeoutMs ?? init.config.connectTimeoutMs;
  }

  /**
   * Say that this command watches `signal` and stops by itself after its current step (a batch, a
   * migration, a frame). Without it the first Ctrl-C ends the command at once (exit 130).
   */
  stopsGracefully(): void {
    this.onGraceful?.();
  }

  /**
   * The database to work on. With nothing configured, outside CI and production, the embedded
   * development server (started on demand); in CI or production, a ConfigError (exit 2).
   */
  database(): Promise<DatabaseSettings> {
    this.databasePromise ??= this.resolveDatabase();
    return this.databasePromise;
  }

  private async resolveDatabase(): Promise<DatabaseSettings> {
    if (this.config.database) return this.config.database;
    if (this.config.ci || this.config.production) {
      const where = this.config.ci ? 'CI is set' : 'NODE_ENV=production';
      throw new ConfigError(`no database configured and ${where}: refusing to use a throwaway embedded database`, {
        hint: 'set DATABASE_URL (or DATABASE_HOST/PORT/NAME/USER/PASSWORD), DIRECT_DATABASE_URL when DATABASE_URL points at PgBouncer',
      });
    }
    const { ensureEmbedded } = await import('../db/embedded.js');
    const db = await ensureEmbedded({
      dir: this.config.embeddedDir,
      prismaMigrationsDir: this.config.prismaMigrationsDir,
      log: (m) => this.out.info(m),
    });
    this.out.info(`using the embedded development database ${db.url} (${this.config.embeddedDir}; no DATABASE_URL configured)`);
    return {
      url: db.url,
      directUrl: db.url,
      source: 'embedded development database (.dbops)',
      directSource: 'embedded development database (.dbops)',
      ssl: false,
      poolSize: this.config.poolSize,
    };
  }

  /** A connected pg.Client, closed when the command ends. */
  async pg(opts: PgOptions = {}): Promise<Client> {
    const db = await this.database();
    const { connectPg } = await import('../db/pg.js');
    const client = await connectPg({
      connectionString: opts.direct ? db.directUrl : db.url,
      timeoutMs: this.timeoutMs,
      applicationName: opts.applicationName ?? 'dbops',
      ...(opts.statementTimeoutMs === undefined ? {} : { statementTimeoutMs: opts.statementTimeoutMs }),
    });
    this.onClose(() => client.end());
    return client;
  }

  /** PgBouncer's admin console (PGBOUNCER_ADMIN_URL): no startup parameters, simple protocol only. */
  async pgbouncer(): Promise<Client> {
    const url = this.config.pgbouncerAdminUrl?.value;
    if (!url) throw new ConfigError('no PgBouncer console configured', { hint: 'set PGBOUNCER_ADMIN_URL' });
    const { connectPg } = await import('../db/pg.js');
    const client = await connectPg({ connectionString: url, timeoutMs: this.timeoutMs, label: 'PgBouncer', adminConsole: true });
    this.onClose(() => client.end());
    return client;
  }

  /** Register something to close when the command ends (last opened, first closed). */
  onClose(fn: () => Promise<unknown>): void {
    this.closers.push(fn);
  }

  async close(): Promise<void> {
    while (this.closers.length > 0) {
      const fn = this.closers.pop();
      await fn?.().catch(() => {});
    }
  }
}
