/**
 * Builds the commander program and runs one command line. Testable without spawning a process:
 * `runCli(args, io)` returns the exit code. Command groups live in `commands/`; each imports its
 * heavy modules (pg, Prisma, ioredis, ora) only inside its action, so `--help` stays fast.
 */
import { Command, CommanderError, Option } from 'commander';
import { type ResolvedConfig, resolveConfig } from '../config/config.js';
import { isSecretName, Redactor } from '../config/redact.js';
import { type DbopsError, ExitCode, InterruptedError, isDbopsError, messageOf, UsageError } from '../errors.js';
import { githubAnnotation, jsonReplacer, Output, PromptCancelled, type Writable } from '../output/output.js';
import { decideTerminal } from '../output/terminal.js';
import { decideTableWidth, setTableWidth } from '../output/width.js';
import { registerCache } from './commands/cache.js';
import { registerConfig } from './commands/config.js';
import { registerDoctor } from './commands/doctor.js';
import { registerEmbedded } from './commands/embedded.js';
import { registerMigrate } from './commands/migrate.js';
import { registerPool } from './commands/pool.js';
import { registerSlow } from './commands/slow.js';
import { CommandContext } from './context.js';
import type { Runner } from './handler.js';
import { connectTimeoutArg } from './options.js';
import { VERSION } from './version.js';

export interface CliIO {
  stdout: Writable;
  stderr: Writable;
  stdin?: NodeJS.ReadableStream;
  env: Record<string, string | undefined>;
  cwd: string;
  /** Run by the entry point before it ends the process at a second Ctrl-C (restore the terminal). */
  cleanups?: Set<() => void>;
  /** Aborted on SIGINT/SIGTERM by the entry point. */
  signal?: AbortSignal;
  /**
   * Ends the process at once with 130 (the entry point's; cleanups first). Called at the first
   * Ctrl-C when the running command has no step to finish: a report, a status, a prompt's caller.
   */
  stopNow?: () => void;
}

export interface GlobalOptions {
  databaseUrl?: string;
  directDatabaseUrl?: string;
  redisUrl?: string;
  replicaUrl?: string[];
  clickhouseUrl?: string;
  config?: string;
  json?: boolean;
  color?: boolean;
  quiet?: boolean;
  verbose?: boolean;
  timeout?: number;
}

interface RunState {
  output: Output | undefined;
  redactor: Redactor;
  /** The running command stops by itself at Ctrl-C after its current step (it watches the signal). */
  graceful: boolean;
}

function buildOutput(io: CliIO, globals: GlobalOptions, redactor: Redactor): Output {
  const json = Boolean(globals.json);
  const quiet = Boolean(globals.quiet);
  const terminal = decideTerminal({
    env: io.env,
    stdoutIsTTY: Boolean(io.stdout.isTTY),
    stderrIsTTY: Boolean(io.stderr.isTTY),
    stdinIsTTY: Boolean((io.stdin as { isTTY?: boolean } | undefined)?.isTTY),
    json,
    noColorFlag: globals.color === false,
    quiet,
  });
  setTableWidth(decideTableWidth(io.env, io.stdout as { isTTY?: boolean; columns?: number }));
  return new Output({
    stdout: io.stdout,
    stderr: io.stderr,
    ...(io.stdin ? { stdin: io.stdin } : {}),
    json,
    quiet,
    verbose: Boolean(globals.verbose),
    terminal,
    redactor,
    env: io.env,
  });
}

