import { describe, expect, it } from 'vitest';
import type { Backend } from '../../src/diagnostics/activity.js';
import { buildBlockingTree, walkTree } from '../../src/diagnostics/locks.js';

function backend(pid: number, state: string, application = `app${pid}`): Backend {
  return {
    pid,
    database: 'db',
    user: 'u',
    application,
    clientAddr: '127.0.0.1',
    state,
    waitEventType: state === 'active' ? 'Lock' : null,
    waitEvent: null,
    backendAgeMs: 1000,
    xactAgeMs: 1000 - pid,
    stateAgeMs: 500,
    queryAgeMs: 1000 - pid,
    xidAge: null,
    xminAge: null,
    query: `q${pid}`,
    self: false,
  };
}
const map = (...bs: Backend[]) => new Map(bs.map((b) => [b.pid, b]));
const shape = (tree: ReturnType<typeof buildBlockingTree>) =>
  walkTree(tree).map((w) => `${'  '.repeat(w.depth)}${w.node.pid}`);

describe('buildBlockingTree', () => {
  it('puts each waiter once, under its deepest blocker, listing every blocker', () => {
    const tree = buildBlockingTree(
      [
        { waiter: 2, blocker: 1, kind: 'holds' },
        { waiter: 3, blocker: 1, kind: 'holds' },
        { waiter: 3, blocker: 2, kind: 'holds' },
        { waiter: 4, blocker: 3, kind: 'queued' },
      ],
      map(backend(1, 'idle in transaction'), backend(2, 'active'), backend(3, 'active'), backend(4, 'active')),
    );
    expect(shape(tree)).toEqual(['1', '  2', '    3', '      4']);
    expect(tree.waiterCount).toBe(3);
    const [root] = tree.roots;
    expect(root?.root).toBe(true);
    expect(root?.blockedCount).toBe(3);
    expect(root?.terminate).toBe('SELECT pg_terminate_backend(1);');
    const three = walkTree(tree).find((w) => w.node.pid === 3)?.node;
    expect(three?.blockedBy).toEqual([
      { pid: 1, kind: 'holds' },
      { pid: 2, kind: 'holds' },
    ]);
  });

  it('orders roots by how many they block, and siblings by how long they wait', () => {
    const tree = buildBlockingTree(
      [
        { waiter: 11, blocker: 10, kind: 'holds' },
        { waiter: 21, blocker: 20, kind: 'holds' },
        { waiter: 22, blocker: 20, kind: 'holds' },
      ],
      map(
        backend(10, 'idle in transaction'),
        backend(11, 'active'),
        backend(20, 'active'),
        backend(21, 'active'),
        backend(22, 'active'),
      ),
    );
    expect(shape(tree)).toEqual(['20', '  21', '  22', '10', '  11']);
  });

  it('a wait cycle (deadlock not yet broken) still shows every session once', () => {
    const tree = buildBlockingTree(
      [
        { waiter: 1, blocker: 2, kind: 'holds' },
        { waiter: 2, blocker: 1, kind: 'holds' },
      ],
      map(backend(1, 'active'), backend(2, 'active')),
    );
    const pids = walkTree(tree).map((w) => w.node.pid);
    expect(pids.sort()).toEqual([1, 2]);
    expect(tree.roots[0]?.cycle).toBe(true);
  });

  it('a prepared transaction (pid 0) is a root without a terminate statement', () => {
    const tree = buildBlockingTree([{ waiter: 5, blocker: 0, kind: 'holds' }], map(backend(5, 'active')));
    expect(tree.roots[0]).toMatchObject({ pid: 0, state: 'prepared transaction', terminate: null });
    expect(shape(tree)).toEqual(['0', '  5']);
  });

  it('no edges, no tree', () => {
    expect(buildBlockingTree([], new Map())).toEqual({ roots: [], waiterCount: 0 });
  });
});
