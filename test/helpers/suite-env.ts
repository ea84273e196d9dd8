/** The environment of a dbops process in the reliability suites: one database URL, one migrations folder. */
import { cleanEnv } from './cli.js';

export function cleanEnvFor(url: string, dir: string, extra: Record<string, string> = {}): Record<string, string> {
  return cleanEnv({ DATABASE_URL: url, DBOPS_MIGRATIONS_DIR: dir, USER: 'suite', ...extra });
}
