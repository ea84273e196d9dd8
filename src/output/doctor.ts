import type { ChalkInstance } from 'chalk';
import type { DoctorReport } from '../diagnostics/doctor.js';
import { renderTable } from './table.js';

const fmtMs = (n: number | undefined) => (n === undefined ? '' : `${n} ms`);

export function renderDoctor(report: DoctorReport, paint: ChalkInstance, colour: boolean): string {
  const rows = report.components.map((k) => [
    k.label,
    k.endpoint,
    k.ok ? paint.green('ok') : k.error?.code === 'SERVER_FULL' ? paint.red('FULL') : paint.red('FAILED'),
    fmtMs(k.connectMs),
    fmtMs(k.roundTripMs),
    k.version ?? '',
    k.ok ? (k.tls ? 'yes' : 'no') : '',
  ]);
  const lines = [
    renderTable({
      head: ['component', 'endpoint', 'status', 'connect', 'round trip', 'version', 'TLS'],
      rows,
      colour,
      alignRight: [3, 4],
    }),
  ];
  for (const k of report.components) {
    if (k.error)
      lines.push(
        `${paint.red('✗')} ${k.label}: ${k.error.message}${k.error.hint ? `\n    hint: ${k.error.hint}` : ''}`,
      );
    const pss = k.details.pgStatStatements as Record<string, unknown> | undefined;
    if (pss) {
      lines.push(
        `pg_stat_statements: ${pss.installed ? `installed ${pss.version}` : 'not installed'}, preloaded ${pss.preloaded === null ? 'unknown' : pss.preloaded ? 'yes' : 'no'}${pss.installed ? `, readable ${pss.readable ? 'yes' : 'no'}` : ''}`,
      );
    }
    const priv = k.details.privileges as Record<string, boolean> | undefined;
    if (priv) {
      const held = Object.entries(priv)
        .filter(([, v]) => v)
        .map(([name]) => name);
      lines.push(
        `role ${String(k.details.user)} on ${String(k.details.database)}: ${held.length ? held.join(', ') : 'no special privileges'}`,
      );
    }
    if (k.component === 'redis' && k.ok) lines.push(`redis: ${k.details.cluster ? 'cluster' : 'standalone'}`);
    if (k.component === 'postgres-replica' && k.ok) {
      const d = k.details as {
        standby?: boolean;
        replayLagMs?: number | null;
        connections?: number;
        maxConnections?: number;
        headroom?: number;
        slot?: string | null;
      };
      lines.push(
        `${k.label}: ${d.standby ? 'standby' : 'NOT a standby'}, replay lag ${d.replayLagMs === null || d.replayLagMs === undefined ? 'unknown' : fmtMs(d.replayLagMs)}, ${d.connections}/${d.maxConnections} connections (headroom ${d.headroom}), slot ${d.slot ?? 'none'}`,
      );
    }
    const ql = k.details.queryLog as
      | { exists: boolean; logQueries: boolean | null; readable: boolean | null }
      | undefined;
    if (k.component === 'clickhouse' && ql) {
      const tables = Object.entries((k.details.systemTables ?? {}) as Record<string, boolean>).map(
        ([t, ok]) => `${t} ${ok ? 'yes' : 'no'}`,
      );
      lines.push(
        `clickhouse: user ${String(k.details.user)} on ${String(k.details.database)}${k.details.readonly ? ` (readonly=${String(k.details.readonly)})` : ''}; ` +
          `query_log ${ql.exists ? 'exists' : 'missing'}, log_queries ${ql.logQueries === null ? 'unknown' : ql.logQueries ? 'on' : 'off'}; readable: ${tables.join(', ')}`,
      );
    }
    for (const w of k.warnings) lines.push(`${paint.yellow('!')} ${k.label}: ${w}`);
  }
  const full = report.components.some((k) => k.error?.code === 'SERVER_FULL');
  lines.push(
    report.ok
      ? paint.green('all configured components reachable')
      : full && report.components.every((k) => k.ok || k.error?.code === 'SERVER_FULL')
        ? paint.red('PostgreSQL is full: it answers but has no connection slot for this role')
        : paint.red('some components are unreachable'),
  );
  return lines.join('\n');
}
