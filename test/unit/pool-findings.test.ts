import { describe, expect, it } from 'vitest';
import type { SessionRow } from '../../src/diagnostics/activity.js';
import { DEFAULT_THRESHOLDS, evaluateFindings, worstSeverity } from '../../src/diagnostics/findings.js';
import { capacityBudget } from '../../src/diagnostics/pool-budget.js';

const noLocks = { roots: [], waiterCount: 0 };
const headroom = (free: number, usable = 97) => ({
  maxConnections: 100,
  superuserReserved: 3,
  reserved: 0,
  usable,
  inUse: usable - free,
  free,
  selfInReservedSlot: false,
  formula: 'f',
});
const idle = (pid: number, application: string, stateAgeMs: number): SessionRow => ({
  pid,
  database: 'db',
  application,
  user: 'u',
  clientAddr: null,
  state: 'idle in transaction',
  xactAgeMs: stateAgeMs,
  stateAgeMs,
  queryAgeMs: stateAgeMs,
  xidHeldBack: 3,
  query: 'UPDATE x',
  waitEventType: 'Client',
  waitEvent: 'ClientRead',
  terminate: `SELECT pg_terminate_backend(${pid});`,
});

describe('evaluateFindings', () => {
  it('headroom: none left is critical, under 10% a warning, plenty nothing', () => {
    expect(evaluateFindings({ locks: noLocks, headroom: headroom(0) })[0]).toMatchObject({
      severity: 'critical',
      code: 'headroom-exhausted',
    });
    expect(evaluateFindings({ locks: noLocks, headroom: headroom(5) })[0]).toMatchObject({
      severity: 'warning',
      code: 'headroom-low',
    });
    expect(evaluateFindings({ locks: noLocks, headroom: headroom(50) })).toEqual([]);
  });

  it('idle in transaction over the threshold: one warning per application with the statements to end them', () => {
    const rows = [idle(1, 'api', 90_000), idle(2, 'api', 61_000), idle(3, 'api', 5_000), idle(4, 'worker', 120_000)];
    const f = evaluateFindings({ locks: noLocks, idleInTransaction: rows });
    expect(f.map((x) => x.message)).toEqual([
      '2 sessions idle in transaction for over 60 s from app=api (longest 90 s)',
      '1 session idle in transaction for over 60 s from app=worker (longest 120 s)',
    ]);
    expect(f[0]?.suggestion).toMatch(/idle_in_transaction_session_timeout/);
    expect(f[0]?.statements).toEqual(['SELECT pg_terminate_backend(1);', 'SELECT pg_terminate_backend(2);']);
  });

  it('a failing capacity budget is critical and names both numbers', () => {
    const budget = capacityBudget({
      appInstances: 6,
      appPoolSize: 10,
      surge: 2,
      postgres: { maxConnections: 100, superuserReserved: 3, reserved: 0, inUse: 0, appInUse: 0 },
    });
    const f = evaluateFindings({ locks: noLocks, budget });
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({
      severity: 'critical',
      code: 'budget-app-vs-postgres',
      message: 'application 120 > 97 free on PostgreSQL: short by 23',
    });
    expect(worstSeverity(f)).toBe('critical');
  });

  it('error rate warns from 5% over at least 100 transactions', () => {
    expect(evaluateFindings({ locks: noLocks, errorRate: { rate: 0.06, xacts: 1000 } })[0]?.code).toBe('error-rate');
    expect(evaluateFindings({ locks: noLocks, errorRate: { rate: 0.5, xacts: 10 } })).toEqual([]);
    expect(evaluateFindings({ locks: noLocks, errorRate: { rate: null, xacts: 0 } })).toEqual([]);
  });

  it('findings are sorted critical, warning, info', () => {
    const f = evaluateFindings({
      locks: noLocks,
      headroom: headroom(0),
      idleInTransaction: [idle(1, 'api', 90_000)],
      statements: { available: false, reason: 'not installed', calls: 0, totalMs: 0, slowStatements: 0 },
    });
    expect(f.map((x) => x.severity)).toEqual(['critical', 'warning', 'info']);
    expect(DEFAULT_THRESHOLDS.longMs).toBe(60_000);
  });
});