export function buildProgram(io: CliIO, state: RunState): Command {
  const program = new Command('dbops');
  program
    .description(
      'Database operations for Prisma 7 on PostgreSQL (behind PgBouncer) with Redis:\ndata migrations, slow-query reports, cache invalidation and pool diagnostics.',
    )
    .version(VERSION, '-V, --version', 'print the version')
    .option(
      '--database-url <url>',
      'PostgreSQL connection string (overrides DATABASE_URL; a DIRECT_DATABASE_URL from the environment or files is then ignored)',
    )
    .option(
      '--direct-database-url <url>',
      'direct PostgreSQL connection for migrations, locks and diagnostics, bypassing PgBouncer (overrides DIRECT_DATABASE_URL)',
    )
    .option('--redis-url <url>', 'Redis connection string (overrides REDIS_URL)')
    .option(
      '--replica-url <url>',
      'a streaming read replica (repeatable; overrides DATABASE_REPLICA_URLS)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option(
      '--clickhouse-url <url>',
      'ClickHouse HTTP interface, http(s)://user:password@host:8123/db (overrides CLICKHOUSE_URL)',
    )
    .option('--config <file>', 'config file (default: dbops.config.json in the working directory)')
    .addOption(
      new Option('--timeout <duration>', 'connect timeout, e.g. 5s (default 5s or DBOPS_CONNECT_TIMEOUT_MS)').argParser(
        connectTimeoutArg,
      ),
    )
    .option('--json', 'write one JSON document to stdout; logs go to stderr')
    .option('--no-color', 'no colour (NO_COLOR and FORCE_COLOR are honoured too)')
    .option('-q, --quiet', 'only results and errors')
    .option('-v, --verbose', 'more detail, and stack traces on errors')
    .showSuggestionAfterError(true)
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(state.redactor.redact(s)),
      // Commander's own errors are re-printed as one line by runCli.
      outputError: () => {},
    });

  const run: Runner =
    (handler) =>
    async (...actionArgs: unknown[]) => {
      const command = actionArgs[actionArgs.length - 1] as Command;
      const opts = actionArgs[actionArgs.length - 2] as Record<string, unknown>;
      const positional = actionArgs
        .slice(0, -2)
        .flatMap((a) => (Array.isArray(a) ? a.map(String) : a === undefined ? [] : [String(a)]));
      const globals = command.optsWithGlobals() as GlobalOptions;
      state.output = buildOutput(io, globals, state.redactor);
      await state.output.prepare();
      // A second Ctrl-C ends the process at once: the terminal is given back first.
      const output = state.output;
      io.cleanups?.add(() => output.restoreTerminal());
      const config: ResolvedConfig = resolveConfig({
        env: io.env,
        cwd: io.cwd,
        configFile: globals.config,
        flags: {
          DATABASE_URL: globals.databaseUrl,
          DIRECT_DATABASE_URL: globals.directDatabaseUrl,
          REDIS_URL: globals.redisUrl,
          CLICKHOUSE_URL: globals.clickhouseUrl,
          DATABASE_REPLICA_URLS: globals.replicaUrl?.join(','),
        },
        redactor: state.redactor,
      });
      const ctx = new CommandContext({
        config,
        out: state.output,
        env: io.env,
        signal: io.signal ?? new AbortController().signal,
        timeoutMs: globals.timeout,
        onGraceful: () => {
          state.graceful = true;
        },
      });
      try {
        await handler(ctx, { ...opts, ...globals } as never, positional);
      } finally {
        await ctx.close();
      }
    };

  registerDoctor(program, run);
  registerConfig(program, run);
  registerMigrate(program, run);
  registerCache(program, run);
  registerSlow(program, run);
  registerPool(program, run);
  registerEmbedded(program, run);

  // Generated from the definitions above; no configuration is read, nothing connects.
  program
    .command('completion')
    .description('print a shell completion script: source <(dbops completion bash), dbops completion fish | source')
    .argument('<shell>', 'bash, zsh or fish')
    .action(async (shell: string) => {
      const { bashCompletion, fishCompletion, zshCompletion } = await import('./completion.js');
      const make = { bash: bashCompletion, zsh: zshCompletion, fish: fishCompletion }[shell];
      if (!make)
        throw new UsageError(`no completion for shell "${shell}"`, {
          hint: 'dbops completion bash, dbops completion zsh or dbops completion fish',
        });
      io.stdout.write(make(program));
    });
  program
    .command('man')
    .description('print the manual page (roff): dbops man | man -l -   (docs/dbops.1 is the same text)')
    .action(async () => {
      const { manPage } = await import('./completion.js');
      io.stdout.write(manPage(program, VERSION));
    });
  return program;
}

/** Parse and run one command line; returns the exit code. Never throws. */
export async function runCli(args: string[], io: CliIO): Promise<number> {
  // Secrets given on the command line or in the environment are learnt before anything is parsed;
  // .env and the config file are learnt by resolveConfig as it reads them.
  const redactor = seedRedactor(args, io.env);
  const state: RunState = { output: undefined, redactor, graceful: false };
  const program = buildProgram(io, state);
  // The first Ctrl-C asks the running step to finish; say so where the person looks (above a
  // spinner, not through it). The entry point ends the process at the second.
  io.signal?.addEventListener(
    'abort',
    () => {
      const signal = String(io.signal?.reason ?? 'SIGINT');
      // A command with no step to finish (a report, a status) stops at once; one that watches the
      // signal finishes its step (a batch, a migration) and says what is left.
      if (!state.graceful && io.stopNow !== undefined) {
        state.output?.restoreTerminal();
        io.stderr.write('\n');
        // The same error path as any other: one line, a hint, with --json one document.
        const stopped = new InterruptedError(`${signal} received: stopped`, {
          hint: 'this command had no step to finish; run it again when you are ready',
        });
        reportError(stopped, io, state, false, args.includes('--json'));
        io.stopNow();
        return;
      }
      const text = `\n${signal} received: stopping after the current step (press Ctrl-C again to stop at once)`;
      if (state.output) state.output.notice(text);
      else io.stderr.write(`${text}\n`);
    },
    { once: true },
  );
  try {
    await program.parseAsync(args, { from: 'user' });
    return ExitCode.Ok;
  } catch (error) {
    if (error instanceof CommanderError) return commanderExit(error, io, redactor, args.includes('--json'));
    return reportError(error, io, state, args.includes('--verbose') || args.includes('-v'), args.includes('--json'));
  }
}

