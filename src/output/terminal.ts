/**
 * Terminal policy: when to use colour, spinners and prompts. Decided once, from the environment
 * and the streams, by the CLI; everything in output/ follows it.
 */

export interface TerminalPolicy {
  /** Colour on stdout/stderr (NO_COLOR, FORCE_COLOR, --no-color and the TTY decide). */
  colour: boolean;
  /** Spinners and progress bars: only on a TTY stderr, never with --json, in CI or when piped. */
  animate: boolean;
  /** Can we ask the person a question (stdin and stderr are TTYs)? */
  interactive: boolean;
}

export interface TerminalInput {
  env: Record<string, string | undefined>;
  stdoutIsTTY: boolean;
  stderrIsTTY: boolean;
  stdinIsTTY: boolean;
  json: boolean;
  noColorFlag: boolean;
  quiet: boolean;
}

function flagSet(value: string | undefined): boolean {
  return value !== undefined && value !== '' && value !== '0' && value.toLowerCase() !== 'false';
}

export function decideTerminal(input: TerminalInput): TerminalPolicy {
  const { env } = input;
  const ci = flagSet(env.CI);
  let colour: boolean;
  if (input.noColorFlag || (env.NO_COLOR !== undefined && env.NO_COLOR !== '')) colour = false;
  else if (env.FORCE_COLOR !== undefined) colour = env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false';
  // Automatic colour only when both streams are terminals: `dbops ... 2>deploy.log` must not write
  // escape codes into the log (one palette serves results on stdout and logs on stderr).
  else colour = input.stdoutIsTTY && input.stderrIsTTY && env.TERM !== 'dumb';
  const animate = input.stderrIsTTY && !input.json && !ci && !input.quiet && env.TERM !== 'dumb';
  const interactive = input.stdinIsTTY && input.stderrIsTTY;
  return { colour, animate, interactive };
}
