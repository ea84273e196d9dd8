/** Strict option parsers for commander: numbers are parsed and range-checked here, once. */
import { InvalidArgumentError } from 'commander';

/** A whole number in [min, max]. */
export function intArg(min: number, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value: string) => {
    if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError(`expected a whole number, got "${value}"`);
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(
        `must be from ${min} to ${max === Number.MAX_SAFE_INTEGER ? 'any larger number' : max}, got ${value}`,
      );
    }
    return n;
  };
}

/** A non-negative number (decimals allowed) in [min, max]. */
export function numberArg(min: number, max = Number.MAX_VALUE): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(
        `must be a number from ${min}${max === Number.MAX_VALUE ? ' up' : ` to ${max}`}, got "${value}"`,
      );
    }
    return n;
  };
}

/**
 * The longest duration anything accepts: Node's timers and PostgreSQL's statement_timeout and
 * lock_timeout are 32-bit signed milliseconds (about 24.8 days, 596 h); past it Node fires at once
 * with a TimeoutOverflowWarning and PostgreSQL refuses the value.
 */
export const MAX_DURATION_MS = 2_147_483_647;

/** `5000` → `5s`, `5400000` → `90m`: a duration in the units a user types. */
export function formatDuration(ms: number): string {
  for (const [unit, factor] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms >= factor && Number.isInteger(ms / factor)) return `${ms / factor}${unit}`;
  }
  return ms >= 3_600_000 ? `${ms}ms (about ${Math.round(ms / 3_600_000)}h)` : `${ms}ms`;
}

/**
 * A duration (`500` = ms, `500ms`, `5s`, `2m`, `1h`) from `min` to `max` milliseconds: the one
 * parser of every duration option, `--lock-timeout` and `--long-ms` alike (a bare number is
 * milliseconds everywhere). `fractional` keeps fractions of a millisecond (mean-time thresholds).
 */
export function durationIn(
  min: number,
  max = MAX_DURATION_MS,
  opts: { fractional?: boolean } = {},
): (value: string) => number {
  return (value: string) => {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
    if (!m) throw new InvalidArgumentError(`expected a duration such as 500ms, 5s or 2m, got "${value}"`);
    const unit = m[2] ?? 'ms';
    const factor = unit === 'h' ? 3_600_000 : unit === 'm' ? 60_000 : unit === 's' ? 1000 : 1;
    const exact = Number(m[1]) * factor;
    const ms = opts.fractional ? exact : Math.round(exact);
    if (ms < min || ms > max) {
      throw new InvalidArgumentError(`must be from ${formatDuration(min)} to ${formatDuration(max)}, got ${value}`);
    }
    return ms;
  };
}

/** A duration from 0 up to the longest a timer or statement_timeout takes. Returns milliseconds. */
export const durationArg: (value: string) => number = durationIn(0);

/** The connect timeout (`--timeout`): the same range as DBOPS_CONNECT_TIMEOUT_MS. */
export const connectTimeoutArg: (value: string) => number = durationIn(100, 600_000);
