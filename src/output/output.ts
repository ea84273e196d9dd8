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
import { getTableWidth } from './width.js';

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
      // Lines wider than the terminal (or COLUMNS) fold at spaces with a hanging indent, rather than
      // being broken mid-word by the terminal; tables were already fitted to the same width.
      const width = getTableWidth();
      const raw = human();
      const text = width
        ? raw
            .split('\n')
            .flatMap((line) => foldLine(line, width, 2))
            .join('\n')
        : raw;
      if (text) this.stdout(text.endsWith('\n') ? text : `${text}\n`);
    }
  }

  get hasResult(): boolean {
    return this.resultWritten;
  }

  stdout(text: string): void {
    this.opts.stdout.write(this.redactor.redact(text));
  }

  /**
   * One frame of a refreshing view (`--watch`). On a terminal it is drawn in place like top: on the
   * alternate screen (the person's scrollback is left alone and comes back at the end), from the
   * top, each line cut to the width, the lines that do not fit replaced by a "… N more lines" line;
   * `head` (the headline: its lines fold rather than being cut) always shows. A line that changed
   * since the previous frame carries a mark in the left margin. Elsewhere frames follow each other.
   */
  frame(text: string, head = ''): void {
    if (!this.opts.stdout.isTTY) {
      this.stdout(`\n${head ? `${head}\n` : ''}${text}\n`);
      return;
    }
    if (!this.onAlternateScreen) {
      this.onAlternateScreen = true;
      this.opts.stdout.write('\x1b[?1049h\x1b[?25l');
    }
    const width = Math.max(20, (this.opts.stdout as { columns?: number }).columns || 80);
    const height = Math.max(5, this.rows);
    // What changed: a line (its timestamps aside) not in the previous frame gets a mark; the first
    // line of `head` (the clock) never does.
    const key = (line: string) => line.replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, '');
    const before = this.previousFrame;
    const headRaw = head ? head.split('\n') : [];
    const body = text.replace(/\n+$/, '').split('\n');
    this.previousFrame = new Set([...headRaw, ...body].map(key));
    const mark = (line: string, i: number, isHead: boolean) =>
      isHead && i === 0
        ? line
        : `${before && line.trim() !== '' && !before.has(key(line)) ? this.c.bold.yellow('▌') : ' '} ${line}`;
    const headLines = headRaw.flatMap((line, i) => foldLine(mark(line, i, true), width));
    const marked = body.map((line, i) => mark(line, i, false));
    const room = height - headLines.length;
    let shown = marked;
    if (marked.length > room) {
      shown = marked.slice(0, Math.max(0, room - 1));
      shown.push(this.c.dim(`  … ${marked.length - shown.length} more lines (a taller window shows them)`));
    }
    const lines = [...headLines, ...shown].map((line) => `${fitLine(line, width)}\x1b[K`);
    this.opts.stdout.write(this.redactor.redact(`\x1b[H${lines.join('\n')}\x1b[J`));
  }

  private onAlternateScreen = false;
  private previousFrame: Set<string> | undefined;

  /** Leave what this command did to the terminal: the alternate screen, a hidden cursor, a spinner. */
  restoreTerminal(): void {
    this.active?.stop();
    this.active = undefined;
    if (this.onAlternateScreen) {
      this.onAlternateScreen = false;
      this.opts.stdout.write('\x1b[?25h\x1b[?1049l');
    }
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

  /**
   * Load what animation needs (ora) before the command starts, so that `progress()` draws at once:
   * a line a fast step finishes must not wait for a module to load (and be lost at exit).
   */
  async prepare(): Promise<void> {
    if (this.animates && !this.oraModule) this.oraModule = (await import('ora')).default;
  }

  private oraModule: typeof import('ora').default | undefined;
  private active: import('ora').Ora | undefined;

  /** A spinner is drawn only on a terminal with a width (script(1) and some `docker run -t` report 0 columns). */
  private get animates(): boolean {
    return this.terminal.animate && ((this.opts.stderr as { columns?: number }).columns ?? 0) > 0;
  }

  /** Columns of the terminal stderr draws on (80 when unknown). */
  get columns(): number {
    return (this.opts.stderr as { columns?: number }).columns || 80;
  }

  /** Rows of the terminal stdout draws on (24 when unknown). */
  get rows(): number {
    return (this.opts.stdout as { rows?: number }).rows || 24;
  }

  /**
   * A line said while something may be animating (Ctrl-C's "stopping"): the spinner line is
   * cleared, the line written, the spinner drawn again below it.
   */
  notice(text: string): void {
    const spinner = this.active;
    if (spinner?.isSpinning) spinner.clear();
    this.stderr(text);
    if (spinner?.isSpinning) spinner.render();
  }

  /**
   * A spinner on a TTY (call `prepare()` first); elsewhere plain lines, at most one per
   * `plainEveryMs` for updates. `succeed`/`fail`/`warn` leave `text` on screen as it is given
   * (it carries its own mark), once.
   */
  progress(text: string, plainEveryMs = 5000): Progress {
    if (this.animates && this.oraModule) {
      // discardStdin: false. Ora's default puts the terminal in raw mode while it spins, and then
      // Ctrl-C is a byte on stdin, never SIGINT: the person could not stop dbops.
      // Each line of a spinner's text is cut to the width: a wrapped line is redrawn as garbage.
      const fitted = (t: string) =>
        this.redactor
          .redact(t)
          .split('\n')
          .map((line) => fitLine(line, this.columns - 3))
          .join('\n');
      const spinner = this.oraModule({
        text: fitted(text),
        stream: this.opts.stderr as NodeJS.WritableStream,
        color: 'cyan',
        discardStdin: false,
      }).start();
      this.active = spinner;
      const end = (t: string | undefined) => {
        if (this.active === spinner) this.active = undefined;
        spinner.stop();
        if (t !== undefined) this.stderr(t);
      };
      return {
        update: (t) => {
          spinner.text = fitted(t);
        },
        succeed: (t) => end(t),
        fail: (t) => end(t),
        warn: (t) => end(t),
        stop: () => end(undefined),
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

  /**
   * Ask yes/no on the terminal. Returns false without asking when there is no TTY. Ctrl-C (or
   * Ctrl-D) at the prompt throws `PromptCancelled`: the person stopped, nothing is done.
   */
  async confirm(question: string): Promise<boolean> {
    if (!this.terminal.interactive || !this.opts.stdin) return false;
    const rl = createInterface({ input: this.opts.stdin, output: this.opts.stderr as NodeJS.WritableStream });
    let closedWithoutAnswer = true;
    const closed = new Promise<never>((_, reject) => {
      rl.once('close', () => {
        if (closedWithoutAnswer) reject(new PromptCancelled());
      });
    });
    try {
      const answer = await Promise.race([rl.question(`${this.redactor.redact(question)} [y/N] `), closed]);
      closedWithoutAnswer = false;
      return /^y(es)?$/i.test(answer.trim());
    } catch (error) {
      // readline answers Ctrl-C at the prompt (the terminal is raw while it reads) with an AbortError.
      if (error instanceof PromptCancelled || (error as { code?: string }).code === 'ABORT_ERR') {
        this.opts.stderr.write('\n');
        throw new PromptCancelled();
      }
      throw error;
    } finally {
      closedWithoutAnswer = false;
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

const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/y;

/** `text` cut to `width` columns with an ellipsis (escape codes kept, not counted; one column per code point). */
export function fitLine(text: string, width: number): string {
  const visible = Array.from(text.replace(new RegExp(ANSI.source, 'g'), '')).length;
  if (visible <= width) return text;
  let out = '';
  let cols = 0;
  let i = 0;
  while (i < text.length && cols < width - 1) {
    ANSI.lastIndex = i;
    const code = ANSI.exec(text);
    if (code) {
      out += code[0];
      i += code[0].length;
      continue;
    }
    const ch = String.fromCodePoint(text.codePointAt(i) as number);
    out += ch;
    cols++;
    i += ch.length;
  }
  return `${out}…${text.includes('\x1b[') ? '\x1b[0m' : ''}`;
}

/**
 * `text` folded at spaces into lines of at most `width` columns (escape codes not counted), each
 * line after the first indented by `indent` spaces (a word longer than a line stays whole).
 */
export function foldLine(text: string, width: number, indent = 12): string[] {
  const visible = (t: string) => Array.from(t.replace(new RegExp(ANSI.source, 'g'), '')).length;
  if (visible(text) <= width) return [text];
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/(?<= )/)) {
    if (line.trim() && visible((line + word).trimEnd()) > width) {
      lines.push(line.trimEnd());
      line = `${' '.repeat(indent)}${word}`;
    } else line += word;
  }
  if (line.trim()) lines.push(line.trimEnd());
  return lines;
}

/** Ctrl-C (or end of input) at a [y/N] prompt: the CLI makes it exit 130, nothing done. */
export class PromptCancelled extends Error {
  constructor() {
    super('cancelled at the prompt (Ctrl-C): nothing was changed');
    this.name = 'PromptCancelled';
  }
}

/** BigInt as number when safe (else string), Date as ISO, Buffer as its binary-safe escape. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') {
    return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER)
      ? Number(value)
      : value.toString();
  }
  if (
    value &&
    typeof value === 'object' &&
    (value as { type?: string }).type === 'Buffer' &&
    Array.isArray((value as { data?: unknown }).data)
  ) {
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
