/**
 * Views of migration results: live progress (one line per migration: a spinner with elapsed time
 * on a TTY, plain lines in CI), the run summary, the status timeline and the validate report.
 */
import type { ChalkInstance } from 'chalk';
import type { MigrationOutcome, RunEvent, RunResult, StatusEntry, StatusResult, ValidateResult } from '../migrations/types.js';
import { renderBackfillStatus } from './backfill.js';
import type { Output, Progress } from './output.js';
import { renderTable } from './table.js';

export function fmtDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} m ${Math.round((ms % 60_000) / 1000)} s`;
}

/** Live reporter: feed it the runner's events. */
export function createRunReporter(out: Output): { onEvent(e: RunEvent): void; stop(): void } {
  const c = out.c;
  let current: { progress: Promise<Progress>; started: number; label: string; timer: NodeJS.Timeout | undefined } | undefined;
  let extra = '';
  const stopTimer = () => {
    if (current?.timer) clearInterval(current.timer);
  };
  const verb = (e: { direction: 'up' | 'down'; dryRun: boolean }) => (e.dryRun ? 'rehearsing' : e.direction === 'up' ? 'applying' : 'reverting');
  return {
    onEvent(e) {
      switch (e.type) {
        case 'start': {
          extra = '';
          const label = `${verb(e)} ${e.kind === 'schema' ? 'schema ' : ''}${e.name}`;
          const started = Date.now();
          const progress = out.progress(label, 5_000);
          const entry: NonNullable<typeof current> = { progress, started, label, timer: undefined };
          if (out.terminal.animate) {
            entry.timer = setInterval(() => {
              void progress.then((p) => p.update(`${label} ${c.dim(fmtDuration(Date.now() - started))}${extra}`));
            }, 200);
            entry.timer.unref();
          }
          current = entry;
          break;
        }
        case 'finish': {
          const o = e.outcome;
          stopTimer();
          const line = outcomeLine(o, c);
          const p = current?.progress;
          current = undefined;
          if (p) void p.then((pr) => (o.status === 'failed' ? pr.fail(line) : o.status === 'skipped' ? pr.warn(line) : pr.succeed(line)));
          else if (o.status === 'failed') out.stderr(line);
          else out.info(line);
          break;
        }
        case 'skip':
          out.info(`${c.dim('-')} ${e.name}: ${e.reason}`);
          break;
        case 'waiting': {
          const who = e.holder?.host ? `dbops pid ${e.holder.pid} on ${e.holder.host}` : (e.holder?.applicationName ?? 'another session');
          out.info(`waiting for the migration lock held by ${who} (${fmtDuration(e.waitedMs)} so far)`);
          break;
        }
        case 'backfill': {
          const p = e.progress;
          const pct = p.estimatedTotal > 0 ? ` ${Math.min(100, (100 * p.rowsDone) / p.estimatedTotal).toFixed(1)}%` : '';
          const eta = p.etaMs !== null ? `, ETA ${fmtDuration(p.etaMs)}` : '';
          extra = c.dim(` ${p.rowsDone}/${p.estimatedTotal} rows${pct}, ${Math.round(p.rowsPerSecond)} rows/s${eta}`);
          if (!out.terminal.animate) void current?.progress.then((pr) => pr.update(`${current?.label ?? p.migration}:${extra}`));
          break;
        }
      }
    },
    stop: stopTimer,
  };
}

export function outcomeLine(o: MigrationOutcome, c: ChalkInstance): string {
  const kind = o.kind === 'schema' ? 'schema ' : '';
  const time = c.dim(fmtDuration(o.durationMs));
  const stats = o.kind === 'data' && o.status !== 'skipped' ? c.dim(`, ${o.statements} statement(s), ${o.rowsAffected} row(s)`) : '';
  const v = o.validate === null ? '' : o.validate ? c.dim(', validate ok') : c.red(', validate FALSE');
  const nt = o.transactional ? '' : c.yellow(' [no transaction]');
  switch (o.status) {
    case 'applied':
      return `${c.green('✔')} applied ${kind}${o.name}${nt} ${time}${stats}${v}`;
    case 'reverted':
      return `${c.green('✔')} reverted ${o.name}${nt} ${time}${stats}`;
    case 'rehearsed':
      return `${c.green('✔')} rehearsed ${kind}${o.name} ${time}${stats}${v} ${c.dim('(rolled back)')}`;
    case 'marked':
      return `${c.green('✔')} marked ${o.name} as applied (not run)`;
    case 'skipped':
      return `${c.yellow('-')} skipped ${o.name}${o.note ? `: ${o.note}` : ''}`;
    default:
      return `${c.red('✗')} ${kind}${o.name} failed at ${o.error?.step ?? o.direction} ${time}: ${o.error?.message ?? ''}`;
  }
}

export function renderRunResult(r: RunResult, c: ChalkInstance, colour: boolean): string {
  const lines: string[] = [];
  for (const w of r.warnings) lines.push(`${c.yellow('warning:')} ${w}`);
  if (r.dryRun) {
    for (const o of r.outcomes) {
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
  const count = (s: MigrationOutcome['status']) => r.outcomes.filter((o) => o.status === s).length;
  const parts: string[] = [];
  if (count('applied')) parts.push(`${count('applied')} applied`);
  if (count('reverted')) parts.push(`${count('reverted')} reverted`);
  if (count('rehearsed')) parts.push(`${count('rehearsed')} rehearsed and rolled back`);
  if (count('marked')) parts.push(`${count('marked')} marked applied`);
  if (count('skipped')) parts.push(`${count('skipped')} skipped`);
  if (count('failed')) parts.push(c.red(`${count('failed')} failed`));
  if (r.appliedByOthers.length) parts.push(`${r.appliedByOthers.length} already done by another runner`);
  const what = parts.length ? parts.join(', ') : r.command === 'down' ? 'nothing to revert' : 'nothing to do: everything is applied';
  lines.push(`${r.dryRun ? 'dry run: ' : ''}${what} (${fmtDuration(r.durationMs)})`);
  return lines.join('\n');
}

/**
 * A run that failed: on a terminal, what ran before the failure (--json prints it with the error
 * document instead), and the workflow annotation that names the migration and the step.
 */
export function reportRunFailure(out: Output, partial: RunResult): void {
  if (!out.json && partial.outcomes.length > 0) out.stderr(renderRunResult(partial, out.c, out.terminal.colour));
  const failed = partial.outcomes.find((outcome) => outcome.status === 'failed');
  if (failed) out.annotate(`dbops migrate: ${failed.name} failed at ${failed.error?.step ?? failed.direction}`, failed.error?.message ?? '');
}

const STATE_LABEL: Record<StatusEntry['state'], string> = {
  applied: 'applied',
  pending: 'pending',
  changed: 'CHANGED',
  missing: 'MISSING FILE',
  'out-of-order': 'OUT OF ORDER',
};

export function renderStatus(s: StatusResult, c: ChalkInstance, colour: boolean): string {
  const paint = (e: StatusEntry) => {
    const label = e.failed ? 'FAILED' : STATE_LABEL[e.state];
    if (e.state === 'applied') return c.green(label);
    if (e.state === 'pending') return c.yellow(label);
    return c.red(label);
  };
  const rows = s.entries.map((e) => [
    e.kind,
    e.name,
    paint(e),
    e.appliedAt
      ? e.appliedAt
          .toISOString()
          .replace('T', ' ')
          .replace(/\.\d+Z$/, 'Z')
      : '',
    e.markedOnly ? 'marked applied' : (e.appliedBy ?? ''),
    e.kind === 'data' ? (e.transactional ? 'yes' : c.yellow('no')) : '',
    e.description ?? '',
  ]);
  const lines: string[] = [];
  if (rows.length > 0) {
    lines.push(renderTable({ head: ['kind', 'name', 'state', 'applied at', 'by', 'txn', 'description'], rows, colour }));
  } else {
    lines.push('no migrations found');
  }
  const n = s.counts;
  lines.push(
    `${n.applied} applied, ${n.pending} pending${n.changed ? `, ${c.red(`${n.changed} changed`)}` : ''}${n.missing ? `, ${c.red(`${n.missing} missing`)}` : ''}${n['out-of-order'] ? `, ${c.red(`${n['out-of-order']} out of order`)}` : ''}`,
  );
  for (const p of s.problems) lines.push(`${c.red('✗')} ${p.path}: ${p.cause}`);
  if (s.backfills.length > 0) {
    const unfinished = s.backfills.filter((b) => !b.finished).length;
    const unrecorded = s.backfills.length - unfinished;
    if (unfinished > 0) lines.push(c.yellow(`${unfinished} unfinished backfill(s): dbops migrate up resumes from the checkpoint`));
    if (unrecorded > 0) {
      lines.push(
        c.red(
          `${unrecorded} backfill(s) ran every batch but were not recorded (validate failed): fix the data and run dbops migrate up, or undo with dbops migrate down`,
        ),
      );
    }
    lines.push(renderBackfillStatus(s.backfills, colour));
  }
  return lines.join('\n');
}

export function renderValidate(v: ValidateResult, c: ChalkInstance): string {
  const lines: string[] = [];
  for (const k of v.checked) {
    const verdict = k.verdict === null ? c.dim('no validate()') : k.verdict ? c.green('ok') : c.red(k.error ? 'ERROR' : 'FALSE');
    lines.push(`${verdict.padEnd(4)} ${k.name} ${c.dim(fmtDuration(k.durationMs))}${k.error ? `: ${k.error}` : ''}`);
  }
  for (const f of v.findings) lines.push(`${c.red('✗')} ${f.message}`);
  lines.push(
    v.ok
      ? `${c.green('ok')}: ${v.checked.length} applied migration(s) checked, no drift`
      : `${c.red(`${v.findings.length} finding(s)`)}: ${v.checked.length} applied migration(s) checked`,
  );
  return lines.join('\n');
}
