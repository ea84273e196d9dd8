/**
 * A Prisma 7 workload of known calls across the example models, each call's statements isolated
 * by diffing pg_stat_statements (this database only, by dbid) around it: the ground truth the
 * Prisma labels of slow-queries are measured against. The reads of the diff run on a session of
 * their own with `pg_stat_statements.track = 'none'`, so they never appear in the diff.
 */
import { PrismaPg } from '@prisma/adapter-pg';
import { prismaQueryInsights } from '@prisma/sqlcommenter-query-insights';
import pg from 'pg';
import type { PrismaClient as Client } from '../../src/generated/prisma/client.js';

export interface WorkloadStep {
  /** What the call was, as a developer would name it (`Model.operation`, `$queryRaw`, `pg`). */
  call: string;
  /** Labels that are right for its statements (a call's statements all carry the call's label). */
  right: string[];
  run(prisma: Client, raw: pg.Client): Promise<unknown>;
}

const DEC = '12.50';

/** The calls; ids are fixed so that every step finds what it needs. */
export const WORKLOAD: WorkloadStep[] = [
  {
    call: 'User.create',
    right: ['User.create'],
    run: (p) => p.user.create({ data: { id: 'u1', email: 'u1@example.com', name: 'One' } }),
  },
  {
    call: 'User.create (nested posts.create)',
    right: ['User.create'],
    run: (p) =>
      p.user.create({
        data: {
          id: 'u2',
          email: 'u2@example.com',
          name: 'Two',
          posts: {
            create: [
              { id: 'p1', title: 'First', published: true },
              { id: 'p2', title: 'Second' },
            ],
          },
        },
      }),
  },
  {
    call: 'User.createMany',
    right: ['User.createMany'],
    run: (p) =>
      p.user.createMany({
        data: [
          { id: 'u3', email: 'u3@example.com' },
          { id: 'u4', email: 'u4@example.com' },
        ],
      }),
  },
  {
    call: 'Product.createMany (one row)',
    right: ['Product.createMany'],
    run: (p) => p.product.createMany({ data: [{ id: 'pr1', name: 'Pen', price: DEC, stock: 10 }] }),
  },
  {
    call: 'Product.createManyAndReturn',
    right: ['Product.createManyAndReturn'],
    run: (p) =>
      p.product.createManyAndReturn({
        data: [
          { id: 'pr2', name: 'Ink', price: DEC },
          { id: 'pr3', name: 'Pad', price: DEC },
        ],
      }),
  },
  {
    call: 'Product.create',
    right: ['Product.create'],
    run: (p) => p.product.create({ data: { id: 'pr4', name: 'Cap', price: DEC } }),
  },
  {
    call: 'Product.upsert (emulated)',
    right: ['Product.upsert'],
    run: (p) =>
      p.product.upsert({
        where: { id: 'pr1' },
        create: { name: 'Pen', price: DEC },
        update: { stock: { increment: 1 } },
      }),
  },
  {
    call: 'User.upsert (native ON CONFLICT)',
    right: ['User.upsert'],
    run: (p) =>
      p.user.upsert({
        where: { email: 'u5@example.com' },
        create: { email: 'u5@example.com', name: 'Five' },
        update: { name: 'Five' },
      }),
  },
  { call: 'User.findUnique', right: ['User.findUnique'], run: (p) => p.user.findUnique({ where: { id: 'u1' } }) },
  // The same statement as findUnique's (one pg_stat_statements row): either label is as right as a row can be.
  {
    call: 'User.findUniqueOrThrow',
    right: ['User.findUniqueOrThrow', 'User.findUnique'],
    run: (p) => p.user.findUniqueOrThrow({ where: { id: 'u1' } }),
  },
  { call: 'User.findFirst', right: ['User.findFirst'], run: (p) => p.user.findFirst({ where: { name: 'One' } }) },
  { call: 'User.findMany', right: ['User.findMany'], run: (p) => p.user.findMany({ where: { isActive: true } }) },
  {
    call: 'User.findMany (take 1)',
    right: ['User.findMany'],
    run: (p) => p.user.findMany({ where: { isActive: true }, orderBy: { createdAt: 'desc' }, take: 1 }),
  },
  {
    call: 'User.findMany (include posts)',
    right: ['User.findMany'],
    run: (p) => p.user.findMany({ where: { name: { not: null } }, include: { posts: true } }),
  },
  {
    call: 'User.findUnique x3 (batched into IN)',
    right: ['User.findUnique'],
    run: (p) =>
      Promise.all(['u1', 'u2', 'u3'].map((id) => p.user.findUnique({ where: { email: `${id}@example.com` } }))),
  },
  {
    call: 'Post.findMany (orderBy)',
    right: ['Post.findMany'],
    run: (p) => p.post.findMany({ where: { published: true }, orderBy: { createdAt: 'desc' } }),
  },
  {
    call: 'Post.findFirst (include author)',
    right: ['Post.findFirst'],
    run: (p) => p.post.findFirst({ where: { title: 'First' }, include: { author: true } }),
  },
  {
    call: 'Post.update',
    right: ['Post.update'],
    run: (p) => p.post.update({ where: { id: 'p2' }, data: { title: 'Second!' } }),
  },
  {
    call: 'Post.updateMany',
    right: ['Post.updateMany'],
    run: (p) => p.post.updateMany({ where: { authorId: 'u2' }, data: { published: true } }),
  },
  {
    call: 'Post.updateManyAndReturn',
    right: ['Post.updateManyAndReturn'],
    run: (p) => p.post.updateManyAndReturn({ where: { authorId: 'u2' }, data: { content: 'x' } }),
  },
  {
    call: 'Comment.create',
    right: ['Comment.create'],
    run: (p) => p.comment.create({ data: { id: 'c1', postId: 'p1', authorId: 'u1', content: 'Nice' } }),
  },
  {
    call: 'Like.create',
    right: ['Like.create'],
    run: (p) => p.like.create({ data: { id: 'l1', userId: 'u1', postId: 'p1' } }),
  },
  {
    call: 'Comment.findMany (relation filter)',
    right: ['Comment.findMany'],
    run: (p) => p.comment.findMany({ where: { post: { published: true } } }),
  },
  { call: 'Post.count', right: ['Post.count'], run: (p) => p.post.count() },
  { call: 'User.count (where)', right: ['User.count'], run: (p) => p.user.count({ where: { isActive: true } }) },
  {
    call: 'Order.create (nested items.create)',
    right: ['Order.create'],
    run: (p) =>
      p.order.create({
        data: {
          id: 'o1',
          userId: 'u1',
          total: '25.00',
          items: {
            create: [
              { id: 'oi1', productId: 'pr1', quantity: 1, price: DEC },
              { id: 'oi2', productId: 'pr2', quantity: 1, price: DEC },
            ],
          },
        },
      }),
  },
  { call: 'OrderItem.count', right: ['OrderItem.count'], run: (p) => p.orderItem.count() },
  {
    call: 'Order.aggregate',
    right: ['Order.aggregate'],
    run: (p) => p.order.aggregate({ _sum: { total: true }, _max: { createdAt: true } }),
  },
  {
    call: 'OrderItem.aggregate',
    right: ['OrderItem.aggregate'],
    run: (p) => p.orderItem.aggregate({ _avg: { quantity: true } }),
  },
  {
    call: 'Order.groupBy',
    right: ['Order.groupBy'],
    run: (p) => p.order.groupBy({ by: ['status'], _count: { _all: true } }),
  },
  { call: 'Order.groupBy (no aggregates)', right: ['Order.groupBy'], run: (p) => p.order.groupBy({ by: ['userId'] }) },
  {
    call: 'Order.update',
    right: ['Order.update'],
    run: (p) => p.order.update({ where: { id: 'o1' }, data: { status: 'CONFIRMED' } }),
  },
  {
    call: 'Product.findMany (select)',
    right: ['Product.findMany'],
    run: (p) => p.product.findMany({ select: { name: true }, orderBy: { price: 'asc' } }),
  },
  {
    call: 'Product.updateMany',
    right: ['Product.updateMany'],
    run: (p) => p.product.updateMany({ where: { stock: { gt: 0 } }, data: { stock: { decrement: 1 } } }),
  },
  {
    call: 'User.update (select)',
    right: ['User.update'],
    run: (p) => p.user.update({ where: { id: 'u3' }, data: { name: 'Three' }, select: { id: true, name: true } }),
  },
  { call: 'Like.deleteMany', right: ['Like.deleteMany'], run: (p) => p.like.deleteMany({ where: { postId: 'p1' } }) },
  { call: 'Post.delete', right: ['Post.delete'], run: (p) => p.post.delete({ where: { id: 'p2' } }) },
  {
    call: 'Comment.deleteMany',
    right: ['Comment.deleteMany'],
    run: (p) => p.comment.deleteMany({ where: { authorId: 'u1' } }),
  },
  {
    call: '$queryRaw',
    right: ['$queryRaw'],
    run: (p) => p.$queryRaw`SELECT "id", "status" FROM "public"."Order" WHERE "userId" = ${'u1'}`,
  },
  {
    call: '$executeRaw',
    right: ['$executeRaw'],
    run: (p) => p.$executeRaw`UPDATE "public"."Product" SET "stock" = "stock" + 1 WHERE "id" = ${'pr4'}`,
  },
  {
    call: 'plain pg',
    right: [],
    run: (_p, raw) => raw.query(`DELETE FROM "public"."Like" WHERE "userId" = $1 RETURNING "id"`, ['nobody']),
  },
  {
    call: 'plain pg (Prisma-like aliases)',
    right: [],
    run: (_p, raw) =>
      raw.query(`SELECT "t0"."id", "t0"."email" FROM "public"."User" AS "t0" WHERE "t0"."email" = $1 LIMIT $2`, [
        'u1@example.com',
        1,
      ]),
  },
];

