/**
 * In-process driver of Prisma's WebAssembly schema engine (`@prisma/schema-engine-wasm`).
 *
 * Why: Prisma 7's CLI (`prisma migrate *`, `db pull`, ...) needs a native `schema-engine` binary that
 * it downloads from Prisma's servers. Offline (air-gapped CI, this machine) that download fails. The
 * same engine, compiled to WebAssembly, ships on npm; it talks to PostgreSQL through a driver adapter
 * (`@prisma/adapter-pg`) instead of its own network stack. This module loads it and binds it to
 * PostgreSQL; `scripts/prisma-engine-shim.mjs` uses `openWasmSchemaEngine` to let the official CLI
 * run offline. (dbops applies schema migrations itself, as `prisma migrate deploy` does:
 * prisma-migrations.ts.)
 *
 * Rules kept here: heavy modules (pg, the adapter, the 5 MB wasm) are imported lazily, nothing is
 * printed, every error is a plain `Error` whose message never contains a password or connection string.
 */
import type pg from 'pg';
import { Redactor } from '../config/redact.js';
import { messageOf } from '../errors.js';

// ---------------------------------------------------------------------------------------------
// The WebAssembly engine and its PostgreSQL adapter (shared with scripts/prisma-engine-shim.mjs)
// ---------------------------------------------------------------------------------------------

/** The subset of the engine's API used here; the shim forwards any method by name. */
export interface WasmSchemaEngine {
  free(): void;
  [method: string]: unknown;
}

export interface WasmSchemaEngineHandle {
  engine: WasmSchemaEngine;
  /**
   * The message of an engine error, with the adapter's own errors put back in place of the engine's
   * "External error id#N" (the connection refused, the missing URL, ...). Not redacted.
   */
  errorMessage(error: unknown): string;
  /** Runs `fn` with a short-lived pg client on the main database (not the engine's pool). */
  withClient<T>(fn: (client: pg.ClientBase) => Promise<T>): Promise<T>;
  /** Frees the engine, closes every pool and clears the engine's timers. Idempotent. */
  close(): Promise<void>;
}

export interface OpenWasmSchemaEngineOptions {
  /**
   * The database. Without one the engine still starts, for the calls that need none (`diff` between
   * schema files or from empty, `validate`); a call that connects fails with NO_DATASOURCE_URL.
   */
  url: string | undefined;
  /** Used by `migrate dev` / `diff --from-migrations` instead of a temporary shadow database. */
  shadowDatabaseUrl?: string;
  /** Prisma schema files, passed to the engine as its initial datamodels. */
  schemaFiles?: string[];
}

/** The PostgreSQL connector's first query (schema exists? server version?). */
const STARTUP_PROBE = 'SELECT EXISTS(SELECT 1 FROM pg_namespace WHERE nspname = $1), version()';
/** What the engine is told when there is no database: a plain PostgreSQL (not CockroachDB). */
const OFFLINE_SERVER_VERSION = 'PostgreSQL 16.0';
const OFFLINE_SERVER_VERSION_NUM = 160000;
const COLUMN_TYPE_INT32 = 0;
const COLUMN_TYPE_BOOLEAN = 5;
const COLUMN_TYPE_TEXT = 7;

/** The message of a call that needs a database when none was given. */
export const NO_DATASOURCE_URL = 'no datasource URL: set datasource.url in prisma.config.ts (DATABASE_URL)';

type WasmBindings = typeof import('@prisma/schema-engine-wasm');

interface WasmRuntime {
  bindings: WasmBindings;
  /** Timers the engine has started and not yet seen fire. */
  timers: Set<NodeJS.Timeout>;
}

let runtimePromise: Promise<WasmRuntime> | undefined;

/** Message of the last Rust panic inside the engine (the wasm instance is unusable afterwards). */
export const lastPanic: { message: string | undefined } = { message: undefined };

