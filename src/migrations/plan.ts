/**
 * Pure planning logic (no I/O): drift status, the schema + data timeline, and which migrations
 * `up` / `down` select. Unit-tested without a database.
 */
import { UsageError } from '../errors.js';
import type { DriftState, LedgerRow, MigrationKind, MigrationStatus, StatusEntry, ValidateFinding } from './types.js';

export interface DiskMigration {
  name: string;
  timestamp: string;
  checksum: string;
  transactional: boolean;
  description?: string | undefined;
}

export interface SchemaFileInfo {
  name: string;
}

export interface SchemaAppliedInfo {
  name: string;
  startedAt: Date;
  finishedAt: Date | null;
  rolledBackAt: Date | null;
}

/** Timestamp prefix of a Prisma migration folder or data migration (first 14 digits, else the name). */
export function timestampOf(name: string): string {
  return /^(\d{14})/.exec(name)?.[1] ?? name;
}

/** Timeline order: timestamp, then schema before data at the same instant, then name. */
export function compareTimeline(
  a: { kind: MigrationKind; name: string },
  b: { kind: MigrationKind; name: string },
): number {
  const ta = timestampOf(a.name);
  const tb = timestampOf(b.name);
  if (ta !== tb) return ta < tb ? -1 : 1;
  if (a.kind !== b.kind) return a.kind === 'schema' ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Regex guess of `transaction: false` for a module that is not loaded (status does not execute code). */
export function declaresNoTransaction(source: string): boolean {
  return /\btransaction\s*:\s*false\b/.test(source);
}

export function computeStatus(input: {
  disk: DiskMigration[];
  ledger: LedgerRow[];
  schemaFiles?: SchemaFileInfo[];
  schemaApplied?: SchemaAppliedInfo[];
  ledgerExists: boolean;
}): MigrationStatus {
  const entries: StatusEntry[] = [];
  const byName = new Map(input.ledger.map((r) => [r.name, r]));
  const newestApplied = newestName(input.ledger.map((r) => r.name));
  const onDisk = new Set<string>();
  for (const m of input.disk) {
    onDisk.add(m.name);
    const row = byName.get(m.name);
    let state: DriftState;
    if (!row) state = m.name < newestApplied ? 'out-of-order' : 'pending';
    else state = row.checksum === m.checksum ? 'applied' : 'changed';
    entries.push({
      kind: 'data',
      name: m.name,
      timestamp: m.timestamp,
      state,
      transactional: row ? row.transactional : m.transactional,
      description: row?.description ?? m.description ?? null,
      appliedAt: row?.finishedAt ?? null,
      appliedBy: row ? whoApplied(row) : null,
      durationMs: row?.durationMs ?? null,
      markedOnly: row?.markedOnly ?? false,
    });
  }
  for (const row of input.ledger) {
    if (onDisk.has(row.name)) continue;
    entries.push({
      kind: 'data',
      name: row.name,
      timestamp: timestampOf(row.name),
      state: 'missing',
      transactional: row.transactional,
      description: row.description,
      appliedAt: row.finishedAt,
      appliedBy: whoApplied(row),
      durationMs: row.durationMs,
      markedOnly: row.markedOnly,
    });
  }
  // Prisma schema migrations: applied = finished and not rolled back (as `prisma migrate status`).
  const schemaRows = new Map<string, SchemaAppliedInfo>();
  for (const r of input.schemaApplied ?? []) {
    const prev = schemaRows.get(r.name);
    if (!prev || (r.finishedAt && !r.rolledBackAt)) schemaRows.set(r.name, r);
  }
  const done = [...schemaRows.values()].filter((r) => r.finishedAt && !r.rolledBackAt).map((r) => r.name);
  const newestSchema = newestName(done);
  const schemaOnDisk = new Set<string>();
  for (const f of input.schemaFiles ?? []) {
    schemaOnDisk.add(f.name);
    const r = schemaRows.get(f.name);
    const applied = Boolean(r?.finishedAt && !r.rolledBackAt);
    entries.push({
      kind: 'schema',
      name: f.name,
      timestamp: timestampOf(f.name),
      state: applied ? 'applied' : f.name < newestSchema ? 'out-of-order' : 'pending',
      transactional: true,
      description: null,
      appliedAt: applied ? (r?.finishedAt ?? null) : null,
      appliedBy: null,
      durationMs: r?.finishedAt ? r.finishedAt.getTime() - r.startedAt.getTime() : null,
      markedOnly: false,
      ...(r && !applied ? { failed: true } : {}),
    });
  }
  for (const r of schemaRows.values()) {
    if (schemaOnDisk.has(r.name) || !(r.finishedAt && !r.rolledBackAt)) continue;
    entries.push({
      kind: 'schema',
      name: r.name,
      timestamp: timestampOf(r.name),
      state: 'missing',
      transactional: true,
      description: null,
      appliedAt: r.finishedAt,
      appliedBy: null,
      durationMs: r.finishedAt ? r.finishedAt.getTime() - r.startedAt.getTime() : null,
      markedOnly: false,
    });
  }
  entries.sort(compareTimeline);
  const counts: Record<DriftState, number> = { applied: 0, pending: 0, changed: 0, missing: 0, 'out-of-order': 0 };
  for (const e of entries) counts[e.state]++;
  const drift = entries.filter((e) => e.state === 'changed' || e.state === 'missing' || e.state === 'out-of-order');
  return { entries, counts, drift, ledgerExists: input.ledgerExists };
}

/** The greatest name (names start with a timestamp), '' for none. */
export function newestName(names: string[]): string {
  return [...names].sort().at(-1) ?? '';
}

function whoApplied(row: LedgerRow): string {
  const who = [row.appliedBy, row.appliedHost].filter(Boolean).join('@') || row.dbUser || 'unknown';
  return row.ciJob ? `${who} (${row.ciJob})` : who;
}

export interface UpSelection {
  to?: string | undefined;
  step?: number | undefined;
}

/**
 * The pending items `up` should run, in timeline order: everything, up to and including `to`,
 * or the first `step`. `to` must name a known migration.
 */
export function selectUp<T extends { kind: MigrationKind; name: string }>(
  pending: T[],
  known: Set<string>,
  sel: UpSelection,
): T[] {
  const ordered = [...pending].sort(compareTimeline);
  if (sel.to !== undefined) {
    if (!known.has(sel.to))
      throw new UsageError(`--to ${sel.to}: no such migration`, { hint: 'see dbops migrate status for the names' });
    const target = ordered.find((m) => m.name === sel.to);
    if (!target) return [];
    return ordered.filter((m) => compareTimeline(m, target) <= 0);
  }
  if (sel.step !== undefined) return ordered.slice(0, sel.step);
  return ordered;
}

/**
 * The applied data migrations `down` reverts, newest first: `step` of them (default 1), or all
 * newer than `to` (the database is left as it was right after `to`).
 */
export function selectDown(appliedNames: string[], sel: UpSelection): string[] {
  const newestFirst = [...appliedNames].sort().reverse();
  if (sel.to !== undefined) {
    if (!appliedNames.includes(sel.to)) {
      throw new UsageError(`--to ${sel.to}: that migration is not applied`, {
        hint: 'down --to NAME reverts everything applied after NAME and keeps NAME',
      });
    }
    const to = sel.to;
    return newestFirst.filter((n) => n > to);
  }
  return newestFirst.slice(0, sel.step ?? 1);
}

/** Unapplied Prisma migrations older than a data migration (it may need their columns). */
export function olderPendingSchema(dataName: string, pendingSchema: string[]): string[] {
  return pendingSchema
    .filter((s) => compareTimeline({ kind: 'schema', name: s }, { kind: 'data', name: dataName }) < 0)
    .sort();
}

/** What `up` warns about before it runs: pending migrations older than the newest applied, changed files. */
export function upWarnings(
  disk: { name: string; checksum: string }[],
  ledger: LedgerRow[],
  pending: string[],
): string[] {
  const warnings: string[] = [];
  const newest = newestName(ledger.map((r) => r.name));
  for (const name of pending)
    if (name < newest)
      warnings.push(`${name} is older than the newest applied migration ${newest} (out of order); applying it`);
  const checksums = new Map(disk.map((f) => [f.name, f.checksum]));
  for (const r of ledger) {
    const checksum = checksums.get(r.name);
    if (checksum !== undefined && checksum !== r.checksum)
      warnings.push(
        `${r.name} changed since it was applied (checksum differs; dbops migrate repair accepts the change)`,
      );
  }
  return warnings;
}

/** The drift a CI gate fails on, one finding per migration. */
export function driftFindings(drift: StatusEntry[]): ValidateFinding[] {
  return drift.map((e) => ({
    name: e.name,
    kind: e.state as ValidateFinding['kind'],
    message:
      e.state === 'changed'
        ? `${e.name} changed since it was applied (checksum differs; if the edit is deliberate: dbops migrate repair ${e.name})`
        : e.state === 'missing'
          ? `${e.name} is applied but its file is missing`
          : `${e.name} is pending but older than the newest applied migration`,
  }));
}

/** Consecutive schema migrations run together (under one lock transaction); data migrations one by one. */
export function groupRuns<T extends { kind: MigrationKind; name: string }>(selected: T[]): T[][] {
  const groups: T[][] = [];
  for (const item of selected) {
    const last = groups.at(-1);
    if (item.kind === 'schema' && last?.[0]?.kind === 'schema') last.push(item);
    else groups.push([item]);
  }
  return groups;
}
