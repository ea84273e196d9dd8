/**
 * The only writer to stdout and stderr. Results go to stdout (a table for people, or exactly one
 * JSON document with --json); logs, progress and prompts go to stderr. Every byte passes through
 * the Redactor, so no password is ever printed.
 */
import { createInterface } from 'node:readline/promises';
import type { ChalkInstance } from 'chalk';
import { Chalk } from 'chalk';
import type { Redactor } from '../config/redact.js';
import type { TerminalPolicy } from './terminal.js';

export interface Writable {
  write(chunk: string): unknown;
  isTTY?: boolean;
}

export interface OutputOptions {
  stdout: Writable;
  stderr: Writable;
  stdin?: NodeJS.ReadableStream;
  json: boolean;
  quiet: boolean;
  verbose: boolean;
  terminal: TerminalPolicy;
  redactor: Redactor;
  env: Record<string, string | undefined>;
}

/** A spinner or progress line; a no-op or throttled plain lines where animation is off. */
export interface Progress {
  update(text: string): void;
  succeed(text?: string): void;
  fail(text?: string): void;
  warn(text?: string): void;
  stop(): void;
}

/** Logger handed to core code (it never prints by itself). */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  debug(message: string): void;
}

export class Output implements Logger {
  readonly json: boolean;
  readonly quiet: boolean;
  readonly verbose: boolean;
  readonly terminal: TerminalPolicy;
  readonly c: ChalkInstance;
  readonly redactor: Redactor;
  private readonly opts: OutputOptions;
  private resultWritten = false;

  constructor(opts: OutputOptions) {
    this.opts = opts;
    this.json = opts.json;
    this.quiet = opts.quiet;
    this.verbose = opts.verbose;
    this.terminal = opts.terminal;
    this.redactor = opts.redactor;
    this.c = new Chalk({ level: opts.terminal.colour ? 1 : 0 });
  }

  /** Write the command's result: `doc` as one JSON document with --json, else `human()` to stdout. */
  result(doc: unknown, human: () => string): void {
    if (this.json) {
      if (this.resultWritten) throw new Error('internal: a command wrote two JSON results');
      this.resultWritten = true;
      this.stdout(`${JSON.stringify(doc, jsonReplacer, 2)}\n`);
    } else {
      const text = human();
      if (text) this.stdout(text.endsWith('\n') ? text : `${text}\n`);
    }
  }

  get hasResult(): boolean {
    return this.resultWritten;
  }

  stdout(text: string): void {
    this.opts.stdout.write(this.redactor.redact(text));
  }

  /** One frame of a refreshing view: on a terminal the screen is cleared first; elsewhere frames follow each other. */
  frame(text: string): void {
    this.stdout(`${this.opts.stdout.isTTY ? '\x1b[2J\x1b[H' : '\n'}${text}\n`);
  }

  stderr(text: string): void {
    this.opts.stderr.write(this.redactor.redact(text.endsWith('\n') ? text : `${text}\n`));
  }

  info(message: string): void {
    if (!this.quiet) this.stderr(message);
  }

  /**
   * The target line (`→ postgresql://app@db.internal:5432/shop (DATABASE_URL from .env)`), not passed
   * through the redactor: it masks a whole connection string with a user and no password, and this
   * line is built from the parsed URL's user, host, port and database only, never its password or
   * query. Under --quiet it is not written.
   */
  target(line: string): void {
    if (!this.quiet) this.opts.stderr.write(`${line}\n`);
  }

  warn(message: string): void {
    this.stderr(`${this.c.yellow('warning:')} ${message}`);
  }

  debug(message: string): void {
    if (this.verbose) this.stderr(this.c.dim(message));
  }

  /** A spinner on a TTY; elsewhere plain lines, at most one per `plainEveryMs` for updates. */
  async progress(text: string, plainEveryMs = 5000): Promise<Progress> {
    // A pseudo-terminal can report 0 columns (script(1), some `docker run -t`): ora would then
    // compute infinitely many lines to clear. Animate only on a terminal with a width.
    const columns = (this.opts.stderr as { columns?: number }).columns ?? 0;
    if (this.terminal.animate && columns > 0) {
      const { default: ora } = await import('ora');
      const spinner = ora({ text: this.redactor.redact(text), stream: this.opts.stderr as NodeJS.WritableStream, color: 'cyan' }).start();
      return {
        update: (t) => {
          spinner.text = this.redactor.redact(t);
        },
        succeed: (t) => spinner.succeed(t === undefined ? undefined : this.redactor.redact(t)),
        fail: (t) => spinner.fail(t === undefined ? undefined : this.redactor.redact(t)),
        warn: (t) => spinner.warn(t === undefined ? undefined : this.redactor.redact(t)),
        stop: () => spinner.stop(),
      };
    }
    let last = Date.now();
    const plain = !this.quiet && !this.json;
    if (plain && text) this.stderr(text);
    return {
      update: (t) => {
        const now = Date.now();
        if (plain && now - last >= plainEveryMs) {
          last = now;
          this.stderr(t);
        }
      },
      succeed: (t) => {
        if (plain && t) this.stderr(t);
      },
      fail: (t) => {
        if (t) this.stderr(t);
      },
      warn: (t) => {
        if (t) this.stderr(t);
      },
      stop: () => {},
    };
  }

  /** Ask yes/no on the terminal. Returns false without asking when there is no TTY. */
  async confirm(question: string): Promise<boolean> {
    if (!this.terminal.interactive || !this.opts.stdin) return false;
    const rl = createInterface({ input: this.opts.stdin, output: this.opts.stderr as NodeJS.WritableStream });
    try {
      const answer = await rl.question(`${this.redactor.redact(question)} [y/N] `);
      return /^y(es)?$/i.test(answer.trim());
    } finally {
      rl.close();
    }
  }

  /** Is this a GitHub Actions run (for workflow annotations)? */
  get githubActions(): boolean {
    return this.opts.env.GITHUB_ACTIONS === 'true';
  }

  /** True once this command wrote a workflow error annotation. */
  annotated = false;

  /** A GitHub Actions error annotation (only when GITHUB_ACTIONS=true). */
  annotate(title: string, message: string): void {
    if (!this.githubActions) return;
    this.annotated = true;
    this.opts.stderr.write(this.redactor.redact(githubAnnotation(title, message)));
  }
}

/** BigInt as number when safe (else string), Date as ISO, Buffer as its binary-safe escape. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') {
    return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(value) : value.toString();
  }
  if (value && typeof value === 'object' && (value as { type?: string }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)) {
    return Buffer.from((value as { data: number[] }).data).toString('latin1');
  }
  return value;
}

/** A GitHub Actions `::error` workflow command, with its data and title escaped as the runner requires. */
export function githubAnnotation(title: string, message: string): string {
  const data = (v: string) => v.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
  const prop = (v: string) => data(v).replace(/:/g, '%3A').replace(/,/g, '%2C');
  return `::error title=${prop(title)}::${data(message)}\n`;
}
