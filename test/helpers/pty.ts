/**
 * dbops as a person at a terminal meets it: the built CLI in a real pseudo-terminal (node-pty) of
 * 100x30, keys typed into it (`\x03` is Ctrl-C, read by the terminal's line discipline and turned
 * into SIGINT only when the terminal is not in raw mode), and the SCREEN read through a terminal
 * emulator (@xterm/headless): what is left visible after cursor moves, line clears and the
 * alternate screen, not the bytes on a pipe.
 */
import { execFileSync } from 'node:child_process';
import xtermHeadless from '@xterm/headless';
import * as pty from 'node-pty';
import { BIN, ROOT } from './cli.js';

const { Terminal } = xtermHeadless;

export interface TerminalSession {
  /** Type into the terminal: text, `\r` for Enter, `\x03` for Ctrl-C. */
  type(keys: string): void;
  /** The visible screen, one string per row, trailing spaces trimmed. */
  screen(): string[];
  /** The normal buffer, scrollback and screen, as logical lines (wrapped rows joined). */
  transcript(): string;
  /** Rows of the visible screen that continue the row above (a line longer than the width wrapped). */
  wrappedRows(): number;
  /** Is the alternate screen (full-screen views) shown? */
  alternate(): boolean;
  /** Every byte written so far (for diagnosing a failure). */
  raw(): string;
  /** Resolve once `test` holds for the screen (default: visible rows joined by newlines), polling as bytes arrive. */
  waitFor(test: RegExp | ((screen: string) => boolean), what?: string, timeoutMs?: number): Promise<string>;
  /** The terminal's settings now, as `stty -a` prints them (read on the pty's own device). */
  stty(): string;
  /** Resolves with the exit code once the process has ended (and the emulator has drawn its last bytes). */
  exited: Promise<number>;
  kill(): void;
}

export interface TerminalOptions {
  env: Record<string, string>;
  cwd?: string;
  cols?: number;
  rows?: number;
  /**
   * Print the terminal's settings (`stty -a`) on the same terminal once dbops has exited, between
   * `--- stty` and `--- end` lines: what the person's shell gets back. The exit code stays dbops'.
   */
  sttyAfter?: boolean;
}

/** Start `dbops <args>` in a pseudo-terminal of `cols`x`rows` (100x30). */
export function openTerminal(args: string[], opts: TerminalOptions): TerminalSession {
  const cols = opts.cols ?? 100;
  const rows = opts.rows ?? 30;
  const term = new Terminal({ cols, rows, scrollback: 1000, allowProposedApi: true });
  const env = { TERM: 'xterm-256color', ...opts.env };
  // Colour is off (NO_COLOR) unless the test asks: the screen is compared as text.
  // With sttyAfter, bash runs dbops as its foreground child, then stty: a Ctrl-C that dbops handles
  // (it exits 130 rather than dying of SIGINT) lets bash carry on, as an interactive shell would.
  const [file, argv] = opts.sttyAfter
    ? [
        'bash',
        [
          '-c',
          '"$0" "$@"; code=$?; printf -- "--- stty\\n"; stty -a; printf -- "--- end\\n"; exit $code',
          process.execPath,
          BIN,
          ...args,
        ],
      ]
    : [process.execPath, [BIN, ...args]];
  const child = pty.spawn(file, argv, { name: 'xterm-256color', cols, rows, cwd: opts.cwd ?? ROOT, env });
  let raw = '';
  let pending = Promise.resolve();
  const waiters = new Set<() => void>();
  child.onData((data) => {
    raw += data;
    pending = new Promise<void>((resolve) => term.write(data, resolve));
    void pending.then(() => {
      for (const w of waiters) w();
    });
  });
  const exited = new Promise<number>((resolve) => {
    child.onExit(({ exitCode }) => {
      // The last bytes may still be on their way to the emulator.
      setTimeout(() => void pending.then(() => resolve(exitCode)), 50);
    });
  });
  const ptsName = (child as unknown as { _pty?: string })._pty;
  const buffer = () => term.buffer.active;
  const rowsOf = (from: number, to: number) => {
    const out: string[] = [];
    for (let y = from; y < to; y++) out.push(buffer().getLine(y)?.translateToString(true) ?? '');
    return out;
  };
  const session: TerminalSession = {
    type: (keys) => child.write(keys),
    screen: () => rowsOf(buffer().viewportY, buffer().viewportY + rows),
    transcript: () => {
      // Logical lines: a row the terminal wrapped joins the row before it.
      const normal = term.buffer.normal;
      const out: string[] = [];
      for (let y = 0; y < normal.length; y++) {
        const line = normal.getLine(y);
        const text = line?.translateToString(true) ?? '';
        if (line?.isWrapped && out.length > 0)
          out[out.length - 1] = `${(out[out.length - 1] as string).padEnd(cols)}${text}`;
        else out.push(text);
      }
      return out.join('\n').replace(/\n+$/, '');
    },
    alternate: () => term.buffer.active.type === 'alternate',
    wrappedRows: () => {
      let n = 0;
      for (let y = buffer().viewportY; y < buffer().viewportY + rows; y++) if (buffer().getLine(y)?.isWrapped) n++;
      return n;
    },
    raw: () => raw,
    waitFor: (test, what = String(test), timeoutMs = 60_000) =>
      new Promise<string>((resolve, reject) => {
        const check = () => {
          const text = session.screen().join('\n');
          const ok = typeof test === 'function' ? test(text) : test.test(text);
          if (ok) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(text);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for ${what}; the screen:\n${session.screen().join('\n')}`));
        }, timeoutMs);
        waiters.add(check);
        void exited.then(() => {
          check();
          if (waiters.has(check)) {
            waiters.delete(check);
            clearTimeout(timer);
            reject(new Error(`dbops exited before ${what}; the screen:\n${session.screen().join('\n')}`));
          }
        });
        check();
      }),
    stty: () => {
      if (!ptsName) throw new Error('node-pty did not name its device');
      return execFileSync('stty', ['-a', '-F', ptsName], { encoding: 'utf8' });
    },
    exited,
    kill: () => {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    },
  };
  return session;
}
