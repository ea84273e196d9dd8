import { beforeAll, describe, expect, it } from 'vitest';
import { parsePgssVersion, pgssColumns } from '../../src/diagnostics/pgss-version.js';
import {
  loadOriginParser,
  normaliseQuery,
  originLabel,
  parseSqlCommenterTags,
  prismaOrigin,
  shortenQuery,
} from '../../src/diagnostics/prisma-origin.js';
import { readPrismaModels } from '../../src/diagnostics/prisma-schema.js';
import {
  type Baseline,
  buildReport,
  evaluateGates,
  type PgssRead,
  parseBaseline,
  parseSnapshot,
  REPORT_KIND,
  type ServerIdentity,
  SNAPSHOT_KIND,
  type Snapshot,
  type StatementCounters,
  snapshotOf,
} from '../../src/diagnostics/slow-queries.js';
import { isPreloaded } from '../../src/diagnostics/slow-queries-read.js';

const server = (over: Partial<ServerIdentity> = {}): ServerIdentity => ({
  systemIdentifier: '7400000000000000001',
  serverVersion: '18.4',
  serverVersionNum: 180004,
  database: 'app',
  dbid: 16384,
  currentUser: 'postgres',
  postmasterStart: '2026-01-01T00:00:00.000Z',
  pgssVersion: '1.12',
  statsReset: '2026-01-01T00:00:00.000Z',
  dealloc: 0,
  trackPlanning: false,
  track: 'top',
  takenAt: '2026-01-01T01:00:00.000Z',
  ...over,
});

/** Counters of `calls` executions, each taking the times in `times` (cycled). */
function stmt(
  queryid: string,
  query: string,
  times: number[],
  over: Partial<StatementCounters> = {},
): StatementCounters {
  const total = times.reduce((a, b) => a + b, 0);
  const mean = total / times.length;
  const sd = Math.sqrt(times.reduce((a, t) => a + (t - mean) ** 2, 0) / times.length);
  return {
    queryid,
    userid: 10,
    dbid: 16384,
    rolname: 'postgres',
    calls: times.length,
    totalExecMs: total,
    totalPlanMs: 0,
    stddevExecMs: sd,
    maxExecMs: Math.max(...times),
    rows: times.length,
    sharedBlksHit: 9 * times.length,
    sharedBlksRead: times.length,
    sharedBlksWritten: 0,
    tempBlksRead: 0,
    tempBlksWritten: 0,
    blkReadMs: 0,
    blkWriteMs: 0,
    statsSince: null,
    query,
    ...over,
  };
}

const read = (statements: StatementCounters[], over: Partial<ServerIdentity> = {}): PgssRead => ({
  server: server(over),
  statements,
  totals: null,
});
const opts = { sort: 'total' as const, limit: 0, slow: { minMeanMs: 20, minCalls: 100 }, onlySlow: false };

describe('pg_stat_statements versions', () => {
  it('uses total_time before 1.8, exec+plan after, shared_blk_* from 1.11', () => {
    const v17 = pgssColumns(parsePgssVersion('1.7'));
    expect(v17.execTotal).toBe('s.total_time');
    expect(v17.planTotal).toBe('0::float8');
    expect(v17.toplevel).toBe('');
    expect(v17.hasInfoView).toBe(false);
    const v110 = pgssColumns(parsePgssVersion('1.10'));
    expect(v110.execTotal).toBe('s.total_exec_time');
    expect(v110.planTotal).toBe('s.total_plan_time');
    expect(v110.blkReadTime).toBe('s.blk_read_time');
    expect(v110.toplevel).toBe('AND s.toplevel');
    expect(v110.hasInfoView).toBe(true);
    const v111 = pgssColumns(parsePgssVersion('1.11'));
    expect(v111.blkReadTime).toContain('shared_blk_read_time');
    expect(v111.statsSince).toBe('s.stats_since');
    // 1.10 > 1.9: compared as numbers, not strings.
    expect(pgssColumns(parsePgssVersion('1.9')).hasStatsSince).toBe(false);
  });

  it('reads shared_preload_libraries lists', () => {
    expect(isPreloaded('pg_stat_statements')).toBe(true);
    expect(isPreloaded('auto_explain, "pg_stat_statements"')).toBe(true);
    expect(isPreloaded('$libdir/pg_stat_statements')).toBe(true);
    expect(isPreloaded('pg_stat_statements_extra')).toBe(false);
    expect(isPreloaded('')).toBe(false);
    expect(isPreloaded(null)).toBe(null);
  });
});

