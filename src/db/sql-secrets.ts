import { Redactor } from '../config/redact.js';

const PASSWORD_LITERAL = /(PASSWORD\s+)'(?:[^']|'')*'/gi;

/**
 * Mask secrets inside SQL text read from the server (pg_stat_activity, pg_stat_statements): a
 * `PASSWORD '...'` literal (ALTER ROLE, CREATE USER MAPPING ... OPTIONS (password '...')) and
 * credential shapes such as `postgres://u:pw@` or `password=...` in dblink strings. Applied where the
 * text is read, so files written by dbops (snapshots) are clean too, not only what is printed.
 */
export function maskSqlSecrets(query: string): string {
  return new Redactor().redact(query.replace(PASSWORD_LITERAL, "$1'***'"));
}