/**
 * `@prisma/schema-engine-wasm`'s entry point does `import * as wasm from "./schema_engine_bg.wasm"`,
 * which Node 20 only allows behind --experimental-wasm-modules. So the wasm-bindgen glue
 * (`schema_engine_bg.js`) is imported and the module is instantiated by hand, as its entry point would.
 *
 * The engine arms a ~10 s `setTimeout` that keeps Node alive long after the work is done. The glue's
 * `__wbg_setTimeout_*` import is wrapped so every engine timer is unref'd (it never keeps the process
 * alive on its own: while the engine works, its pg sockets do) and remembered, so close() can clear it.
 */
async function loadRuntime(): Promise<WasmRuntime> {
  runtimePromise ??= (async () => {
    const { readFile } = await import('node:fs/promises');
    const { createRequire } = await import('node:module');
    const require = createRequire(import.meta.url);
    const glue = (await import('@prisma/schema-engine-wasm/schema_engine_bg')) as unknown as Record<string, unknown>;
    const { dirname, join } = await import('node:path');
    // the package's exports map does not expose the .wasm file: find it beside the glue module
    const wasmPath = join(
      dirname(require.resolve('@prisma/schema-engine-wasm/schema_engine_bg')),
      'schema_engine_bg.wasm',
    );
    const timers = new Set<NodeJS.Timeout>();
    // A Rust panic inside the engine reports its message here before the call rejects (the CLI sets
    // the same global); without it the panic turns into "Cannot read properties of undefined".
    const g = globalThis as { PRISMA_WASM_PANIC_REGISTRY?: { set_message(message: string): void } };
    g.PRISMA_WASM_PANIC_REGISTRY ??= {
      set_message: (message: string) => {
        lastPanic.message = message;
      },
    };
    const imports: Record<string, unknown> = { ...glue };
    for (const key of Object.keys(glue)) {
      if (!key.startsWith('__wbg_setTimeout_')) continue;
      imports[key] = (callback: () => void, ms: number) => {
        const timer: NodeJS.Timeout = setTimeout(() => {
          timers.delete(timer);
          callback();
        }, ms >>> 0);
        timer.unref();
        timers.add(timer);
        return timer;
      };
    }
    // tsconfig's lib (ES2023, no DOM) has no WebAssembly types: describe the one call used
    const { WebAssembly: wasmApi } = globalThis as unknown as {
      WebAssembly: {
        instantiate(
          bytes: Uint8Array,
          imports: Record<string, Record<string, unknown>>,
        ): Promise<{ instance: { exports: Record<string, unknown> } }>;
      };
    };
    const { instance } = await wasmApi.instantiate(await readFile(wasmPath), { './schema_engine_bg.js': imports });
    const exports = instance.exports as Record<string, unknown> & { __wbindgen_start: () => void };
    (glue.__wbg_set_wasm as (w: unknown) => void)(exports);
    exports.__wbindgen_start();
    return { bindings: glue as unknown as WasmBindings, timers };
  })();
  try {
    return await runtimePromise;
  } catch (error) {
    runtimePromise = undefined;
    throw error;
  }
}

/**
 * Opens the WebAssembly schema engine on a PostgreSQL database. Used by applySchemaMigrations and by
 * the CLI shim; not part of dbops' stable API.
 */