describe('Prisma origin', () => {
  beforeAll(() => loadOriginParser());

  it('reads the prismaQuery tag Prisma 7 appends (keys sorted, values URI-encoded): count, upsert and the $ raw names', () => {
    const q = `SELECT "public"."Post"."id" FROM "public"."Post" WHERE "public"."Post"."authorId" IN ($1 /*, ... */) OFFSET $2 /*prismaQuery='User.findMany%3AeyJ3In0',route='%2Fx%20y'*/`;
    expect(parseSqlCommenterTags(q)).toEqual({ prismaQuery: 'User.findMany:eyJ3In0', route: '/x y' });
    expect(prismaOrigin(q)).toMatchObject({ model: 'User', operation: 'findMany', source: 'tag', certain: true });
    expect(prismaOrigin(`SELECT 1 /*prismaQuery='queryRaw'*/`)).toMatchObject({
      operation: '$queryRaw',
      source: 'tag',
    });
    expect(originLabel(prismaOrigin(`UPDATE x SET a = $1 /*prismaQuery='executeRaw'*/`))).toBe('$executeRaw');
    expect(
      prismaOrigin(`INSERT INTO "public"."User" ("id") VALUES ($1) /*prismaQuery='User.createOne%3Ae30'*/`),
    ).toMatchObject({
      model: 'User',
      operation: 'create',
    });
    // count() reaches Prisma as aggregate selecting only _count; a real aggregate keeps its name.
    const shape = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const count = `SELECT 1 /*prismaQuery='Post.aggregate%3A${shape({ select: { _count: { select: { _all: true } } } })}'*/`;
    expect(originLabel(prismaOrigin(count))).toBe('Post.count');
    const agg = `SELECT 1 /*prismaQuery='Post.aggregate%3A${shape({ select: { _count: { select: { _all: true } }, _max: { select: { id: true } } } })}'*/`;
    expect(originLabel(prismaOrigin(agg))).toBe('Post.aggregate');
    expect(originLabel(prismaOrigin(`SELECT 1 /*prismaQuery='Product.upsertOne%3Ae30'*/`))).toBe('Product.upsert');
  });

  it('labels from the SQL Prisma emits: certain only where one call emits that shape', () => {
    const certain: Array<[string, string]> = [
      [
        `SELECT "public"."User"."id" FROM "public"."User" WHERE "public"."User"."isActive" = $1 OFFSET $2`,
        'User.findMany',
      ],
      [
        `INSERT INTO "public"."User" ("id","email") VALUES ($1,$2), ($3,$4) RETURNING "public"."User"."id"`,
        'User.createManyAndReturn',
      ],
      [
        `INSERT INTO "public"."User" ("id","email") VALUES ($1,$2) ON CONFLICT ("email") DO UPDATE SET "name" = $3 WHERE ("public"."User"."email" = $4 AND $5=$6) RETURNING "public"."User"."id"`,
        'User.upsert',
      ],
      [
        `UPDATE "public"."User" SET "name" = $1 WHERE ("public"."User"."id" = $2 AND $3=$4) RETURNING "public"."User"."id"`,
        'User.update',
      ],
      [
        `DELETE FROM "public"."Order" WHERE ("public"."Order"."id" = $1 AND $2=$3) RETURNING "public"."Order"."id"`,
        'Order.delete',
      ],
      [
        `SELECT COUNT(*) AS "_count$_all" FROM (SELECT "public"."User"."id" FROM "public"."User" WHERE $2=$3 OFFSET $1) AS "sub"`,
        'User.count',
      ],
      [
        `SELECT MAX("createdAt") AS "_max$createdAt" FROM (SELECT "public"."User"."createdAt" FROM "public"."User" OFFSET $1) AS "sub"`,
        'User.aggregate',
      ],
      [
        `SELECT "public"."Order"."userId" FROM "public"."Order" WHERE $2=$3 GROUP BY "public"."Order"."userId" OFFSET $1`,
        'Order.groupBy',
      ],
    ];
    for (const [sql, label] of certain) expect(originLabel(prismaOrigin(sql)), sql).toBe(label);
    const guesses: Array<[string, string]> = [
      [
        `SELECT "public"."User"."id" FROM "public"."User" WHERE ("public"."User"."id" = $1 AND $4=$5) LIMIT $2 OFFSET $3`,
        'User.findUnique?',
      ],
      [
        `SELECT "public"."User"."id" FROM "public"."User" WHERE "public"."User"."name" = $1 LIMIT $2 OFFSET $3`,
        'User.findFirst?',
      ],
      // A relation load (include) or findUniques batched into one IN.
      [
        `SELECT "public"."Post"."id" FROM "public"."Post" WHERE "public"."Post"."authorId" IN ($1 /*, ... */) OFFSET $2`,
        'Post.findMany?',
      ],
      [`INSERT INTO "public"."User" ("id","email") VALUES ($1,$2) RETURNING "public"."User"."id"`, 'User.create?'],
      [`INSERT INTO "public"."User" ("id","email") VALUES ($1,$2), ($3,$4)`, 'User.createMany?'],
      [`UPDATE "public"."User" SET "name" = $1 WHERE "public"."User"."name" = $2`, 'User.updateMany?'],
      [`DELETE FROM "public"."Order" WHERE "public"."Order"."status" = $1`, 'Order.deleteMany?'],
      [
        `SELECT "public"."Product"."id" FROM "public"."Product" WHERE ("public"."Product"."id" = $1 AND $3=$4) OFFSET $2`,
        'Product.upsert?',
      ],
    ];
    for (const [sql, label] of guesses) expect(originLabel(prismaOrigin(sql)), sql).toBe(label);
    // Hand-written SQL, even naming "public"."Order": no label at all.
    for (const sql of [
      'select pg_sleep($1)',
      'SELECT * FROM users WHERE id = $1',
      `SELECT "id", "status" FROM "public"."Order" WHERE "userId" = $1`,
      `UPDATE "public"."Product" SET "stock" = "stock" + $2 WHERE "id" = $1`,
      `DELETE FROM "public"."Like" WHERE "userId" = $1 RETURNING "id"`,
      `SELECT "t0"."id" FROM "public"."User" AS "t0" WHERE "t0"."email" = $1 LIMIT $2`,
    ]) {
      expect(prismaOrigin(sql), sql).toEqual({ source: 'none', certain: false, tags: {} });
    }
  });

  it("schema.prisma's relations: a write filtering on no relation column is certain, one on a relation column a guess", async () => {
    const models = await readPrismaModels([
      'model User {\n id String @id\n name String?\n posts Post[]\n}\nmodel Post {\n id String @id\n authorId String @map("author_id")\n author User @relation(fields: [authorId], references: [id])\n @@map("posts")\n}',
    ]);
    expect(models.byTable.get('posts')?.relationColumns.get('author_id')).toBe('User');
    const byName = `UPDATE "public"."User" SET "name" = $1 WHERE "public"."User"."name" = $2`;
    expect(originLabel(prismaOrigin(byName, models))).toBe('User.updateMany');
    const byAuthor = `UPDATE "public"."posts" SET "title" = $1 WHERE "public"."posts"."author_id" = $2`;
    expect(originLabel(prismaOrigin(byAuthor, models))).toBe('Post.updateMany?');
    // A table that is no model of the schema is not this application's Prisma.
    expect(prismaOrigin(`DELETE FROM "public"."audit" WHERE "public"."audit"."at" < $1`, models).source).toBe('none');
  });

  it('normalises whitespace and shortens without the tags', () => {
    expect(normaliseQuery('  SELECT\n\t1,\n   2  ')).toBe('SELECT 1, 2');
    expect(shortenQuery(`SELECT 1 /*prismaQuery='queryRaw'*/`, 60)).toBe('SELECT 1');
    expect(shortenQuery('SELECT 1, 2, 3, 4', 10)).toBe('SELECT 1,…');
  });
});

