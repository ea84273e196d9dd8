/**
 * ctx.prisma finds the application's client from its Prisma schema (as the Prisma CLI finds the
 * schema), wherever the two generators put it; DBOPS_PRISMA_CLIENT takes a path or a package.
 * Each case is a throwaway project folder (files only; loading the client is tested on real
 * Prisma 6 and 7 clients in test/e2e/prisma6.test.ts and the migrate tests).
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { locatePrismaClient } from '../../src/migrations/prisma.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A project folder with these files (path -> content); `linkModules` links dbops' node_modules (for prisma/config). */
function projectWith(files: Record<string, string>, linkModules = false): string {
  const dir = mkdtempSync(join(tmpdir(), 'dbops-locate-'));
  dirs.push(dir);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  if (linkModules) symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

const DATASOURCE = 'datasource db {\n  provider = "postgresql"\n}\n';
const generator = (provider: string, output?: string) =>
  `// the application's schema\ngenerator client {\n  provider = "${provider}"\n${output ? `  output   = "${output}" // where prisma generate writes\n` : ''}}\n\n${DATASOURCE}\nmodel User {\n  id Int @id\n}\n`;
/** A package with an entry file, as npm would install it. */
const pkg = (name: string) => ({
  [`node_modules/${name}/package.json`]: JSON.stringify({ name, version: '6.19.3', main: 'index.js' }),
  [`node_modules/${name}/index.js`]: 'module.exports = {};\n',
});

async function failure(cwd: string, configured?: string): Promise<ConfigError> {
  const error = await locatePrismaClient(cwd, configured).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ConfigError);
  return error as ConfigError;
}

