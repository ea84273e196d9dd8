/**
 * pg_stat_statements changed its columns across extension versions. The view's columns follow the
 * extension version installed in the database (`pg_extension.extversion`), not the server version:
 * a server upgraded without `ALTER EXTENSION pg_stat_statements UPDATE` keeps the old columns.
 *
 * - < 1.8: `total_time`, `mean_time`, `stddev_time`, `max_time`; no planning statistics.
 * - 1.8 (PG13): `total_exec_time` & co., `total_plan_time` (0 unless `track_planning` is on).
 * - 1.9 (PG14): `toplevel`, and the `pg_stat_statements_info` view (`dealloc`, `stats_reset`).
 * - 1.11 (PG17): `blk_read_time`/`blk_write_time` split into `shared_blk_*` and `local_blk_*`;
 *   `stats_since` (when this entry started counting).
 */

export interface PgssVersion {
  /** As installed, e.g. "1.10". */
  text: string;
  major: number;
  minor: number;
}

export function parsePgssVersion(text: string): PgssVersion {
  const m = /^(\d+)\.(\d+)/.exec(text.trim());
  return { text, major: Number(m?.[1] ?? 0), minor: Number(m?.[2] ?? 0) };
}

export function atLeast(v: PgssVersion, major: number, minor: number): boolean {
  return v.major > major || (v.major === major && v.minor >= minor);
}

/** SQL expressions (over alias `s`) for the columns whose names depend on the version. */
export interface PgssColumns {
  execTotal: string;
  planTotal: string;
  stddev: string;
  max: string;
  blkReadTime: string;
  blkWriteTime: string;
  statsSince: string;
  /** Extra WHERE condition: only top-level statements, where the column exists. */
  toplevel: string;
  hasInfoView: boolean;
  hasPlanning: boolean;
  hasStatsSince: boolean;
}

export function pgssColumns(v: PgssVersion): PgssColumns {
  const v18 = atLeast(v, 1, 8);
  const v19 = atLeast(v, 1, 9);
  const v111 = atLeast(v, 1, 11);
  return {
    execTotal: v18 ? 's.total_exec_time' : 's.total_time',
    planTotal: v18 ? 's.total_plan_time' : '0::float8',
    stddev: v18 ? 's.stddev_exec_time' : 's.stddev_time',
    max: v18 ? 's.max_exec_time' : 's.max_time',
    blkReadTime: v111 ? '(s.shared_blk_read_time + s.local_blk_read_time)' : 's.blk_read_time',
    blkWriteTime: v111 ? '(s.shared_blk_write_time + s.local_blk_write_time)' : 's.blk_write_time',
    statsSince: v111 ? 's.stats_since' : 'NULL::timestamptz',
    toplevel: v19 ? 'AND s.toplevel' : '',
    hasInfoView: v19,
    hasPlanning: v18,
    hasStatsSince: v111,
  };
}
