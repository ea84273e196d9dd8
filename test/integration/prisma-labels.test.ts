/**
 * Ground truth for slow-queries' Prisma labels: the Prisma 7 workload of test/helpers/prisma-workload.ts
 * (40+ calls, 30+ distinct operations over the seven example models, raw SQL through $queryRaw,
 * $executeRaw and plain pg), each call's statements isolated by a pg_stat_statements diff, on a
 * database of its own per mode (the view keeps a row's first text, so the modes must not share rows).
 * Asserts that every label shown as certain is right (precision 100%) and reports the recall.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDoctor } from '../../src/diagnostics/doctor.js';
import { loadOriginParser, originLabel, prismaOrigin } from '../../src/diagnostics/prisma-origin.js';
import { type PrismaModels, readPrismaModels } from '../../src/diagnostics/prisma-schema.js';
import { buildReport, readPgss } from '../../src/diagnostics/slow-queries.js';
import { ROOT } from '../helpers/cli.js';
import { type GroundTruth, runWorkload, WORKLOAD } from '../helpers/prisma-workload.js';
import { createTestDatabase, type TestDatabase } from '../helpers/services.js';

interface Score {
  statements: number;
  prismaStatements: number;
  certain: number;
  certainRight: number;
  guessRight: number;
  wrong: string[];
}

/** Scores every (call, statement) pair: a certain label must be one of the call's right labels. */
function score(gt: GroundTruth, models: PrismaModels | undefined): Score {
  const s: Score = { statements: 0, prismaStatements: 0, certain: 0, certainRight: 0, guessRight: 0, wrong: [] };
  for (const { step, rows } of gt.steps) {
    for (const r of rows) {
      const o = prismaOrigin(gt.texts.get(r.queryid) ?? '', models);
      const label = originLabel(o).replace(/\?$/, '');
      s.statements++;
      if (step.right.length > 0) s.prismaStatements++;
      if (o.certain) {
        s.certain++;
        if (step.right.includes(label)) s.certainRight++;
        else s.wrong.push(`${step.call}: ${label} <- ${gt.texts.get(r.queryid)}`);
      } else if (label && step.right.includes(label)) {
        s.guessRight++;
      }
    }
  }
  return s;
}

const pct = (a: number, b: number) => (b === 0 ? 'n/a' : `${((100 * a) / b).toFixed(0)}%`);
const line = (mode: string, s: Score) =>
  `${mode}: ${s.statements} statements (${s.prismaStatements} from Prisma calls); certain ${s.certain}, right ${s.certainRight} ` +
  `(precision ${pct(s.certainRight, s.certain)}), recall ${pct(s.certainRight, s.prismaStatements)} ` +
  `(${s.certainRight}/${s.prismaStatements}); guesses that name the call ${s.guessRight}`;

describe('Prisma labels against a ground-truth workload (Prisma 7, PostgreSQL 18)', () => {
  const dbs: TestDatabase[] = [];
  let plain: GroundTruth;
  let tagged: GroundTruth;
  let models: PrismaModels;
  beforeAll(async () => {
    await loadOriginParser();
    models = await readPrismaModels([readFileSync(join(ROOT, 'prisma', 'schema.prisma'), 'utf8')]);
    const [a, b] = await Promise.all([createTestDatabase(), createTestDatabase()]);
    if (!a || !b) throw new Error('no database');
    dbs.push(a, b);
    plain = await runWorkload(a.url, { comments: false });
    tagged = await runWorkload(b.url, { comments: true });
  });
  afterAll(async () => {
    for (const d of dbs) await d.drop();
  });

  it('runs 30+ distinct operations, every call isolated to its own statements', () => {
    expect(new Set(WORKLOAD.map((s) => s.right[0] ?? s.call)).size).toBeGreaterThanOrEqual(30);
    for (const gt of [plain, tagged]) {
      for (const { step, rows } of gt.steps) expect(rows.length, step.call).toBeGreaterThan(0);
    }
  });

  it('with query-insights comments: every statement labelled right, count and the $ raw names included', ({
    annotate,
  }) => {
    const s = score(tagged, models);
    void annotate(line('query-insights comments', s));
    process.stderr.write(`${line('query-insights comments', s)}\n`);
    expect(s.wrong).toEqual([]);
    expect(s.certainRight).toBe(s.prismaStatements);
    const labels = tagged.steps.map((x) =>
      x.rows.map((r) => originLabel(prismaOrigin(tagged.texts.get(r.queryid) ?? ''))),
    );
    const at = (call: string) => labels[WORKLOAD.findIndex((w) => w.call === call)];
    expect(at('Post.count')).toEqual(['Post.count']);
    expect(at('OrderItem.count')).toEqual(['OrderItem.count']);
    expect(at('$queryRaw')).toEqual(['$queryRaw']);
    expect(at('$executeRaw')).toEqual(['$executeRaw']);
    expect(at('plain pg')).toEqual(['']);
  });

  it.for([
    { mode: 'no comments, with schema.prisma', withSchema: true },
    { mode: 'no comments, without the schema', withSchema: false },
  ])(
    '$mode: every certain label is right, the rest visibly a guess, hand-written SQL unlabelled',
    ({ mode, withSchema }, { annotate }) => {
      const s = score(plain, withSchema ? models : undefined);
      void annotate(line(mode, s));
      process.stderr.write(`${line(mode, s)}\n`);
      expect(s.wrong).toEqual([]);
      expect(s.certain).toBeGreaterThan(0);
      for (const call of ['$queryRaw', '$executeRaw', 'plain pg', 'plain pg (Prisma-like aliases)']) {
        const step = plain.steps.find((x) => x.step.call === call);
        for (const r of step?.rows ?? [])
          expect(prismaOrigin(plain.texts.get(r.queryid) ?? '', models).source, call).toBe('none');
      }
    },
  );

  it('the report says how to get exact labels when no statement carries a comment', async () => {
    const c = new pg.Client({ connectionString: dbs[0]?.url });
    await c.connect();
    try {
      await c.query(`SET pg_stat_statements.track = 'none'`);
      const r = buildReport(await readPgss(c, { mode: 'all' }, 10_000), {
        sort: 'total',
        limit: 0,
        slow: { minMeanMs: 1000, minCalls: 1 },
        onlySlow: false,
      });
      expect(r.notes.join('\n')).toContain('comments: [prismaQueryInsights()]');
    } finally {
      await c.end();
    }
    const t = new pg.Client({ connectionString: dbs[1]?.url });
    await t.connect();
    try {
      await t.query(`SET pg_stat_statements.track = 'none'`);
      const r = buildReport(await readPgss(t, { mode: 'all' }, 10_000), {
        sort: 'total',
        limit: 0,
        slow: { minMeanMs: 1000, minCalls: 1 },
        onlySlow: false,
      });
      expect(r.notes.join('\n')).not.toContain('prismaQueryInsights');
    } finally {
      await t.end();
    }
  });

  it('doctor says the same for the database without comments, and nothing for the one with them', async () => {
    const warnings = async (url: string) => {
      const r = await runDoctor({ postgresUrl: url, timeoutMs: 10_000 });
      return r.components.find((c) => c.component === 'postgres')?.warnings ?? [];
    };
    const [plainWarnings, taggedWarnings] = [await warnings(dbs[0]?.url ?? ''), await warnings(dbs[1]?.url ?? '')];
    expect(plainWarnings.join('\n')).toMatch(
      /\d+ Prisma statements carry no query-insights comment: .*comments: \[prismaQueryInsights\(\)\]/,
    );
    expect(taggedWarnings.join('\n')).not.toContain('query-insights');
  });
});
