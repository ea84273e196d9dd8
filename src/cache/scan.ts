/** One SCAN step on one node, binary-safe (Buffer cursor and keys). Never KEYS. */
import type { Redis } from 'ioredis';

export interface ScanStepOptions {
  pattern: Buffer;
  /** SCAN COUNT hint: how much work the server does per call. */
  count: number;
  /** SCAN TYPE filter (Redis >= 6). */
  type?: string | undefined;
}

export async function scanStep(
  client: Redis,
  cursor: string,
  opts: ScanStepOptions,
): Promise<{ cursor: string; keys: Buffer[] }> {
  const args: Array<string | Buffer | number> = [cursor, 'MATCH', opts.pattern, 'COUNT', opts.count];
  if (opts.type) args.push('TYPE', opts.type);
  // callBuffer is scanBuffer with a variable argument list (TYPE is optional).
  const reply = (await client.callBuffer('SCAN', ...args)) as [Buffer, Buffer[]];
  return { cursor: reply[0].toString('latin1'), keys: reply[1] };
}

/**
 * Remembers keys already seen, to count SCAN's duplicates once, up to `cap` keys (memory stays
 * bounded); beyond the cap counts become approximate.
 */
export class SeenKeys {
  private readonly seen = new Set<string>();
  overflow = false;
  duplicates = 0;
  constructor(private readonly cap: number) {}

  /** True when the key is new (or can no longer be tracked). */
  add(key: Buffer): boolean {
    const k = key.toString('latin1');
    if (this.seen.has(k)) {
      this.duplicates++;
      return false;
    }
    if (this.seen.size >= this.cap) {
      this.overflow = true;
      return true;
    }
    this.seen.add(k);
    return true;
  }
}
