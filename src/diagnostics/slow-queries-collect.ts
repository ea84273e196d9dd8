/**
 * `dbops slow-queries` as one call: read the snapshot and baseline files it was given, read
 * pg_stat_statements, build the report (window, ranking, gates), and write the snapshot it was
 * asked to save. The pure parts are in slow-queries.ts, the reading in slow-queries-read.ts.
 */

import { readFile, rename, writeFile } from 'node:fs/promises';
import type { ClientBase } from 'pg';
import { messageOf, UsageError } from '../errors.js';
import type { PrismaModels } from './prisma-schema.js';
import {
  buildReport,
  checkSameSource,
  type GateOptions,
  parseBaseline,
  parseSnapshot,
  readPgss,
  type SlowQueryReport,
  type SlowRule,
  type SortKey,
  snapshotOf,
} from './slow-queries.js';

export interface CollectOptions {
  sort: SortKey;
  /** 0 = all. */
  limit: number;
  slow: SlowRule;
  onlySlow: boolean;
  statementTimeoutMs: number;
  /** A snapshot file: report only what happened since. */
  since?: string | undefined;
  /** Write a snapshot of the counters here (for a later `since`). */
  save?: string | undefined;
  /** Gates: a mean over this fails; a baseline file (report or snapshot) with the regression rule. */
  gates?: (Omit<GateOptions, 'baseline'> & { baseline?: string | undefined }) | undefined;
  /** The application's Prisma models (its schema.prisma), for labels without Prisma comments. */
  prismaModels?: PrismaModels | undefined;
}

/** The report, with `savedTo` when a snapshot was written; `connect` is called once the files are read. */
export async function collectSlowQueries(
  connect: () => Promise<ClientBase>,
  opts: CollectOptions,
): Promise<SlowQueryReport & { savedTo?: string }> {
  const since = opts.since ? parseSnapshot(await readJsonFile(opts.since, 'snapshot'), opts.since) : undefined;
  const baseline = opts.gates?.baseline
    ? parseBaseline(await readJsonFile(opts.gates.baseline, 'baseline'), opts.gates.baseline)
    : undefined;
  // Every statement is needed for a snapshot, a delta or a gate; otherwise the server ranks and cuts.
  const everything = Boolean(opts.save || since || opts.gates);
  const read = await readPgss(
    await connect(),
    everything
      ? { mode: 'all' }
      : { mode: 'top', sort: opts.sort, limit: opts.limit, onlySlow: opts.onlySlow, slow: opts.slow },
    opts.statementTimeoutMs,
  );
  if (since && opts.since) checkSameSource(since, read.server, opts.since);
  const report = buildReport(read, {
    sort: opts.sort,
    limit: opts.limit,
    slow: opts.slow,
    onlySlow: opts.onlySlow,
    since,
    gates: opts.gates ? { ...opts.gates, baseline } : undefined,
    prismaModels: opts.prismaModels,
  });
  if (!opts.save) return report;
  // Write beside, then rename: a crash never leaves half a snapshot.
  // Query texts can be sensitive even masked: the file is private to its owner (0600).
  const tmp = `${opts.save}.${process.pid}.tmp`;
  try {
    await writeFile(tmp, `${JSON.stringify(snapshotOf(read))}\n`, { mode: 0o600 });
    await rename(tmp, opts.save);
  } catch (error) {
    throw new UsageError(`--save ${opts.save}: cannot write the snapshot: ${(error as Error).message}`, {
      hint: 'check that the folder exists and is writable',
    });
  }
  return { ...report, savedTo: opts.save };
}

/** A JSON file a person named (a snapshot, a baseline): unreadable or not JSON is a usage error with a hint. */
export async function readJsonFile(file: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(`cannot read the ${what} ${file} (${code ?? messageOf(error)})`, {
      cause: error,
      hint: `give the path of a file written by dbops slow-queries --json${what === 'snapshot' ? ' --save FILE' : ''}`,
    });
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    // Not the parser's message: it quotes the file's text, which may be anything.
    const at = /position (\d+)/.exec(messageOf(error))?.[1];
    throw new UsageError(`the ${what} ${file} is not JSON${at === undefined ? '' : ` (at character ${at})`}`, {
      cause: error,
      hint: `give a file written by dbops slow-queries --json${what === 'snapshot' ? ' --save FILE' : ''}`,
    });
  }
}
