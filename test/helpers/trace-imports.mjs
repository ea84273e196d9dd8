// Loaded with `node --import`: reports every module URL that gets resolved, so a test can prove
// that `dbops --help` never loads pg, ioredis or Prisma.
import { register } from 'node:module';

register(
  'data:text/javascript,' +
    encodeURIComponent(`
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  process.stderr.write('[import] ' + r.url + '\\n');
  return r;
}`),
);
