/**
 * The transaction-control guard reads SQL with PostgreSQL's own grammar (libpg-query): what ends
 * a transaction is refused wherever it hides, honest SQL that merely mentions COMMIT or END passes.
 */
import { describe, expect, it } from 'vitest';
import { createSqlTag, guardStatement } from '../../src/migrations/sql.js';
import { transactionControl, whoEnded } from '../../src/migrations/tx-guard.js';

describe('transactionControl (PostgreSQL grammar)', () => {
  it.each([
    ["UPDATE audit SET note = 'a -- b' WHERE id = 5001; COMMIT", 'COMMIT'],
    ['SELECT 1;COMMIT', 'COMMIT'],
    ['commit and chain', 'commit and chain'],
    ['END', 'END'],
    ['end transaction', 'end transaction'],
    ['ABORT', 'ABORT'],
    ['ROLLBACK', 'ROLLBACK'],
    ['rollback work', 'rollback work'],
    ['BEGIN', 'BEGIN'],
    ['START TRANSACTION ISOLATION LEVEL SERIALIZABLE', 'START TRANSACTION ISOLATION LEVEL SERIALIZABLE'],
    ["PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION 'x'"],
    ["COMMIT PREPARED 'x'", "COMMIT PREPARED 'x'"],
    ["ROLLBACK PREPARED 'x'", "ROLLBACK PREPARED 'x'"],
    ['/* a */ COMMIT /* b */', 'COMMIT /* b */'],
    ['SELECT $$;$$; COMMIT', 'COMMIT'],
    ["SELECT E'\\';'; COMMIT", 'COMMIT'],
  ])('refuses %j', async (sql, found) => {
    expect(await transactionControl(sql)).toBe(found);
  });

  it.each([
    'DO $$ BEGIN IF true THEN INSERT INTO t VALUES (1); END IF; END $$',
    'CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM 1; END; $$',
    'CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END',
    "CREATE FUNCTION h() RETURNS text LANGUAGE sql AS 'SELECT ''x''; COMMIT'",
    "SELECT '; COMMIT' /* ; COMMIT */ -- ; COMMIT",
    'SELECT $tag$ ; COMMIT $tag$',
    "UPDATE audit SET note = 'END' WHERE id = 1",
    'SELECT "commit", "end" FROM (SELECT 1 AS "commit", 2 AS "end") s',
    'SAVEPOINT a; RELEASE SAVEPOINT a; ROLLBACK TO SAVEPOINT a',
    'SET TRANSACTION ISOLATION LEVEL REPEATABLE READ',
    'CREATE INDEX CONCURRENTLY i ON t (a)',
    'CALL p()',
    'this is not SQL; COMMIT it',
  ])('lets %j through', async (sql) => {
    expect(await transactionControl(sql)).toBeNull();
  });
});

describe('ctx.sql and the guard', () => {
  const client = () => {
    const sent: string[] = [];
    const query = async (text: string) => {
      sent.push(text);
      return { rows: [], rowCount: 0 };
    };
    return { sent, client: { query } };
  };

  it('refuses before sending, inside the transaction only', async () => {
    const inside = client();
    const sql = createSqlTag(inside.client as never, { inTransaction: true });
    await expect(sql.query("UPDATE audit SET note = 'a -- b' WHERE id = 5001; COMMIT")).rejects.toThrow(
      /ctx.sql: transaction control is not allowed inside a migration's transaction: COMMIT/,
    );
    await sql`DO $$ BEGIN PERFORM 1; END $$`;
    expect(inside.sent).toEqual(['DO $$ BEGIN PERFORM 1; END $$']);
    const outside = client();
    await createSqlTag(outside.client as never, { inTransaction: false }).query('COMMIT');
    expect(outside.sent).toEqual(['COMMIT']);
  });

  it('sends nothing once the transaction is lost, and says why', async () => {
    const lost = new Error('lost the migration lock: the session was ended');
    await expect(
      guardStatement('SELECT 1', { inTransaction: false, tx: { lostError: () => lost } }, 'ctx.sql'),
    ).rejects.toBe(lost);
  });
});

describe('whoEnded', () => {
  it('names the guard from what the server or PgBouncer said', () => {
    const e = (message: string, code?: string) => Object.assign(new Error(message), { code });
    expect(whoEnded(e('terminating connection due to idle-in-transaction timeout', '25P03'))).toMatch(
      /^the server's idle_in_transaction_session_timeout/,
    );
    expect(whoEnded(e('terminating connection due to idle-session timeout', '57P05'))).toMatch(
      /^the server's idle_session_timeout/,
    );
    expect(whoEnded(e('terminating connection due to transaction timeout', '25P04'))).toMatch(
      /^the server's transaction_timeout/,
    );
    expect(whoEnded(e('idle transaction timeout', '08P01'))).toMatch(/^PgBouncer's idle_transaction_timeout/);
    expect(whoEnded(e('query_wait_timeout', '08P01'))).toMatch(/^PgBouncer's query_wait_timeout/);
    expect(whoEnded(e('terminating connection due to administrator command', '57P01'))).toMatch(/pg_terminate_backend/);
  });
});
