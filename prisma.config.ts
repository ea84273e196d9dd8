// Prisma 7 configuration: the datasource URL lives here, not in schema.prisma.
// `process.env.DATABASE_URL ?? ''` rather than `env('DATABASE_URL')`: env() makes every Prisma
// command fail when the variable is unset, `--help` included.
// Offline use of the migrate commands: see docs/prisma-offline.md (PRISMA_SCHEMA_ENGINE_BINARY).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'prisma/config';

// Prisma 7 does not read .env by itself. Variables already set win over the file.
const envFile = fileURLToPath(new URL('.env', import.meta.url));
if (existsSync(envFile)) process.loadEnvFile(envFile);

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: {
    path: 'prisma/migrations',
  },
  datasource: {
    url: process.env.DATABASE_URL ?? '',
  },
});