describe('report, ranking and slow marking', () => {
  it('ranks by each key and marks slow by mean and calls', () => {
    const a = stmt('1', 'SELECT a', Array(100).fill(25)); // total 2500, mean 25, slow
    const b = stmt('2', 'SELECT b', Array(1000).fill(3)); // total 3000, mean 3
    const c = stmt('3', 'SELECT c', Array(5).fill(400)); // total 2000, mean 400, too few calls
    const r = buildReport(read([a, b, c]), opts);
    expect(r.statements.map((s) => s.queryid)).toEqual(['2', '1', '3']);
    expect(r.statements.map((s) => s.slow)).toEqual([false, true, false]);
    expect(r.totals).toMatchObject({ statements: 3, calls: 1105, totalMs: 7500, slowStatements: 1 });
    expect(r.statements[0]?.sharePct).toBeCloseTo(40);
    expect(r.statements[0]?.hitRatio).toBeCloseTo(0.9);
    expect(buildReport(read([a, b, c]), { ...opts, sort: 'mean' }).statements.map((s) => s.queryid)).toEqual([
      '3',
      '1',
      '2',
    ]);
    expect(buildReport(read([a, b, c]), { ...opts, sort: 'calls' }).statements.map((s) => s.queryid)).toEqual([
      '2',
      '1',
      '3',
    ]);
    const only = buildReport(read([a, b, c]), { ...opts, onlySlow: true, slow: { minMeanMs: 20, minCalls: 5 } });
    expect(only.statements.map((s) => s.queryid)).toEqual(['1', '3']);
    const limited = buildReport(read([a, b, c]), { ...opts, limit: 1 });
    expect(limited.statements).toHaveLength(1);
    expect(limited.truncated).toBe(true);
  });
});