/**
 * A Redactor that knows every secret of the command line and the environment: each secret-named
 * variable (`*_URL`, `*PASSWORD*`, ...), the value of each `--...-url`/`--...password` option in
 * either spelling, and the credential-shaped pieces of every other argument.
 */
export function seedRedactor(args: string[], env: Record<string, string | undefined>): Redactor {
  const redactor = new Redactor();
  for (const [name, value] of Object.entries(env)) if (isSecretName(name)) redactor.addNamed(name, value);
  args.forEach((arg, i) => {
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const option = eq === -1 ? arg : arg.slice(0, eq);
    if (eq !== -1 && isSecretName(option.replace(/^--/, '').replace(/-/g, '_'))) redactor.addUrl(arg.slice(eq + 1));
    const previous = args[i - 1];
    if (
      previous?.startsWith('--') &&
      !previous.includes('=') &&
      isSecretName(previous.replace(/^--/, '').replace(/-/g, '_'))
    )
      redactor.addUrl(arg);
    redactor.scan(arg);
  });
  return redactor;
}

function commanderExit(error: CommanderError, io: CliIO, redactor: Redactor, json: boolean): number {
  if (['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(error.code)) return ExitCode.Ok;
  if (error.code === 'commander.executeSubCommandAsync') return ExitCode.Ok;
  // One line: "error: unknown command 'migrat' (Did you mean migrate?)"
  const line = error.message
    .replace(/^error:\s*/i, '')
    .replace(/\n+/g, ' ')
    .trim();
  const hint =
    error.code === 'commander.unknownOption'
      ? `an argument that starts with "-" (a cache pattern, a name) goes after --, e.g. dbops cache keys -- '-tmp:*'; see dbops <command> --help`
      : 'see dbops --help, or dbops <command> --help';
  if (json) {
    // --json promises one document on stdout, also for a command line that did not parse.
    const doc = { ok: false, error: { code: 'USAGE', message: line, hint, exitCode: ExitCode.Usage } };
    io.stdout.write(redactor.redact(`${JSON.stringify(doc, null, 2)}\n`));
  }
  io.stderr.write(redactor.redact(`dbops: ${line}\n  hint: ${hint}\n`));
  return ExitCode.Usage;
}

function reportError(error: unknown, io: CliIO, state: RunState, verbose: boolean, json: boolean): number {
  const redact = (s: string) => state.redactor.redact(s);
  // Ctrl-C at a [y/N] prompt is the person's answer, not a fault of dbops.
  if (error instanceof PromptCancelled)
    error = new InterruptedError(error.message, { hint: 'run the command again when you are ready' });
  const err: DbopsError | undefined = isDbopsError(error) ? error : undefined;
  const exitCode = err?.exitCode ?? ExitCode.Failed;
  const message = err ? err.message : `unexpected error: ${messageOf(error)}`;
  const oneLine = message.split('\n')[0] ?? message;
  const hint =
    err?.hint ?? (err ? undefined : 'this is a bug in dbops; run again with --verbose and report the stack trace');
  if (json && state.output && !state.output.hasResult) {
    // What the command did before it failed (a migration run's outcomes) comes first, then the error.
    const doc = {
      ...err?.result,
      ok: false,
      error: {
        code: err?.code ?? 'INTERNAL',
        message: oneLine,
        hint,
        exitCode,
        ...(err?.details ? { details: err.details } : {}),
      },
    };
    io.stdout.write(redact(`${JSON.stringify(doc, jsonReplacer, 2)}\n`));
  }
  if (err instanceof UsageError || err?.exitCode === ExitCode.Usage) {
    io.stderr.write(redact(`dbops: ${oneLine}\n`));
  } else {
    io.stderr.write(redact(`error: ${oneLine}\n`));
  }
  if (hint) io.stderr.write(redact(`  hint: ${hint}\n`));
  // One annotation per failure: a command that already annotated (naming the migration) is not repeated.
  if (state.output?.githubActions && !state.output.annotated)
    io.stderr.write(redact(githubAnnotation('dbops', oneLine)));
  if (verbose) {
    let cur: unknown = error;
    let depth = 0;
    while (cur instanceof Error && depth < 5) {
      io.stderr.write(redact(`${depth === 0 ? '' : 'caused by: '}${cur.stack ?? cur.message}\n`));
      cur = cur.cause;
      depth++;
    }
  }
  return exitCode;
}
