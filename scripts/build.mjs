#!/usr/bin/env node
// Build dbops: generate the Prisma client offline, compile TypeScript, check the output loads.
// Runs as `npm run build` and as the package's `prepare` script (so also inside `npm install`).
// Exits non-zero with a one-line reason when a step fails.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const shim = join(root, 'scripts', 'prisma-engine-shim.mjs');
const generatedSrc = join(root, 'src', 'generated', 'prisma');
const generatedDist = join(root, 'dist', 'src', 'generated', 'prisma');

function fail(message) {
  process.stderr.write(`build: ${message}\n`);
  process.exit(1);
}

function step(name, command, args, env = {}) {
  const started = performance.now();
  process.stderr.write(`build: ${name}\n`);
  const result = spawnSync(command, args, {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, ...env },
  });
  if (result.error) fail(`${name}: could not start ${relative(root, command) || command}: ${result.error.message}`);
  if (result.status !== 0) {
    fail(`${name} failed (${result.signal ? `signal ${result.signal}` : `exit code ${result.status}`})`);
  }
  process.stderr.write(`build: ${name} done in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
}

function resolveOrFail(specifier, what) {
  try {
    return require.resolve(specifier);
  } catch {
    return fail(`${what} is not installed (${specifier}); run \`npm install\` with dev dependencies`);
  }
}

// 1. prisma generate, offline. The CLI looks for a native schema engine and would download it;
//    PRISMA_SCHEMA_ENGINE_BINARY points it at dbops' WebAssembly shim instead (generate never starts
//    the engine, but the lookup happens anyway). No update check, no telemetry.
const prismaCli = join(dirname(resolveOrFail('prisma/package.json', 'the Prisma CLI')), 'build', 'index.js');
step('prisma generate', process.execPath, [prismaCli, 'generate', '--schema', join(root, 'prisma', 'schema.prisma')], {
  PRISMA_SCHEMA_ENGINE_BINARY: shim,
  PRISMA_HIDE_UPDATE_MESSAGE: '1',
  PRISMA_HIDE_PREVIEW_FLAG_WARNINGS: '1',
  CHECKPOINT_DISABLE: '1',
  PRISMA_DISABLE_WARNINGS: '1',
  // prisma.config.ts reads it; generate does not connect, and an empty URL is fine
  DATABASE_URL: process.env.DATABASE_URL ?? '',
});
if (!existsSync(join(generatedSrc, 'client.ts')))
  fail(`prisma generate wrote no ${relative(root, generatedSrc)}/client.ts`);

// 2. TypeScript (native tsc 7).
const tsc = join(dirname(resolveOrFail('typescript/package.json', 'TypeScript')), 'bin', 'tsc');
step('tsc', process.execPath, [tsc, '-p', join(root, 'tsconfig.json')]);

// 3. Make dist usable: tsc only emits .js for .ts; copy whatever else the generator wrote
//    (none with prisma 7.10's prisma-client generator, but e.g. .wasm/.node/.prisma files if it does).
function copyAssets(from, to) {
  for (const entry of readdirSync(from)) {
    const source = join(from, entry);
    const target = join(to, entry);
    if (statSync(source).isDirectory()) copyAssets(source, target);
    else if (!/\.(m|c)?ts$/.test(entry)) cpSync(source, target);
  }
}
copyAssets(generatedSrc, generatedDist);

// 4. Check the compiled output loads (without a database): the generated client and dbops' entry.
const checks = [join(generatedDist, 'client.js'), join(root, 'dist', 'src', 'db', 'schema-engine.js')];
const entry = join(root, 'dist', 'src', 'index.js');
if (existsSync(join(root, 'src', 'index.ts'))) checks.push(entry);
for (const file of checks) if (!existsSync(file)) fail(`expected ${relative(root, file)} after tsc, it is missing`);
const probe = spawnSync(
  process.execPath,
  ['--input-type=module', '-e', checks.map((f) => `await import(${JSON.stringify(`file://${f}`)});`).join('\n')],
  {
    cwd: root,
    encoding: 'utf8',
  },
);
if (probe.status !== 0) {
  fail(`compiled output does not load: ${(probe.stderr || probe.stdout).trim().split('\n').slice(0, 6).join(' | ')}`);
}
process.stderr.write(`build: ok (${checks.map((f) => relative(root, f)).join(', ')} load)\n`);
