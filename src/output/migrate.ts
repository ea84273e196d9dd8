/**
 * Views of migration results: live progress (one line per migration: a spinner with elapsed time
 * on a TTY, plain lines in CI), the run summary, the status timeline and the validate report.
 */
import type { ChalkInstance } from 'chalk';
import type { OutboxEntry } from '../migrations/invalidation.js';
import type {
  ChecksumChange,
  MigrationOutcome,
  RepairPlan,
  RepairResult,
  RunEvent,
  RunResult,
  StatusEntry,
  StatusResult,
  ValidateResult,
} from '../migrations/types.js';
import { renderBackfillProgress, renderBackfillStatus } from './backfill.js';
import type { Output, Progress } from './output.js';
import { renderTable } from './table.js';

export function fmtDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} m ${Math.round((ms % 60_000) / 1000)} s`;
}

/**
 * Live reporter: feed it the runner's events. At a terminal one spinner line per migration (its
 * name, elapsed time, the backfill's bar or the phase it is in), replaced when the migration ends
 * by its outcome line: every migration leaves exactly one line, with one mark. Elsewhere plain lines.
 */
export function createRunReporter(out: Output): { onEvent(e: RunEvent): void; stop(): void } {
  const c = out.c;
  let current: { progress: Progress; started: number; label: string; timer: NodeJS.Timeout | undefined } | undefined;
  let extra = '';
  const stopTimer = () => {
    if (current?.timer) clearInterval(current.timer);
  };
  const redraw = () => {
    if (current)
      current.progress.update(`${current.label} ${c.dim(fmtDuration(Date.now() - current.started))}${extra}`);
  };
  const verb = (e: { direction: 'up' | 'down'; dryRun: boolean }) =>
    e.dryRun ? 'rehearsing' : e.direction === 'up' ? 'applying' : 'reverting';
  return {
    onEvent(e) {
      switch (e.type) {
        case 'start': {
          stopTimer();
          current?.progress.stop();
          extra = '';
          const label = `${verb(e)} ${e.kind === 'schema' ? 'schema ' : ''}${e.name}`;
          const entry: NonNullable<typeof current> = {
            progress: out.progress(label, 5_000),
            started: Date.now(),
            label,
            timer: undefined,
          };
          current = entry;
          if (out.terminal.animate) {
            entry.timer = setInterval(redraw, 200);
            entry.timer.unref();
          }
          break;
        }
        case 'finish': {
          const o = e.outcome;
          stopTimer();
          const line = outcomeLine(o, c);
          const p = current?.progress;
          current = undefined;
          if (p) o.status === 'failed' ? p.fail(line) : o.status === 'skipped' ? p.warn(line) : p.succeed(line);
          else if (o.status === 'failed') out.stderr(line);
          else out.info(line);
          break;
        }
        case 'skip':
          out.info(`${c.dim('-')} ${e.name}: ${e.reason}`);
          break;
        case 'waiting': {
          const who = e.holder?.host
            ? `dbops pid ${e.holder.pid} on ${e.holder.host}`
            : (e.holder?.applicationName ?? 'another session');
          const state = e.holder?.state ? `, ${e.holder.state}` : '';
          const since = e.holder?.since ? `, holding it ${fmtDuration(Date.now() - e.holder.since.getTime())}` : '';
          const text = `waiting for the migration lock held by ${who} (server pid ${e.holder?.backendPid ?? '?'}${state}${since}; ${fmtDuration(e.waitedMs)} so far)`;
          if (!out.terminal.animate) {
            out.info(text);
            break;
          }
          // At a terminal one spinner line names the holder while we wait; the migration's own line replaces it.
          if (current?.label !== 'waiting') {
            stopTimer();
            current?.progress.stop();
            current = { progress: out.progress(text), started: Date.now(), label: 'waiting', timer: undefined };
          } else current.progress.update(text);
          break;
        }
        case 'phase': {
          // A named phase replaces the bar: validating has no ETA, a lock wait names the blocker.
          extra = out.terminal.animate
            ? `\n  ${c.dim(`${e.phase}${e.detail ? `: ${e.detail}` : ''}`)}`
            : c.dim(`  ${e.phase}${e.detail ? `: ${e.detail}` : ''}`);
          if (out.terminal.animate) redraw();
          else current?.progress.update(`${current.label}:${extra}`);
          break;
        }
        case 'invalidated': {
          const waited =
            e.replicaWaitMs === null
              ? ''
              : `, after ${e.replicas.join(', ')} replayed the commit (${fmtDuration(e.replicaWaitMs)})`;
          const what = [e.keys ? `${e.keys} key(s)` : '', e.patterns ? `${e.patterns} pattern(s)` : '']
            .filter(Boolean)
            .join(' and ');
          out.info(`${c.green('✔')} ${e.name}: cache invalidated: ${what}, ${e.keysRemoved} key(s) removed${waited}`);
          break;
        }
        case 'backfill': {
          // On a terminal the bar joins the migration's spinner line; elsewhere a plain line with the checkpoint.
          // At a terminal the bar is a second line under the migration's (it would not fit on one).
          extra = out.terminal.animate
            ? `\n  ${renderBackfillProgress(e.progress, { bar: true })}`
            : c.dim(`  ${renderBackfillProgress(e.progress, { bar: false })}`);
          if (out.terminal.animate) redraw();
          else current?.progress.update(`${current.label}:${extra}`);
          break;
        }
      }
    },
    stop: () => {
      stopTimer();
      current?.progress.stop();
      current = undefined;
    },
  };
}

export function outcomeLine(outcome: MigrationOutcome, paint: ChalkInstance): string {
  const kind = outcome.kind === 'schema' ? 'schema ' : '';
  const time = paint.dim(fmtDuration(outcome.durationMs));
  const stats =
    outcome.kind === 'data' && outcome.status !== 'skipped'
      ? paint.dim(`, ${outcome.statements} statement(s), ${outcome.rowsAffected} row(s)`)
      : '';
  const v =
    outcome.validate === null ? '' : outcome.validate ? paint.dim(', validate ok') : paint.red(', validate FALSE');
  const nt = outcome.transactional ? '' : paint.yellow(' [no transaction]');
  switch (outcome.status) {
    case 'applied':
      return `${paint.green('✔')} applied ${kind}${outcome.name}${nt} ${time}${stats}${v}`;
    case 'reverted':
      return `${paint.green('✔')} reverted ${outcome.name}${nt} ${time}${stats}`;
    case 'rehearsed':
      return `${paint.green('✔')} rehearsed ${kind}${outcome.name} ${time}${stats}${v} ${paint.dim('(rolled back)')}`;
    case 'marked':
      return `${paint.green('✔')} marked ${outcome.name} as applied (not run)`;
    case 'skipped':
      return `${paint.yellow('-')} skipped ${outcome.name}${outcome.note ? `: ${outcome.note}` : ''}`;
    default:
      return `${paint.red('✗')} ${kind}${outcome.name} failed at ${outcome.error?.step ?? outcome.direction} ${time}: ${outcome.error?.message ?? ''}`;
  }
}

export function renderRunResult(result: RunResult, paint: ChalkInstance, colour: boolean): string {
  const lines: string[] = [];
  for (const w of result.warnings) lines.push(`${paint.yellow('warning:')} ${w}`);
  if (result.dryRun) {
    for (const o of result.outcomes) {
      if (!o.statementLog?.length) continue;
      lines.push(`${o.name} (${o.direction}) ran:`);
      lines.push(
        renderTable({
          head: ['statement', 'command', 'rows', 'time'],
          rows: o.statementLog.map((s) => [s.sql, s.command, s.rowCount, fmtDuration(s.durationMs)]),
          colour,
          alignRight: [2, 3],
        }),
      );
    }
  }
  for (const o of result.outcomes) {
    const inv = o.invalidation;
    if (!inv) continue;
    if (result.dryRun) {
      lines.push(`${o.name} (${o.direction}) would invalidate after its commit:`);
      for (const m of inv.matching ?? [])
        lines.push(
          `  pattern ${m.pattern}: ${m.keys === null ? 'keys matching now unknown (no Redis reachable)' : `${m.keys} key(s) match now`}`,
        );
      if (inv.keys > 0)
        lines.push(
          `  ${inv.keys} precise key(s): ${inv.sample.join(', ')}${inv.keys > inv.sample.length ? ', ...' : ''}`,
        );
    } else if (!inv.done) {
      lines.push(
        paint.yellow(
          `${o.name}: cache invalidation still owed (${inv.keys} key(s), ${inv.patterns.length} pattern(s)): dbops cache drain`,
        ),
      );
    }
  }
  const count = (s: MigrationOutcome['status']) => result.outcomes.filter((o) => o.status === s).length;
  const parts: string[] = [];
  if (count('applied')) parts.push(`${count('applied')} applied`);
  if (count('reverted')) parts.push(`${count('reverted')} reverted`);
  if (count('rehearsed')) parts.push(`${count('rehearsed')} rehearsed and rolled back`);
  if (count('marked')) parts.push(`${count('marked')} marked applied`);
  if (count('skipped')) parts.push(`${count('skipped')} skipped`);
  if (count('failed')) parts.push(paint.red(`${count('failed')} failed`));
  if (result.appliedByOthers.length) parts.push(`${result.appliedByOthers.length} already done by another runner`);
  const what = parts.length
    ? parts.join(', ')
    : result.command === 'down'
      ? 'nothing to revert'
      : 'nothing to do: everything is applied';
  lines.push(`${result.dryRun ? 'dry run: ' : ''}${what} (${fmtDuration(result.durationMs)})`);
  return lines.join('\n');
}

/**
 * A run that failed: on a terminal, what ran before the failure (--json prints it with the error
 * document instead), and the workflow annotation that names the migration and the step.
 */
export function reportRunFailure(out: Output, partial: RunResult): void {
  if (!out.json && partial.outcomes.length > 0) out.stderr(renderRunResult(partial, out.c, out.terminal.colour));
  const failed = partial.outcomes.find((outcome) => outcome.status === 'failed');
  if (failed)
    out.annotate(
      `dbops migrate: ${failed.name} failed at ${failed.error?.step ?? failed.direction}`,
      failed.error?.message ?? '',
    );
}

const STATE_LABEL: Record<StatusEntry['state'], string> = {
  applied: 'applied',
  pending: 'pending',
  changed: 'CHANGED',
  missing: 'MISSING FILE',
  'out-of-order': 'OUT OF ORDER',
};

export function renderStatus(status: StatusResult, paint: ChalkInstance, colour: boolean): string {
  const stateCell = (e: StatusEntry) => {
    const label = e.failed ? 'FAILED' : STATE_LABEL[e.state];
    if (e.state === 'applied') return paint.green(label);
    if (e.state === 'pending') return paint.yellow(label);
    return paint.red(label);
  };
  const rows = status.entries.map((e) => [
    e.kind,
    e.name,
    stateCell(e),
    e.appliedAt
      ? e.appliedAt
          .toISOString()
          .replace('T', ' ')
          .replace(/\.\d+Z$/, 'Z')
      : '',
    e.markedOnly ? 'marked applied' : (e.appliedBy ?? ''),
    e.kind === 'data' ? (e.transactional ? 'yes' : paint.yellow('no')) : '',
    e.description ?? '',
  ]);
  const lines: string[] = [];
  if (rows.length > 0) {
    // Narrow terminals lose who applied it, txn, kind and the time first; the name is never cut.
    lines.push(
      renderTable({
        head: ['kind', 'name', 'state', 'applied at', 'by', 'txn', 'description'],
        rows,
        colour,
        keep: [1],
        droppable: [4, 5, 0, 3],
      }),
    );
  } else {
    lines.push('no migrations found');
  }
  const n = status.counts;
  lines.push(
    `${n.applied} applied, ${n.pending} pending${n.changed ? `, ${paint.red(`${n.changed} changed`)}` : ''}${n.missing ? `, ${paint.red(`${n.missing} missing`)}` : ''}${n['out-of-order'] ? `, ${paint.red(`${n['out-of-order']} out of order`)}` : ''}`,
  );
  for (const p of status.problems) lines.push(`${paint.red('✗')} ${p.path}: ${p.cause}`);
  if (status.ledger.legacy) {
    lines.push(
      paint.yellow(
        `the ledger is still where dbops 0.1.0 kept it (${status.ledger.legacy}): the next migrate up, down, mark-applied or repair moves it to ${status.ledger.location}`,
      ),
    );
  }
  if (status.backfills.length > 0) {
    const unfinished = status.backfills.filter((b) => !b.finished && b.resumedBy !== 'down').length;
    const reverting = status.backfills.filter((b) => !b.finished && b.resumedBy === 'down');
    const unrecorded = status.backfills.filter((b) => b.finished).length;
    if (unfinished > 0)
      lines.push(paint.yellow(`${unfinished} unfinished backfill(s): dbops migrate up resumes from the checkpoint`));
    if (reverting.length > 0) {
      lines.push(
        paint.yellow(
          `${reverting.length} interrupted revert(s) (${reverting.map((b) => b.migration).join(', ')}): still recorded as applied, down() stopped part-way; dbops migrate down resumes from the checkpoint`,
        ),
      );
    }
    if (unrecorded > 0) {
      lines.push(
        paint.red(
          `${unrecorded} backfill(s) ran every batch but were not recorded (validate failed): fix the data and run dbops migrate up, or undo with dbops migrate down`,
        ),
      );
    }
    lines.push(renderBackfillStatus(status.backfills, colour));
  }
  const { owed, done } = status.invalidations;
  if (owed.length > 0) {
    lines.push(
      paint.red(
        `${owed.length} cache invalidation(s) owed (committed, not yet carried out): dbops cache drain, or the next dbops migrate up`,
      ),
    );
    lines.push(renderOutbox(owed, colour));
  }
  if (done.length > 0) {
    lines.push('cache invalidations done (latest first):');
    lines.push(renderOutbox(done.slice(0, 5), colour));
  }
  return lines.join('\n');
}

function renderOutbox(entries: OutboxEntry[], colour: boolean): string {
  const when = (d: Date | null) =>
    d
      ? d
          .toISOString()
          .replace('T', ' ')
          .replace(/\.\d+Z$/, 'Z')
      : '';
  return renderTable({
    head: ['#', 'migration', 'keys', 'patterns', 'committed', 'invalidated', 'removed', 'replica wait', 'last error'],
    rows: entries.map((e) => [
      e.id,
      `${e.migration}${e.direction === 'down' ? ' (down)' : ''}${e.batch === null ? '' : ` batch ${e.batch}`}`,
      e.keys,
      e.patterns.join(' '),
      when(e.createdAt),
      when(e.doneAt),
      e.keysRemoved ?? '',
      e.replicaWaitMs === null
        ? ''
        : `${fmtDuration(e.replicaWaitMs)} (${(e.replicaWait ?? []).map((r) => r.name).join(', ')})`,
      e.lastError ?? '',
    ]),
    colour,
    alignRight: [0, 2, 6],
  });
}

/** `cache drain`'s result. */
export function renderDrain(
  doc: {
    owedBefore: number;
    rows: number;
    keysRemoved: number;
    keys: number;
    patterns: number;
    replicaWait: { waitedMs: number; replicas: { name: string }[] } | null;
  },
  paint: ChalkInstance,
): string {
  if (doc.rows === 0)
    return doc.owedBefore === 0
      ? 'nothing owed: every cache invalidation is done'
      : 'nothing drained: another dbops is draining the owed rows';
  const wait = doc.replicaWait
    ? `, after ${doc.replicaWait.replicas.map((r) => r.name).join(', ')} replayed (${fmtDuration(doc.replicaWait.waitedMs)})`
    : '';
  return `${paint.green('✔')} drained ${doc.rows} owed invalidation(s): ${doc.keys} key(s), ${doc.patterns} pattern(s), ${doc.keysRemoved} key(s) removed${wait}`;
}

export function renderValidate(result: ValidateResult, paint: ChalkInstance): string {
  const lines: string[] = [];
  for (const k of result.checked) {
    const verdict =
      k.verdict === null
        ? paint.dim('no validate()')
        : k.verdict
          ? paint.green('ok')
          : paint.red(k.error ? 'ERROR' : 'FALSE');
    lines.push(
      `${verdict.padEnd(4)} ${k.name} ${paint.dim(fmtDuration(k.durationMs))}${k.error ? `: ${k.error}` : ''}`,
    );
  }
  for (const f of result.findings) lines.push(`${paint.red('✗')} ${f.message}`);
  lines.push(
    result.ok
      ? `${paint.green('ok')}: ${result.checked.length} applied migration(s) checked, no drift`
      : `${paint.red(`${result.findings.length} finding(s)`)}: ${result.checked.length} applied migration(s) checked`,
  );
  return lines.join('\n');
}

/** A checksum as a person compares it: the first 12 hex digits. */
function short(checksum: string): string {
  return checksum.slice(0, 12);
}

function changeLine(change: ChecksumChange, paint: ChalkInstance): string {
  return `  ${change.name}: recorded ${paint.red(short(change.previousChecksum))} -> file ${paint.green(short(change.checksum))}`;
}

/** What `migrate repair` is about to accept, shown before it asks. */
export function renderRepairPlan(plan: RepairPlan, paint: ChalkInstance): string {
  const lines = [
    `${plan.changes.length} applied migration(s) changed since they were applied (checksums: recorded -> file):`,
  ];
  for (const c of plan.changes) lines.push(changeLine(c, paint));
  if (plan.unchanged.length > 0) lines.push(paint.dim(`unchanged, nothing to accept: ${plan.unchanged.join(', ')}`));
  return lines.join('\n');
}

export function renderRepairResult(result: RepairResult, paint: ChalkInstance): string {
  const lines: string[] = [];
  for (const c of result.accepted)
    lines.push(`${paint.green('✔')} accepted ${c.name}: ${short(c.previousChecksum)} -> ${short(c.checksum)}`);
  for (const s of result.skipped) lines.push(`${paint.yellow('-')} skipped ${s.name}: ${s.reason}`);
  if (result.unchanged.length > 0)
    lines.push(paint.dim(`unchanged, nothing to accept: ${result.unchanged.join(', ')}`));
  lines.push(
    result.accepted.length + result.skipped.length === 0
      ? 'nothing to repair: no applied data migration changed'
      : `${result.accepted.length} accepted${result.skipped.length ? `, ${result.skipped.length} skipped` : ''} (${fmtDuration(result.durationMs)}); the ledger keeps the checksum before, who and when`,
  );
  return lines.join('\n');
}
