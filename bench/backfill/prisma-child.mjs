// The original design's migration: one interactive transaction, users read, then updated one by
// one through Prisma. Limited to the first N users needing a role; prints rows and wall time.
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../../dist/src/generated/prisma/client.js';

const [url, limit] = process.argv.slice(2);
const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) });
await prisma.$queryRaw`SELECT 1`;
const t0 = performance.now();
const rows = await prisma.$transaction(
  async (tx) => {
    const users = await tx.user.findMany({ where: { role: null }, select: { id: true }, take: Number(limit) });
    for (const u of users) await tx.user.update({ where: { id: u.id }, data: { role: 'USER' } });
    return users.length;
  },
  { timeout: 3_600_000, maxWait: 60_000 },
);
const wallMs = performance.now() - t0;
await prisma.$disconnect();
process.stdout.write(`${JSON.stringify({ rows, wallMs })}\n`);
