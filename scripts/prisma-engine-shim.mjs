#!/usr/bin/env node
// Stand-in for Prisma's native `schema-engine` binary, for offline use of the official CLI:
//
//   PRISMA_SCHEMA_ENGINE_BINARY=node_modules/dbops/scripts/prisma-engine-shim.mjs npx prisma migrate status
//
// Prisma 7's CLI downloads a native schema engine before any migrate/db command; offline that fails.
// This script speaks the binary's interface and forwards to the WebAssembly build of the same engine
// (@prisma/schema-engine-wasm), driven through @prisma/adapter-pg by dbops' src/db/schema-engine.ts:
//
//   shim --version                                        prints the engine version
//   shim --datasource JSON cli can-connect-to-database    exit 0, or JSON error lines on stderr + exit 1
//   shim --datasource JSON cli create-database            CREATE DATABASE (used by migrate dev / db push)
//   shim --datasource JSON cli drop-database              DROP DATABASE
//   shim [--datamodels FILE]... [--datasource JSON]       JSON-RPC 2.0, one message per line on stdin/stdout
//
// stdout carries only protocol messages; nothing is logged. See docs/prisma-offline.md.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** Engine commit of prisma 7.10.0 (= @prisma/schema-engine-wasm's version suffix). */
const ENGINE_VERSION = '0edf323efd1d98336f3f0a68684b56f689b900d3';

const here = dirname(fileURLToPath(import.meta.url));

/**
 * dbops' engine driver: the TypeScript source through jiti in a checkout (always current, works
 * before `npm run build`), the compiled module in an installed package (src/ is not published).
 */
let driverPromise;
function loadDriver() {
  driverPromise ??= importDriver();
  return driverPromise;
}

async function importDriver() {
  const source = join(here, '..', 'src', 'db', 'schema-engine.ts');
  if (existsSync(source)) {
    const { createJiti } = await import('jiti');
    return createJiti(import.meta.url).import(source);
  }
  return import(pathToFileURL(join(here, '..', 'dist', 'src', 'db', 'schema-engine.js')).href);
}

function parseArgs(argv) {
  const out = { datamodels: [], datasource: undefined, cli: undefined, version: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--version' || arg === '-V') out.version = true;
    else if (arg === '--datamodels') out.datamodels.push(argv[++i]);
    else if (arg === '--datasource') out.datasource = JSON.parse(argv[++i] ?? '{}');
    else if (arg === '--enabled-preview-features' || arg === '--extension-types') i++;
    else if (arg === 'cli') out.cli = argv[++i];
  }
  return out;
}

/** Prisma error code for a pg connection error (what the native engine would report). */
function pgErrorCode(error) {
  switch (error?.code) {
    case '3D000':
      return 'P1003';
    case '28P01':
    case '28000':
      return 'P1000';
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
      return 'P1001';
    case 'ETIMEDOUT':
      return 'P1002';
    case '42P04':
      return 'P1009';
    default:
      return undefined;
  }
}

