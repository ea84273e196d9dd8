/**
 * The rules of docs/architecture.md, checked on the source: data flows one way (cli -> output /
 * core -> db -> config -> errors), the core never draws, and no module imports itself back
 * through others (type-only imports included).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));

interface Edge {
  from: string;
  /** A file under src/, or `pkg:<name>`. */
  to: string;
  typeOnly: boolean;
}

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'generated' ? [] : files(path);
    return entry.name.endsWith('.ts') ? [relative(SRC, path)] : [];
  });
}

/** Import and export statements, and dynamic import() calls, of our own source (not text inside templates). */
const IMPORT = /^(import\s+type\b|import\b|export\b)[^;]*?\bfrom\s+'([^']+)'|\bimport\(\s*'([^']+)'\s*\)/gm;

function edges(): Edge[] {
  return files(SRC).flatMap((from) =>
    [...readFileSync(join(SRC, from), 'utf8').matchAll(IMPORT)].map((m) => {
      const spec = (m[2] ?? m[3]) as string;
      const to = spec.startsWith('.')
        ? normalize(join(dirname(from), spec)).replace(/\.js$/, '.ts')
        : `pkg:${spec.split('/')[0]}`;
      return { from, to, typeOnly: m[1] === undefined ? false : /^import\s+type\b/.test(m[1]) };
    }),
  );
}

const room = (file: string) => (file.startsWith('pkg:') ? file : (file.split('/')[0] as string));
const CORE = ['migrations', 'cache', 'diagnostics'];
const DRAWING = ['pkg:chalk', 'pkg:ora', 'pkg:cli-table3', 'pkg:commander'];
/** Pure text helpers the renderers share with the core (no I/O, no state). */
const PURE_HELPERS = new Set(['diagnostics/prisma-origin.ts']);

function violations(allowed: (edge: Edge) => boolean, rooms: string[]): string[] {
  return edges()
    .filter((e) => rooms.includes(room(e.from)) && !e.to.startsWith('pkg:node') && !allowed(e))
    .map((e) => `${e.from} -> ${e.to}${e.typeOnly ? ' (type)' : ''}`);
}

describe('the house', () => {
  it('nothing outside cli/ imports cli/', () => {
    const rooms = [...new Set(files(SRC).map(room))].filter((r) => r !== 'cli');
    expect(violations((e) => room(e.to) !== 'cli', rooms)).toEqual([]);
  });

  it('the core (migrations, cache, diagnostics) uses db, config types, errors and util; never output, cli or a drawing library', () => {
    const allowed = (e: Edge) => {
      const to = room(e.to);
      if (DRAWING.includes(to)) return false;
      if (to.startsWith('pkg:') || ['db', 'errors.ts', 'util'].includes(to) || to === room(e.from)) return true;
      if (to === 'config' || CORE.includes(to)) return e.typeOnly;
      return false;
    };
    expect(violations(allowed, CORE)).toEqual([]);
  });

  it('output/ knows the result types, nothing of how they were made', () => {
    const allowed = (e: Edge) => {
      const to = room(e.to);
      if (to === 'output' || to.startsWith('pkg:') || PURE_HELPERS.has(e.to)) return true;
      return (CORE.includes(to) || to === 'config') && e.typeOnly;
    };
    expect(violations(allowed, ['output'])).toEqual([]);
  });

  it('db/ builds on config and errors only; config on errors; errors and util on nothing', () => {
    const below: Record<string, string[]> = {
      db: ['db', 'config', 'errors.ts', 'util'],
      config: ['config', 'errors.ts'],
      'errors.ts': [],
      util: ['util'],
    };
    const allowed = (e: Edge) => room(e.to).startsWith('pkg:') || (below[room(e.from)] ?? []).includes(room(e.to));
    expect(violations(allowed, Object.keys(below))).toEqual([]);
  });

  it('has no import cycle, type-only imports included', () => {
    const graph = new Map<string, string[]>();
    for (const e of edges()) if (!e.to.startsWith('pkg:')) graph.set(e.from, [...(graph.get(e.from) ?? []), e.to]);
    // Tarjan's strongly connected components: a component of two or more files is a cycle.
    const index = new Map<string, number>();
    const low = new Map<string, number>();
    const stack: string[] = [];
    const cycles: string[][] = [];
    const visit = (node: string) => {
      index.set(node, index.size);
      low.set(node, index.get(node) as number);
      stack.push(node);
      for (const next of graph.get(node) ?? []) {
        if (!index.has(next)) {
          visit(next);
          low.set(node, Math.min(low.get(node) as number, low.get(next) as number));
        } else if (stack.includes(next)) {
          low.set(node, Math.min(low.get(node) as number, index.get(next) as number));
        }
      }
      if (low.get(node) === index.get(node)) {
        const component: string[] = [];
        let member: string | undefined;
        do {
          member = stack.pop();
          if (member) component.push(member);
        } while (member !== node);
        if (component.length > 1 || graph.get(node)?.includes(node)) cycles.push(component.sort());
      }
    };
    for (const node of graph.keys()) if (!index.has(node)) visit(node);
    expect(cycles).toEqual([]);
    expect(graph.size).toBeGreaterThan(50);
  });
});