describe('origin refined by rows per call', () => {
  beforeAll(() => loadOriginParser());
  it('a LIMITed Prisma SELECT returning more than one row per call is a findMany', () => {
    const q = `SELECT "public"."User"."id" FROM "public"."User" ORDER BY "public"."User"."id" ASC LIMIT $1 OFFSET $2`;
    const many = stmt('1', q, [1, 1], { rows: 40 });
    const one = stmt('2', q.replace('ORDER BY', 'WHERE ("public"."User"."id" = $3 AND $4=$5) ORDER BY'), [1, 1], {
      rows: 2,
    });
    const r = buildReport(read([many, one]), opts);
    expect(r.statements.find((s) => s.queryid === '1')?.origin.operation).toBe('findMany');
    expect(r.statements.find((s) => s.queryid === '2')?.origin.operation).toBe('findUnique');
  });
});

describe('deltas between snapshots', () => {
  const before = snapshotOf(
    read([stmt('1', 'SELECT a', [10, 10]), stmt('2', 'SELECT b', [5]), stmt('9', 'SELECT gone', [1])]),
  );

  it('subtracts counters, recovers the window stddev, handles new and disappeared statements', () => {
    const now = read(
      [
        stmt('1', 'SELECT a', [10, 10, 20, 40]), // window: 20, 40
        stmt('2', 'SELECT b', [5]), // no calls in the window
        stmt('3', 'SELECT new', [7, 7, 7]),
      ],
      { takenAt: '2026-01-01T01:10:00.000Z' },
    );
    const r = buildReport(now, { ...opts, since: before });
    expect(r.window).toMatchObject({ mode: 'since-snapshot', from: before.server.takenAt, seconds: 600 });
    const a = r.statements.find((s) => s.queryid === '1');
    expect(a).toMatchObject({ calls: 2, totalMs: 60, meanMs: 30, maxMs: 40, status: 'changed' });
    expect(a?.stddevMs).toBeCloseTo(10, 6);
    expect(r.statements.find((s) => s.queryid === '2')).toBeUndefined();
    expect(r.statements.find((s) => s.queryid === '3')).toMatchObject({ calls: 3, status: 'new' });
    expect(r.disappeared.map((d) => d.queryid)).toEqual(['9']);
    expect(r.notes.join('\n')).toMatch(/1 statements of the snapshot are gone/);
    expect(r.totals).toMatchObject({ statements: 2, calls: 5, totalMs: 81 });
  });

  it('an unchanged max is only an upper bound for the window', () => {
    const now = read([stmt('1', 'SELECT a', [10, 10, 5])]);
    const a = buildReport(now, { ...opts, since: before }).statements[0];
    expect(a).toMatchObject({ calls: 1, maxMs: null, maxUpperBoundMs: 10 });
  });

  it('counters going down mean the entry was reset: count from the restart', () => {
    const now = read([stmt('1', 'SELECT a', [50])]);
    const r = buildReport(now, { ...opts, since: before });
    expect(r.statements[0]).toMatchObject({ queryid: '1', calls: 1, meanMs: 50, status: 'reset' });
    expect(r.notes.join('\n')).toMatch(/reset or evicted and re-created/);
  });

  it('a full reset (pg_stat_statements_info.stats_reset moved) is reported', () => {
    const now = read([stmt('1', 'SELECT a', [10, 10, 10, 10])], { statsReset: '2026-01-01T01:05:00.000Z' });
    const r = buildReport(now, { ...opts, since: before });
    // More calls than before, but after a reset: the counters are the window since the reset.
    expect(r.statements[0]).toMatchObject({ calls: 4, status: 'reset' });
    expect(r.notes.join('\n')).toMatch(/was reset at 2026-01-01T01:05:00.000Z, after the snapshot/);
  });

  it('a changed stats_since (1.11+) reveals a re-created entry even when counters grew', () => {
    const b = snapshotOf(read([stmt('1', 'SELECT a', [10], { statsSince: '2026-01-01T00:00:00.000Z' })]));
    const now = read([stmt('1', 'SELECT a', [10, 10, 10], { statsSince: '2026-01-01T00:30:00.000Z' })]);
    expect(buildReport(now, { ...opts, since: b }).statements[0]).toMatchObject({ calls: 3, status: 'reset' });
  });

  it('reports evictions (dealloc grew)', () => {
    const now = read([stmt('1', 'SELECT a', [10, 10, 10])], { dealloc: 3 });
    expect(buildReport(now, { ...opts, since: before }).notes.join('\n')).toMatch(/3 entries were evicted/);
  });

  it('round-trips a snapshot through JSON and refuses other files', () => {
    const s = parseSnapshot(JSON.parse(JSON.stringify(before)), 'f.json');
    expect(s.kind).toBe(SNAPSHOT_KIND);
    expect(() => parseSnapshot({ kind: 'other' }, 'f.json')).toThrow(/f.json is not a dbops slow-queries snapshot/);
  });
});