export async function openWasmSchemaEngine(opts: OpenWasmSchemaEngineOptions): Promise<WasmSchemaEngineHandle> {
  const redactor = redactorFor(opts.url, opts.shadowDatabaseUrl);
  const [{ default: pgModule }, { PrismaPg }, utils, runtime, fs] = await Promise.all([
    import('pg'),
    import('@prisma/adapter-pg'),
    import('@prisma/driver-adapter-utils'),
    loadRuntime(),
    import('node:fs/promises'),
  ]);
  type Adapter = import('@prisma/driver-adapter-utils').SqlDriverAdapter;
  const open = new Set<Adapter>();
  const pending = new Set<Promise<unknown>>();
  const requireUrl = (): string => {
    if (opts.url) return opts.url;
    throw new Error(NO_DATASOURCE_URL);
  };

  /**
   * A pg pool for `url`. Its clients hide Postgres' internal `"char"` type (OID 18: pg_class.relkind,
   * pg_constraint.contype, ...) from adapter-pg 7.10, which has no mapping for it and throws
   * "Unsupported column type char" on the engine's introspection queries (db pull, diff, migrate dev).
   * The column is reported as text to adapter-pg, and `withCharColumns` below then gives the engine
   * the `Character` column type it expects for those columns (it panics on `Text` there).
   */
  const makePool = (url: string): pg.Pool => {
    const { schema, config } = pgConfigFor(url);
    const pool = new pgModule.Pool({ ...config, max: 4 });
    pool.on('connect', (client) => patchCharType(client));
    pool.on('error', () => {
      // an idle client died (server restart); the next query reports it
    });
    void schema;
    return pool;
  };

  /**
   * The adapter the engine gets for one database. Two changes to adapter-pg 7.10's own adapter:
   * - executeScript: adapter-pg splits the script on every ";" and runs the pieces one by one, each
   *   in its own implicit transaction. That breaks on ";" inside strings, dollar-quoted bodies and
   *   comments, and leaves a half-applied migration when a later statement fails. The native engine
   *   sends the whole script in one simple-protocol query, which Postgres runs as one implicit
   *   transaction; this does the same (executeRaw with no parameters uses the simple protocol).
   * - dispose: tracked, so close() can end every pool even if the engine never disposes it.
   */
  const connectTo = async (url: string, onDispose?: () => Promise<void>): Promise<Adapter> => {
    const pool = makePool(url);
    const { schema } = pgConfigFor(url);
    const factory = new PrismaPg(pool, { disposeExternalPool: true, ...(schema ? { schema } : {}) });
    const adapter = await factory.connect();
    const originalDispose = adapter.dispose.bind(adapter);
    let disposed: Promise<void> | undefined;
    withCharColumns(adapter);
    const startTransaction = adapter.startTransaction.bind(adapter);
    const wrapped: Adapter = Object.assign(adapter, {
      startTransaction: async (...args: Parameters<Adapter['startTransaction']>) =>
        withCharColumns(await startTransaction(...args)),
      executeScript: async (script: string): Promise<void> => {
        await adapter.executeRaw({ sql: script, args: [], argTypes: [] });
      },
      dispose: (): Promise<void> => {
        // tracked in `pending` so close() waits for a dispose the engine started but did not await
        disposed ??= track(
          (async () => {
            try {
              await originalDispose();
            } finally {
              open.delete(wrapped);
              await onDispose?.();
            }
          })(),
        );
        return disposed;
      },
    });
    open.add(wrapped);
    return wrapped;
  };

  /**
   * Shadow database. adapter-pg 7.10's connectToShadowDb (a) spreads `{ ...config, database }` over a
   * config that holds a connectionString, and pg lets the connection string win, so the "shadow"
   * pool connects to the MAIN database (and the engine then resets it); (b) drops the temporary
   * database before ending its own pool, so the DROP fails ("being accessed by other users") and the
   * database leaks. Here the shadow URL is built by replacing the database in the URL, and the pool
   * is ended before the DROP.
   */
  const connectToShadowDb = async (): Promise<Adapter> => {
    if (opts.shadowDatabaseUrl) return connectTo(opts.shadowDatabaseUrl);
    const mainUrl = requireUrl();
    const name = `prisma_migrate_shadow_db_${globalThis.crypto.randomUUID()}`;
    const admin = new pgModule.Client(pgConfigFor(mainUrl).config);
    admin.on('error', () => {});
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE "${name}"`);
    } finally {
      await admin.end().catch(() => {});
    }
    const shadowUrl = new URL(mainUrl);
    shadowUrl.pathname = `/${name}`;
    return connectTo(shadowUrl.toString(), async () => {
      const dropper = new pgModule.Client(pgConfigFor(mainUrl).config);
      dropper.on('error', () => {});
      try {
        await dropper.connect();
        await dropper.query(`DROP DATABASE IF EXISTS "${name}"`);
      } catch {
        // best effort: a leftover prisma_migrate_shadow_db_* database is harmless
      } finally {
        await dropper.end().catch(() => {});
      }
    });
  };

  /**
   * With no URL: an adapter that answers only the PostgreSQL connector's start-up probe (does the
   * schema exist, which server) and fails every other query with NO_DATASOURCE_URL. The native
   * binary needs no connection to diff schema files; the WebAssembly build always opens its
   * adapter and sends that probe, nothing else, for such a diff.
   */
  const withoutDatabase = (): Adapter => {
    const refuse = async (): Promise<never> => {
      throw new Error(NO_DATASOURCE_URL);
    };
    return {
      provider: 'postgres',
      adapterName: '@prisma/adapter-pg',
      queryRaw: async (query) => {
        if (!query.sql.startsWith(STARTUP_PROBE)) return refuse();
        return {
          columnNames: ['exists', 'version', 'numeric_version'],
          columnTypes: [COLUMN_TYPE_BOOLEAN, COLUMN_TYPE_TEXT, COLUMN_TYPE_INT32] as never,
          rows: [[true, OFFLINE_SERVER_VERSION, OFFLINE_SERVER_VERSION_NUM]],
        };
      },
      executeRaw: refuse,
      executeScript: refuse,
      startTransaction: refuse,
      getConnectionInfo: () => ({ supportsRelationJoins: true }),
      dispose: async () => {},
    };
  };

  const factory = {
    provider: 'postgres' as const,
    adapterName: '@prisma/adapter-pg',
    connect: () => track(opts.url ? connectTo(opts.url) : Promise.resolve(withoutDatabase())),
    connectToShadowDb: () => track(connectToShadowDb()),
  };
  function track<T>(p: Promise<T>): Promise<T> {
    pending.add(p);
    p.then(
      () => pending.delete(p),
      () => pending.delete(p),
    );
    return p;
  }

  const datamodels: [string, string][] = [];
  for (const file of opts.schemaFiles ?? []) datamodels.push([file, await fs.readFile(file, 'utf8')]);

  const bound = utils.bindMigrationAwareSqlAdapterFactory(factory);
  const errorMessage = (error: unknown): string =>
    engineErrorMessage(error).replace(/External error id#(\d+)/g, (text, id: string) => {
      const record = bound.errorRegistry.consumeError(Number(id));
      return record ? messageOf(record.error) : text;
    });
  let engine: WasmSchemaEngine;
  try {
    engine = (await runtime.bindings.SchemaEngine.new(
      { datamodels: datamodels.length > 0 ? datamodels : undefined },
      () => {
        // engine log lines: dbops never prints them
      },
      bound,
    )) as unknown as WasmSchemaEngine;
  } catch (error) {
    await Promise.allSettled([...pending]);
    await Promise.allSettled([...open].map((a) => a.dispose()));
    // `code` keeps the engine's Prisma error code (P1000 authentication, P1001 unreachable, P1003 no
    // database), which the CLI shim reports back to the official CLI.
    const code = (error as { code?: unknown } | null)?.code;
    throw Object.assign(
      new Error(`cannot start the schema engine: ${redactor.redact(errorMessage(error))}`),
      typeof code === 'string' ? { code } : {},
    );
  }

  let closed: Promise<void> | undefined;
  return {
    engine,
    errorMessage,
    withClient: async (fn) => {
      const client = new pgModule.Client(pgConfigFor(requireUrl()).config);
      client.on('error', () => {});
      await client.connect();
      try {
        return await fn(client);
      } finally {
        await client.end().catch(() => {});
      }
    },
    close: () => {
      closed ??= (async () => {
        try {
          engine.free();
        } catch {
          // already freed
        }
        await Promise.allSettled([...pending]);
        await Promise.allSettled([...open].map((a) => a.dispose()));
        for (const timer of runtime.timers) clearTimeout(timer);
        runtime.timers.clear();
      })();
      return closed;
    },
  };
}

/**
 * pg config for a Prisma-style URL. Prisma's `?schema=` parameter is not a pg parameter: it becomes
 * the adapter's schema and the session's search_path, as the native engine does.
 */
function pgConfigFor(url: string): { schema: string | undefined; config: pg.ClientConfig } {
  let schema: string | undefined;
  let connectionString = url;
  try {
    const parsed = new URL(url);
    schema = parsed.searchParams.get('schema') ?? undefined;
    if (schema !== undefined) {
      parsed.searchParams.delete('schema');
      connectionString = parsed.toString();
    }
  } catch {
    // not a URL pg cannot parse either; pg reports it
  }
  const config: pg.ClientConfig = { connectionString };
  if (schema) config.options = `-c search_path="${schema.replaceAll('"', '""')}"`;
  return { schema, config };
}

const PG_CHAR_OID = 18;
const PG_TEXT_OID = 25;
/** driver-adapter-utils' ColumnTypeEnum.Character. */
const COLUMN_TYPE_CHARACTER = 6;

/** Result rows array -> indexes of its `"char"` columns (the adapter passes pg's rows array through). */
const charColumns = new WeakMap<object, number[]>();

function patchCharType(client: pg.PoolClient): void {
  const fix = <R>(result: R): R => {
    for (const r of Array.isArray(result) ? result : [result]) {
      const res = r as { fields?: { dataTypeID: number }[]; rows?: unknown[] } | undefined;
      if (!res?.fields || !res.rows) continue;
      const indexes: number[] = [];
      res.fields.forEach((f, i) => {
        if (f.dataTypeID !== PG_CHAR_OID) return;
        f.dataTypeID = PG_TEXT_OID;
        indexes.push(i);
      });
      if (indexes.length > 0) charColumns.set(res.rows, indexes);
    }
    return result;
  };
  const original = client.query as unknown as (...args: unknown[]) => unknown;
  const patched = function (this: unknown, ...args: unknown[]): unknown {
    const last = args.at(-1);
    if (typeof last === 'function') {
      args[args.length - 1] = (err: unknown, res: unknown) =>
        (last as (e: unknown, r: unknown) => void)(err, err ? res : fix(res));
      return original.apply(this, args);
    }
    const out = original.apply(this, args);
    return out instanceof Promise ? out.then(fix) : out;
  };
  client.query = patched as unknown as typeof client.query;
}

type Queryable = Pick<import('@prisma/driver-adapter-utils').SqlQueryable, 'queryRaw'>;

/** Wraps queryRaw so `"char"` columns (see patchCharType) are reported as Character. */
function withCharColumns<T extends Queryable>(target: T): T {
  const queryRaw = target.queryRaw.bind(target);
  target.queryRaw = async (query) => {
    const result = await queryRaw(query);
    for (const i of charColumns.get(result.rows) ?? []) result.columnTypes[i] = COLUMN_TYPE_CHARACTER as never;
    return result;
  };
  return target;
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/**
 * dbops' one Redactor (src/config/redact.ts) primed with the passwords of these URLs: every message
 * built here, and every message the CLI shim sends back to the official CLI, goes through it.
 */
export function redactorFor(...urls: (string | undefined)[]): Redactor {
  const redactor = new Redactor();
  for (const url of urls) redactor.addUrl(url);
  return redactor;
}

/** The engine's message without the Rust span trace ("   0: sql_schema_connector::..." lines) it appends. */
export function engineErrorMessage(error: unknown): string {
  return stripSpanTrace(rawEngineMessage(error));
}

function stripSpanTrace(message: string): string {
  const lines = message.split('\n');
  const at = lines.findIndex((line) => /^\s+\d+: \S/.test(line));
  return (at === -1 ? lines : lines.slice(0, at)).join('\n').trimEnd();
}

function rawEngineMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === 'string') return error;
  if (error && typeof error === 'object') {
    const e = error as { message?: unknown; error?: unknown };
    if (typeof e.message === 'string') return e.message;
    if (typeof e.error === 'string') return e.error;
    try {
      return JSON.stringify(error);
    } catch {
      // fall through
    }
  }
  return String(error);
}
