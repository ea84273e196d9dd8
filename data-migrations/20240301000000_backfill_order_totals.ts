/**
 * Fill the new `Order.total` column from each order's items, in batches.
 *
 * `transaction: false`: every batch of the backfill commits on its own, with its checkpoint, so a
 * deploy that is killed halfway resumes where it stopped on the next `dbops migrate up`. The
 * migration is recorded as applied only once every batch is done and `validate` passes.
 *
 * Before deploying this, the application must already write `total` for new orders (otherwise
 * orders created behind the backfill's cursor stay NULL and `validate` fails, as it should).
 */
import type { BackfillResult, BackfillSpec } from '../src/migrations/types.js';

/** The part of dbops' migration context this migration uses. */
interface Ctx {
  sql: {
    query<R = Record<string, unknown>>(
      text: string,
      values?: unknown[],
    ): Promise<{ rows: R[]; rowCount: number | null }>;
  };
  backfill(spec: BackfillSpec): Promise<BackfillResult>;
  log: { info(message: string): void };
}

const itemsTotal = `(SELECT COALESCE(sum(oi.quantity * oi.price), 0) FROM "OrderItem" oi WHERE oi."orderId" = "Order".id)`;

export default {
  description: 'Order.total = sum of its items (quantity x price), batched and resumable',
  transaction: false,

  async up(ctx: Ctx): Promise<void> {
    const r = await ctx.backfill({ table: 'Order', where: 'total IS NULL', set: `total = ${itemsTotal}` });
    ctx.log.info(`filled ${r.rows} order totals in ${r.batches} batches`);
  },

  /** Every order has a total, and it equals the sum of its items. */
  async validate(ctx: Ctx): Promise<boolean> {
    const r = await ctx.sql.query<{ missing: string; wrong: string }>(
      `SELECT count(*) FILTER (WHERE o.total IS NULL) AS missing,
              count(*) FILTER (WHERE o.total IS DISTINCT FROM COALESCE(s.sum, 0)) AS wrong
         FROM "Order" o
         LEFT JOIN (SELECT "orderId", sum(quantity * price) AS sum FROM "OrderItem" GROUP BY "orderId") s ON s."orderId" = o.id`,
    );
    const row = r.rows[0];
    if (!row) return false;
    if (Number(row.missing) || Number(row.wrong)) {
      ctx.log.info(`order totals: ${row.missing} missing, ${row.wrong} different from their items`);
      return false;
    }
    return true;
  },

  /** Back to NULL, batched as well (a different backfill of the same migration: it starts fresh). */
  async down(ctx: Ctx): Promise<void> {
    await ctx.backfill({ table: 'Order', where: 'total IS NOT NULL', set: 'total = NULL' });
  },
};