describe('gates', () => {
  const report = (statements: StatementCounters[]) => buildReport(read(statements), opts).statements;
  const g = { gateMinCalls: 1, regressionMinMs: 1 };

  it('--fail-on-mean-ms fails on any statement over N with enough calls', () => {
    const stats = report([stmt('1', 'SELECT a', [30, 30]), stmt('2', 'SELECT b', [5]), stmt('3', 'SELECT c', [100])]);
    const r = evaluateGates(stats, { ...g, failOnMeanMs: 20 }, opts.slow);
    expect(r.failed).toBe(true);
    expect(r.failures.map((f) => f.queryid).sort()).toEqual(['1', '3']);
    expect(
      evaluateGates(stats, { ...g, failOnMeanMs: 20, gateMinCalls: 2 }, opts.slow).failures.map((f) => f.queryid),
    ).toEqual(['1']);
    expect(evaluateGates(stats, { ...g, failOnMeanMs: 200 }, opts.slow).failed).toBe(false);
  });

  it('--fail-on-regression: a known mean grew > PCT, or a new statement is over the threshold', () => {
    const baseline: Baseline = {
      source: 'report',
      truncated: false,
      entries: [
        { queryid: '1', rolname: 'postgres', text: 'SELECT a', calls: 10, meanMs: 10 },
        { queryid: 'other-server', rolname: 'postgres', text: 'SELECT b', calls: 10, meanMs: 10 },
      ],
    };
    const stats = report([
      stmt('1', 'SELECT a', [16]),
      stmt('2', 'SELECT b', [14]),
      stmt('3', 'SELECT new', [25]),
      stmt('4', 'SELECT new2', [2]),
    ]);
    const pass = evaluateGates(stats, { ...g, baseline, failOnRegressionPct: 100 }, opts.slow);
    expect(pass.failures.map((f) => [f.kind, f.queryid])).toEqual([['new-slow', '3']]);
    const tight = evaluateGates(stats, { ...g, baseline, failOnRegressionPct: 50 }, opts.slow);
    expect(tight.failures.map((f) => [f.kind, f.queryid]).sort()).toEqual([
      ['new-slow', '3'],
      ['regression', '1'],
    ]);
    expect(tight.failures.find((f) => f.kind === 'regression')?.growthPct).toBeCloseTo(60);
    // Matched by text when queryids differ (another server): 10 -> 14 is +40%.
    expect(
      evaluateGates(stats, { ...g, baseline, failOnRegressionPct: 30 }, opts.slow).failures.map((f) => f.queryid),
    ).toContain('2');
    // Tiny statements are not judged as regressions below --regression-min-ms.
    expect(
      evaluateGates(stats, { ...g, regressionMinMs: 20, baseline, failOnRegressionPct: 10 }, opts.slow).failures.map(
        (f) => f.kind,
      ),
    ).toEqual(['new-slow']);
  });

  it('parses a --json report or a snapshot as a baseline', () => {
    const snap: Snapshot = snapshotOf(read([stmt('1', 'SELECT  a', [10, 20])]));
    expect(parseBaseline(JSON.parse(JSON.stringify(snap)), 'b.json').entries).toEqual([
      { queryid: '1', rolname: 'postgres', text: 'SELECT a', calls: 2, meanMs: 15 },
    ]);
    const rep = buildReport(read([stmt('1', 'SELECT a', [10, 20])]), opts);
    const b = parseBaseline(JSON.parse(JSON.stringify(rep)), 'r.json');
    expect(rep.kind).toBe(REPORT_KIND);
    expect(b).toMatchObject({ source: 'report', entries: [{ queryid: '1', meanMs: 15, calls: 2 }] });
    expect(() => parseBaseline({ hello: 1 }, 'x.json')).toThrow(/neither a dbops slow-queries report/);
  });
});
