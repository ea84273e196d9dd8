/**
 * The read replicas (DATABASE_REPLICA_URLS) joined to `dbops pool`'s report: their section, their
 * findings among the pool's (a critical one makes the report fail: exit 3).
 */
import type { Client } from 'pg';
import type { Finding } from '../../diagnostics/findings.js';
import type { ReplicasReport, ReplicaThresholds } from '../../diagnostics/replicas.js';
import type { CommandContext } from '../context.js';

const ORDER = { critical: 0, warning: 1, info: 2 } as const;

export interface ReplicaFlags {
  replicaLagWarn?: number;
  replicaLagCritical?: number;
}

/** A function that adds the replicas to a report (the primary's connection opened once); undefined when none is configured. */
export function replicaJoiner(ctx: CommandContext, flags: ReplicaFlags) {
  if (ctx.config.replicas.length === 0) return undefined;
  let primary: Promise<Client> | undefined;
  const thresholds: Partial<ReplicaThresholds> = {
    ...(flags.replicaLagWarn === undefined ? {} : { lagWarnMs: flags.replicaLagWarn }),
    ...(flags.replicaLagCritical === undefined ? {} : { lagCriticalMs: flags.replicaLagCritical }),
  };
  return async <R extends { ok: boolean; findings: Finding[]; worst: Finding['severity'] | null }>(
    report: R,
  ): Promise<R & { replicas: ReplicasReport }> => {
    const [{ collectReplicas }, { connectPg }] = await Promise.all([
      import('../../diagnostics/replicas.js'),
      import('../../db/pg.js'),
    ]);
    primary ??= ctx.pg({ direct: true, applicationName: 'dbops pool (replicas)' });
    const replicas = await collectReplicas(
      await primary,
      ctx.config.replicas.map((r) => ({
        name: r.name,
        connect: () =>
          connectPg({
            connectionString: r.url,
            timeoutMs: ctx.timeoutMs,
            queryTimeoutMs: ctx.timeoutMs,
            applicationName: 'dbops pool',
            label: `replica ${r.name}`,
          }),
      })),
      thresholds,
    );
    const findings = [...report.findings, ...replicas.findings].sort((a, b) => ORDER[a.severity] - ORDER[b.severity]);
    const critical = replicas.findings.some((f) => f.severity === 'critical');
    return { ...report, ok: report.ok && !critical, worst: findings[0]?.severity ?? null, findings, replicas };
  };
}