describe('locatePrismaClient', () => {
  it('prisma-client with any output, the schema named by prisma.config.ts', async () => {
    const cwd = projectWith(
      {
        'prisma.config.ts': `import { defineConfig } from 'prisma/config';\nexport default defineConfig({ schema: 'db/app.prisma' });\n`,
        'db/app.prisma': generator('prisma-client', '../lib/orm'),
        'lib/orm/client.ts': 'export class PrismaClient {}\n',
        // a decoy at the old guess: detection must not use it
        'src/generated/prisma/client.ts': 'export class PrismaClient {}\n',
      },
      true,
    );
    expect(await locatePrismaClient(cwd, undefined)).toEqual({
      path: join(cwd, 'lib', 'orm', 'client.ts'),
      source: 'generator client (prisma-client) in db/app.prisma',
    });
  });

  it('prisma-client-js without output: @prisma/client, once generated into node_modules/.prisma/client', async () => {
    const files = { 'prisma/schema.prisma': generator('prisma-client-js'), ...pkg('@prisma/client') };
    const cwd = projectWith(files);
    const notYet = await failure(cwd);
    expect(notYet.message).toContain(
      'generator client (prisma-client-js) in prisma/schema.prisma: node_modules/.prisma/client (not generated)',
    );
    mkdirSync(join(cwd, 'node_modules', '.prisma', 'client'), { recursive: true });
    writeFileSync(join(cwd, 'node_modules', '.prisma', 'client', 'index.js'), 'module.exports = {};\n');
    expect(await locatePrismaClient(cwd, undefined)).toEqual({
      path: join(cwd, 'node_modules', '@prisma', 'client', 'index.js'),
      source: 'generator client (prisma-client-js) in prisma/schema.prisma',
    });
  });

  it('prisma-client-js with a custom output, a multi-file schema folder', async () => {
    const cwd = projectWith({
      'prisma/schema/base.prisma': DATASOURCE,
      'prisma/schema/models/user.prisma': 'model User {\n  id Int @id\n}\n',
      'prisma/schema/generators.prisma':
        'generator client {\n  provider = "prisma-client-js"\n  output   = "../../generated/db"\n}\n',
      'generated/db/package.json': JSON.stringify({ name: '.prisma/client', main: 'index.js' }),
      'generated/db/index.js': 'module.exports = {};\n',
    });
    expect(await locatePrismaClient(cwd, undefined)).toEqual({
      path: join(cwd, 'generated', 'db', 'index.js'),
      source: 'generator client (prisma-client-js) in prisma/schema/generators.prisma',
    });
  });

  it("package.json's prisma.schema (Prisma 6 without a config file)", async () => {
    const cwd = projectWith({
      'package.json': JSON.stringify({ name: 'app', prisma: { schema: 'database/schema.prisma' } }),
      'database/schema.prisma': generator('prisma-client', './client'),
      'database/client/client.ts': 'export class PrismaClient {}\n',
    });
    expect((await locatePrismaClient(cwd, undefined)).path).toBe(join(cwd, 'database', 'client', 'client.ts'));
  });

  it('DBOPS_PRISMA_CLIENT: a package specifier, a path, a generator output folder', async () => {
    const cwd = projectWith({
      ...pkg('@prisma/client'),
      ...pkg('@acme/db'),
      'gen/client.ts': 'export class PrismaClient {}\n',
    });
    expect(await locatePrismaClient(cwd, '@prisma/client')).toEqual({
      path: join(cwd, 'node_modules', '@prisma', 'client', 'index.js'),
      source: 'DBOPS_PRISMA_CLIENT=@prisma/client',
    });
    expect((await locatePrismaClient(cwd, '@acme/db')).path).toBe(join(cwd, 'node_modules', '@acme', 'db', 'index.js'));
    expect((await locatePrismaClient(cwd, 'gen/client.ts')).path).toBe(join(cwd, 'gen', 'client.ts'));
    expect((await locatePrismaClient(cwd, './gen')).path).toBe(join(cwd, 'gen', 'client.ts'));
    expect((await locatePrismaClient(cwd, join(cwd, 'gen', 'client.ts'))).path).toBe(join(cwd, 'gen', 'client.ts'));

    const missing = await failure(cwd, '@acme/nope');
    expect(missing.message).toContain('DBOPS_PRISMA_CLIENT=@acme/nope: no file');
    expect(missing.message).toContain('no package @acme/nope installed');
    expect((await failure(cwd, './nope/client.ts')).message).toContain(
      `${join(cwd, 'nope', 'client.ts')} does not exist`,
    );
  });

  it('nothing found: the error names every place it looked and how to set it', async () => {
    const cwd = projectWith(
      {
        'prisma.config.ts': `import { defineConfig } from 'prisma/config';\nexport default defineConfig({ schema: 'prisma/schema.prisma' });\n`,
        'prisma/schema.prisma': `${generator('prisma-client', '../src/db')}\ngenerator docs {\n  provider = "prisma-docs-generator"\n}\n`,
      },
      true,
    );
    const error = await failure(cwd);
    expect(error.message).toContain(
      'ctx.prisma: no generated Prisma client found (looked at prisma.config.ts (schema: prisma/schema.prisma)',
    );
    expect(error.message).toContain(
      'generator client (prisma-client) in prisma/schema.prisma: src/db/client.ts (not generated)',
    );
    expect(error.message).toContain(
      'generator docs (prisma-docs-generator) in prisma/schema.prisma: not a Prisma Client generator',
    );
    expect(error.hint).toContain('run prisma generate');
    expect(error.hint).toContain('DBOPS_PRISMA_CLIENT');
    expect(error.hint).toContain('@prisma/client');

    const empty = await failure(projectWith({}));
    expect(empty.message).toContain('no Prisma schema (schema.prisma, prisma/schema.prisma, prisma/schema)');
  });

  it('a prisma.config.ts that cannot be loaded is reported, and the default schema location still used', async () => {
    const cwd = projectWith({
      'prisma.config.ts': `throw new Error('DATABASE_URL is not set');\n`,
      'prisma/schema.prisma': generator('prisma-client', '../src/generated/prisma'),
      'src/generated/prisma/client.ts': 'export class PrismaClient {}\n',
    });
    expect((await locatePrismaClient(cwd, undefined)).path).toBe(join(cwd, 'src', 'generated', 'prisma', 'client.ts'));
    rmSync(join(cwd, 'src'), { recursive: true });
    expect((await failure(cwd)).message).toContain('prisma.config.ts (could not be loaded: DATABASE_URL is not set)');
  });
});
