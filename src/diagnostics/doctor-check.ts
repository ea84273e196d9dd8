/** What `dbops doctor` reports of one component (its own file: each component's check builds one). */
export type ComponentKind =
  | 'postgres'
  | 'postgres-via-pgbouncer'
  | 'postgres-replica'
  | 'pgbouncer-admin'
  | 'redis'
  | 'clickhouse';

export interface ComponentCheck {
  component: ComponentKind;
  label: string;
  endpoint: string;
  ok: boolean;
  connectMs?: number;
  roundTripMs?: number;
  version?: string;
  tls?: boolean;
  details: Record<string, unknown>;
  /** Problems that do not make the component unreachable (e.g. pg_stat_statements missing). */
  warnings: string[];
  error?: { message: string; hint?: string | undefined; code: string };
}