async function runCli(command, datasource) {
  const url = datasource?.url ?? '';
  const redactor = (await loadDriver()).redactorFor(url, datasource?.shadowDatabaseUrl);
  const { default: pg } = await import('pg');
  const target = new URL(url);
  const database = decodeURIComponent(target.pathname.replace(/^\//, '')) || 'postgres';
  const connect = async (db) => {
    const u = new URL(url);
    u.pathname = `/${encodeURIComponent(db)}`;
    u.searchParams.delete('schema');
    const client = new pg.Client({ connectionString: u.toString() });
    client.on('error', () => {});
    await client.connect();
    return client;
  };
  const quoted = `"${database.replaceAll('"', '""')}"`;
  let client;
  try {
    if (command === 'can-connect-to-database') {
      client = await connect(database);
    } else if (command === 'create-database') {
      client = await connect('postgres');
      await client.query(`CREATE DATABASE ${quoted}`);
    } else if (command === 'drop-database') {
      client = await connect('postgres');
      await client.query(`DROP DATABASE ${quoted}`);
    } else {
      throw Object.assign(new Error(`unsupported schema-engine cli command: ${command}`), { code: undefined });
    }
    return 0;
  } catch (error) {
    let message = redactor.redact(error?.message ?? String(error));
    const code = pgErrorCode(error);
    if (code === 'P1003') message = `Database \`${database}\` does not exist`;
    // The CLI skips the first stderr line and parses the rest as the engine's JSON log lines.
    process.stderr.write('schema-engine shim: error\n');
    process.stderr.write(
      `${JSON.stringify({
        timestamp: new Date().toISOString(),
        level: 'ERROR',
        target: 'schema_engine::logger',
        fields: { message, ...(code ? { error_code: code } : {}) },
      })}\n`,
    );
    return 1;
  } finally {
    await client?.end().catch(() => {});
  }
}

/** RPC method names of the native binary that the wasm engine spells differently or lacks. */
function method(handle, name, params, datasource) {
  const engine = handle.engine;
  switch (name) {
    case 'getDatabaseVersion':
      return engine.version(params ?? null);
    case 'createDatabase':
      return runCliAsRpc('create-database', datasource);
    case 'ensureConnectionValidity':
    case 'applyMigrations':
    case 'createMigration':
    case 'dbExecute':
    case 'devDiagnostic':
    case 'diagnoseMigrationHistory':
    case 'diff':
    case 'evaluateDataLoss':
    case 'introspect':
    case 'introspectSql':
    case 'markMigrationApplied':
    case 'markMigrationRolledBack':
    case 'reset':
    case 'schemaPush':
      return engine[name](params);
    case 'debugPanic':
      return engine.debugPanic();
    default:
      throw Object.assign(new Error(`the WebAssembly schema engine has no method ${name}`), { code: undefined });
  }
}

async function runCliAsRpc(command, datasource) {
  const saved = process.stderr.write;
  process.stderr.write = () => true;
  try {
    const code = await runCli(command, datasource);
    if (code !== 0) throw new Error(`${command} failed`);
    return { databaseName: new URL(datasource.url).pathname.slice(1) };
  } finally {
    process.stderr.write = saved;
  }
}

async function serve(args) {
  const driver = await loadDriver();
  const url = args.datasource?.url || undefined;
  const shadowDatabaseUrl = args.datasource?.shadowDatabaseUrl || undefined;
  const redactor = driver.redactorFor(url, shadowDatabaseUrl);
  let handlePromise;
  // Without a URL the engine still serves the calls that need no database (diff of schema files).
  const engine = () => {
    handlePromise ??= driver.openWasmSchemaEngine({ url, shadowDatabaseUrl, schemaFiles: args.datamodels });
    return handlePromise;
  };
  const send = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);
  const inflight = new Set();
  const openIds = new Set();
  // Requests from the engine to the CLI (the native binary's `print`), answered by id.
  const ours = new Map();
  let nextId = 0;
  const ask = (method, params) =>
    new Promise((resolve) => {
      const id = `shim-${++nextId}`;
      ours.set(id, resolve);
      send({ jsonrpc: '2.0', id, method, params });
    });
  const call = async (handle, request) => {
    const result = await method(handle, request.method, request.params, args.datasource);
    // The native engine prints a diff through the CLI (a `print` request, which the CLI writes to
    // stdout or captures for -o); the WebAssembly build returns it as `stdout` instead.
    if (request.method === 'diff' && result && typeof result.stdout === 'string') {
      const { stdout, ...rest } = result;
      await ask('print', { content: stdout });
      return rest;
    }
    return result;
  };
  // A Rust panic in the engine surfaces as an uncaught WebAssembly.RuntimeError, not as a rejected
  // call, and leaves the instance unusable. Answer the open requests as the binary would (is_panic)
  // and exit with the binary's panic code, 101.
  process.on('uncaughtException', (error) => {
    const message = redactor.redact(driver.lastPanic?.message ?? error?.message ?? String(error));
    for (const id of openIds) {
      send({ jsonrpc: '2.0', id, error: { code: 4466, message, data: { is_panic: true, message, meta: {} } } });
    }
    process.stderr.write(`${JSON.stringify({ level: 'ERROR', fields: { message, is_panic: true } })}\n`);
    process.exit(101);
  });
  const lines = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
  lines.on('line', (line) => {
    if (!line.trim()) return;
    let request;
    try {
      request = JSON.parse(line);
    } catch {
      return;
    }
    if (request.method === undefined) {
      // the CLI's answer to a request of ours
      ours.get(request.id)?.(request.result);
      ours.delete(request.id);
      return;
    }
    openIds.add(request.id);
    const work = (async () => {
      try {
        const handle = await engine();
        const result = await call(handle, request);
        send({ jsonrpc: '2.0', id: request.id, result: result ?? {} });
      } catch (error) {
        const isPanic = error instanceof WebAssembly.RuntimeError;
        const handle = await handlePromise?.catch(() => undefined);
        const raw = isPanic
          ? (driver.lastPanic?.message ?? error.message)
          : (handle?.errorMessage(error) ?? driver.engineErrorMessage(error));
        const message = redactor.redact(raw);
        const errorCode = typeof error?.code === 'string' && /^P\d{4}$/.test(error.code) ? error.code : undefined;
        send({
          jsonrpc: '2.0',
          id: request.id,
          error: {
            code: 4466,
            message: 'An error happened. Check the data field for details.',
            data: { is_panic: isPanic, message, meta: {}, ...(errorCode ? { error_code: errorCode } : {}) },
          },
        });
      }
    })();
    inflight.add(work);
    work.finally(() => {
      inflight.delete(work);
      openIds.delete(request.id);
    });
  });
  // The CLI ends our stdin and, on Linux, sends SIGTERM at once (its stop() kill timeout is 0 ms).
  // Either way: finish the requests in flight, then close the engine (pools, temporary shadow
  // databases, timers) before exiting.
  let closing;
  const shutdown = () => {
    closing ??= (async () => {
      await Promise.allSettled([...inflight]);
      if (handlePromise) await (await handlePromise.catch(() => undefined))?.close();
    })();
    return closing;
  };
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.once(signal, () => {
      shutdown().finally(() => process.exit(0));
    });
  }
  await new Promise((resolve) => lines.once('close', resolve));
  await shutdown();
  return 0;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.version) {
    process.stdout.write(`schema-engine-cli ${ENGINE_VERSION}\n`);
    return 0;
  }
  if (args.cli) return runCli(args.cli, args.datasource);
  return serve(args);
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (error) => {
    // the datasource's password, also when the failure came before the driver was loaded
    let datasource;
    try {
      datasource = parseArgs(process.argv.slice(2)).datasource;
    } catch {
      // unparsable arguments: no URL to add, the Redactor's patterns still apply
    }
    const redactor = await loadDriver().then(
      (driver) => driver.redactorFor(datasource?.url, datasource?.shadowDatabaseUrl),
      () => undefined,
    );
    const message = error?.message ?? String(error);
    process.stderr.write(
      `schema-engine shim: ${redactor ? redactor.redact(message) : "failed (the message is withheld: dbops' redactor could not be loaded)"}\n`,
    );
    process.exitCode = 1;
  },
);
