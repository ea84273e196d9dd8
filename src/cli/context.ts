/**
 * The composition root of one command: configuration → clients. Creates connections on demand,
 * hands them to core code, and closes exactly what it opened. No singletons.
 */
import type { Client } from 'pg';
import type { DatabaseSettings, ResolvedConfig } from '../config/config.js';
import { describeTarget, userOf } from '../config/urls.js';
import { ConfigError, UnreachableError } from '../errors.js';
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
  private readonly announced = new Set<string>();
  /**
   * Set by the diagnostics (pool, locks, slow-queries, doctor): with nothing configured they use an
   * embedded server that is already running, and never start one (a fresh, empty database would
   * report a healthy nothing). Holds the command's name for the message.
   */
  private embeddedOnlyIfRunning: string | undefined;

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
  /** For a diagnostic: never start the embedded server (an already running one may be used). */
  diagnostic(command: string): this {
    this.embeddedOnlyIfRunning = command;
    return this;
  }

  /**
   * The target line, once per server: `→ postgresql://app@db.internal:5432/shop (DATABASE_URL from
   * .env)` on stderr, before the first connection to it. Never the password (describeTarget drops it).
   */
  announce(url: string, where: string, what = ''): void {
    const key = `${what}${url}`;
    if (this.announced.has(key)) return;
    this.announced.add(key);
    this.out.target(`→ ${what}${describeTarget(url) ?? '(a connection string that does not parse)'} (${where})`);
  }

  /** The target line of the PostgreSQL connection that `direct` selects. */
  announceDatabase(db: DatabaseSettings, direct: boolean): void {
    const url = direct ? db.directUrl : db.url;
    let where = direct ? db.directBrief : db.brief;
    if (db.ignoredDirect && direct)
      where += `; ${db.ignoredDirect} ignored under it: pass --direct-database-url to use one`;
    this.announce(url, where);
  }

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
    const { ensureEmbedded, embeddedStatus } = await import('../db/embedded.js');
    if (this.embeddedOnlyIfRunning) {
      const running = embeddedStatus(this.config.embeddedDir);
      if (!running.running || !running.url) {
        throw new ConfigError(
          `no database configured: ${this.embeddedOnlyIfRunning} does not start the embedded development database`,
          {
            hint: 'set DATABASE_URL (or pass --database-url); to look at the embedded development database, start it first: dbops embedded start',
          },
        );
      }
      const where = `embedded development database, already running, in ${this.config.embeddedDir}; no DATABASE_URL configured`;
      return {
        url: running.url,
        directUrl: running.url,
        source: where,
        directSource: where,
        brief: where,
        directBrief: where,
        ssl: false,
        poolSize: this.config.poolSize,
      };
    }
    const db = await ensureEmbedded({
      dir: this.config.embeddedDir,
      prismaMigrationsDir: this.config.prismaMigrationsDir,
      log: (m) => this.out.info(m),
    });
    const where = `embedded development database, ${db.started ? 'started now' : 'already running'}, in ${this.config.embeddedDir}; no DATABASE_URL configured`;
    return {
      url: db.url,
      directUrl: db.url,
      source: 'embedded development database (.dbops)',
      directSource: 'embedded development database (.dbops)',
      brief: where,
      directBrief: where,
      ssl: false,
      poolSize: this.config.poolSize,
    };
  }

  /** A connected pg.Client, closed when the command ends. */
  async pg(opts: PgOptions = {}): Promise<Client> {
    const db = await this.database();
    this.announceDatabase(db, Boolean(opts.direct));
    const { connectPg } = await import('../db/pg.js');
    const connectionString = opts.direct ? db.directUrl : db.url;
    const client = await connectPg({
      connectionString,
      timeoutMs: this.timeoutMs,
      applicationName: opts.applicationName ?? 'dbops',
      ...(opts.statementTimeoutMs === undefined ? {} : { statementTimeoutMs: opts.statementTimeoutMs }),
    }).catch((error: unknown) => {
      throw withLoginHint(error, connectionString, opts.direct ? db.directSource : db.source);
    });
    this.onClose(() => client.end());
    return client;
  }

  /** PgBouncer's admin console (PGBOUNCER_ADMIN_URL): no startup parameters, simple protocol only. */
  async pgbouncer(): Promise<Client> {
    const url = this.config.pgbouncerAdminUrl?.value;
    if (!url) throw new ConfigError('no PgBouncer console configured', { hint: 'set PGBOUNCER_ADMIN_URL' });
    const s = this.config.pgbouncerAdminUrl;
    this.announce(url, s?.brief ?? s?.source ?? 'PGBOUNCER_ADMIN_URL', 'PgBouncer console ');
    const { connectPg } = await import('../db/pg.js');
    const client = await connectPg({
      connectionString: url,
      timeoutMs: this.timeoutMs,
      label: 'PgBouncer',
      adminConsole: true,
    });
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

/**
 * A refused login (SQLSTATE 28P01 wrong password, 28000 no such role or no pg_hba entry) gets a
 * hint naming the user it tried and where the password came from, never the password.
 */
function withLoginHint(error: unknown, url: string, source: string): unknown {
  if (!(error instanceof UnreachableError)) return error;
  const code = error.details?.code;
  if (code !== '28P01' && code !== '28000') return error;
  const user = userOf(url) ?? 'postgres';
  const hint =
    code === '28P01'
      ? `the server refused user "${user}" with the password from ${source}: check that password (percent-encode special characters in a URL: @ as %40, : as %3A, / as %2F)`
      : `the server refused user "${user}" (from ${source}): the role may not exist there, or pg_hba.conf has no entry for this host, user and database`;
  return new UnreachableError(error.message, { hint, cause: error.cause ?? error, details: error.details });
}
