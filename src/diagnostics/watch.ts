/** The refresh loop of a watched report (`dbops pool --watch`, `dbops locks --watch`). */
import { messageOf } from '../errors.js';
import { sleep } from '../util/sleep.js';

export type Frame<R> = { report: R } | { error: string };

/**
 * Reads a report every `everyMs` until `signal` aborts (the first Ctrl-C) and hands each to `show`,
 * or the error that replaced it: a watch shows a failed refresh and tries again.
 */
export async function watch<R>(opts: {
  everyMs: number;
  signal: AbortSignal;
  read: () => Promise<R>;
  show: (frame: Frame<R>) => void;
}): Promise<void> {
  while (!opts.signal.aborted) {
    let frame: Frame<R>;
    try {
      frame = { report: await opts.read() };
    } catch (error) {
      frame = { error: messageOf(error) };
    }
    if (opts.signal.aborted) break;
    opts.show(frame);
    await sleep(opts.everyMs, opts.signal);
  }
}
