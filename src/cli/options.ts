/** Strict option parsers for commander: numbers are parsed and range-checked here, once. */
import { InvalidArgumentError } from 'commander';

/** A whole number in [min, max]. */
export function intArg(min: number, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value: string) => {
    if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError(`expected a whole number, got "${value}"`);
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`must be from ${min} to ${max === Number.MAX_SAFE_INTEGER ? 'any larger number' : max}, got ${value}`);
    }
    return n;
  };
}

/** A non-negative number (decimals allowed) in [min, max]. */
export function numberArg(min: number, max = Number.MAX_VALUE): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`must be a number from ${min}${max === Number.MAX_VALUE ? ' up' : ` to ${max}`}, got "${value}"`);
    }
    return n;
  };
}

/** A duration: `500` (ms), `500ms`, `5s`, `2m`. Returns milliseconds. */
export function durationArg(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!m) throw new InvalidArgumentError(`expected a duration such as 500ms, 5s or 2m, got "${value}"`);
  const n = Number(m[1]);
  const unit = m[2] ?? 'ms';
  const factor = unit === 'h' ? 3_600_000 : unit === 'm' ? 60_000 : unit === 's' ? 1000 : 1;
  return Math.round(n * factor);
}