export interface StepStatements {
  step: WorkloadStep;
  /** The pg_stat_statements rows whose calls grew during the step. */
  rows: { queryid: string; calls: number }[];
}

export interface GroundTruth {
  steps: StepStatements[];
  /** Every row's text as pg_stat_statements keeps it, by queryid. */
  texts: Map<string, string>;
}

const UTILITY = /^\s*(BEGIN|COMMIT|ROLLBACK|START TRANSACTION|SAVEPOINT|RELEASE|SET|DEALLOCATE|DISCARD)\b/i;

/** Runs the workload on `url` (an empty copy of the example schema) and isolates each call's statements. */
export async function runWorkload(url: string, opts: { comments: boolean }): Promise<GroundTruth> {
  const { PrismaClient } = await import('../../src/generated/prisma/client.js');
  const prisma = new PrismaClient({
    adapter: new PrismaPg({ connectionString: url }),
    ...(opts.comments ? { comments: [prismaQueryInsights()] } : {}),
  });
  const raw = new pg.Client({ connectionString: url });
  const reader = new pg.Client({ connectionString: url });
  await raw.connect();
  await reader.connect();
  try {
    await reader.query(`SET pg_stat_statements.track = 'none'`);
    const dbid = (
      await reader.query<{ oid: string }>('SELECT oid::text FROM pg_database WHERE datname = current_database()')
    ).rows[0]?.oid;
    const texts = new Map<string, string>();
    const read = async (): Promise<Map<string, number>> => {
      const r = await reader.query<{ queryid: string; calls: string; query: string }>(
        'SELECT queryid::text, calls::text, query FROM pg_stat_statements WHERE dbid = $1::oid AND toplevel',
        [dbid],
      );
      const m = new Map<string, number>();
      for (const row of r.rows) {
        m.set(row.queryid, Number(row.calls));
        texts.set(row.queryid, row.query);
      }
      return m;
    };
    await prisma.$connect();
    const steps: StepStatements[] = [];
    for (const step of WORKLOAD) {
      const before = await read();
      await step.run(prisma as unknown as Client, raw);
      const after = await read();
      const rows = [...after]
        .filter(([id, calls]) => calls > (before.get(id) ?? 0))
        .map(([queryid, calls]) => ({ queryid, calls: calls - (before.get(queryid) ?? 0) }))
        .filter((r) => !UTILITY.test(texts.get(r.queryid) ?? ''));
      steps.push({ step, rows });
    }
    return { steps, texts };
  } finally {
    await prisma.$disconnect();
    await raw.end();
    await reader.end();
  }
}
