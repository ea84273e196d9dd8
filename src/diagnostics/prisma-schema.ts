/**
 * What the application's schema.prisma tells the Prisma labels of slow-queries: which table is
 * which model (`@@map`), and which columns are relation scalars (the `fields` of a `@relation`,
 * `@map`ped). A statement that filters on a relation scalar may be Prisma loading or writing a
 * relation for a call on another model, so its label stays a guess. Read with a Prisma schema
 * parser (@mrleebo/prisma-ast), never with a pattern.
 */

export interface PrismaModelInfo {
  model: string;
  /** Columns holding a relation's foreign key, with the model each one points to. */
  relationColumns: Map<string, string>;
  /** Columns unique on their own (`@id`, `@unique`). */
  uniqueColumns: Set<string>;
}

export interface PrismaModels {
  /** By table name as the database knows it. */
  byTable: Map<string, PrismaModelInfo>;
}

type Node = {
  type?: string;
  name?: string;
  key?: string;
  value?: unknown;
  args?: unknown[];
  attributes?: unknown[];
  properties?: unknown[];
};

function unquote(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined;
  if (!v.startsWith('"')) return v;
  try {
    const s: unknown = JSON.parse(v);
    return typeof s === 'string' ? s : undefined;
  } catch {
    return undefined;
  }
}

function firstArg(attr: Node): string | undefined {
  const a = (attr.args?.[0] as Node | undefined)?.value;
  return unquote(a);
}

/** The models of one or more schema files (a multi-file schema is the union of its files). */
export async function readPrismaModels(sources: string[]): Promise<PrismaModels> {
  const { getSchema } = await import('@mrleebo/prisma-ast');
  const byTable = new Map<string, PrismaModelInfo>();
  const models: { name: string; table: string; fields: Node[] }[] = [];
  for (const source of sources) {
    for (const block of getSchema(source).list as Node[]) {
      if (block.type !== 'model' || !block.name) continue;
      const props = (block.properties ?? []) as Node[];
      const map = props.find((p) => p.type === 'attribute' && p.name === 'map');
      models.push({
        name: block.name,
        table: (map && firstArg(map)) ?? block.name,
        fields: props.filter((p) => p.type === 'field'),
      });
    }
  }
  const names = new Set(models.map((m) => m.name));
  for (const m of models) {
    const column = (field: string) => {
      const f = m.fields.find((x) => x.name === field);
      const map = (f?.attributes as Node[] | undefined)?.find((a) => a.name === 'map');
      return (map && firstArg(map)) ?? field;
    };
    const relationColumns = new Map<string, string>();
    const uniqueColumns = new Set<string>();
    for (const f of m.fields) {
      const attrs = (f.attributes as Node[] | undefined) ?? [];
      if (f.name && attrs.some((a) => a.name === 'id' || a.name === 'unique')) uniqueColumns.add(column(f.name));
      const target = (f as { fieldType?: unknown }).fieldType;
      if (typeof target !== 'string' || !names.has(target)) continue;
      const rel = (f.attributes as Node[] | undefined)?.find((a) => a.name === 'relation');
      for (const arg of (rel?.args ?? []) as Node[]) {
        const kv = arg.value as Node | undefined;
        if (kv?.type !== 'keyValue' || kv.key !== 'fields') continue;
        for (const name of ((kv.value as Node | undefined)?.args ?? []) as unknown[]) {
          const field = unquote(name);
          if (field) relationColumns.set(column(field), target);
        }
      }
    }
    byTable.set(m.table, { model: m.name, relationColumns, uniqueColumns });
  }
  return { byTable };
}
