/** The read replicas' section of `dbops pool` (and their lines in `dbops doctor`). */
import type { ChalkInstance } from 'chalk';
import type { ReplicaStatus, ReplicasReport } from '../diagnostics/replicas.js';
import { renderTable } from './table.js';

const bytes = (n: number | null | undefined) => {
  if (n === null || n === undefined) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
};
const ms = (n: number | null | undefined) =>
  n === null || n === undefined ? '' : n < 1000 ? `${n} ms` : `${(n / 1000).toFixed(1)} s`;

function slotCell(replica: ReplicaStatus): string {
  const slot = replica.sender?.slot;
  if (slot) return `${slot.name} ${slot.active ? 'active' : 'INACTIVE'}${slot.walStatus ? ` (${slot.walStatus})` : ''}`;
  return replica.slotName ? `${replica.slotName}` : 'none';
}

export function renderReplicas(report: ReplicasReport, paint: ChalkInstance, colour: boolean): string {
  const out = [
    paint.bold(`Read replicas (${report.replicas.length})`) + paint.dim(`  primary at ${report.primaryLsn ?? '?'}`),
  ];
  out.push(
    renderTable({
      head: ['replica', 'reachable', 'replay lag', 'lag bytes', 'primary sees', 'slot', 'connections', 'headroom'],
      rows: report.replicas.map((r) => [
        r.name,
        r.reachable
          ? r.inRecovery
            ? paint.green('yes')
            : paint.red('NOT A STANDBY')
          : paint.red(`no: ${r.error ?? ''}`),
        ms(r.lagMs),
        bytes(r.lagBytes),
        r.sender
          ? `${r.sender.state}, ${r.sender.syncState}${r.sender.replayLagMs === null ? '' : `, replay lag ${ms(r.sender.replayLagMs)}`}`
          : r.reachable
            ? 'not matched'
            : '',
        slotCell(r),
        r.connections === undefined ? '' : `${r.connections}/${r.maxConnections}`,
        r.headroom ?? '',
      ]),
      colour,
      alignRight: [2, 3, 6, 7],
    }),
  );
  const inactive = report.slots.filter((s) => !s.active);
  if (inactive.length > 0)
    out.push(
      paint.yellow(
        `inactive slot(s): ${inactive.map((s) => `${s.name} (${bytes(s.retainedBytes)} retained)`).join(', ')}`,
      ),
    );
  return out.join('\n');
}
