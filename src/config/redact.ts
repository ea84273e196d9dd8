/**
 * Secrets never leave dbops: every line written to stdout or stderr passes through a Redactor.
 * It masks (1) the exact secret values it was told about (passwords from every configured URL,
 * DATABASE_PASSWORD) and (2) anything shaped like a credential, because drivers (pg, Prisma,
 * ioredis) sometimes embed connection strings or `password=` fragments in their messages.
 */

export const MASK = '***';

/**
 * `scheme://user:password@host` → `scheme://user:***@host` (also without a user). The password runs
 * to the last `@` of the token, so an unencoded `/`, `#`, `?` or `@` in it is masked too.
 */
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/)([^:@/\s]*):(\S+)@(?=[^@\s]*$|[^@\s]*\s)/gi;
/** The password of a URL that `new URL` cannot parse (an unencoded `/`, `#`, `?` or `@` in it). */
const RAW_URL_PASSWORD = /^[a-z][a-z0-9+.-]*:\/\/[^:@/\s]*:(.+)@[^@]*$/i;
/** `password=secret`, `password: "secret"`, `pass=...` in keyword/value strings and JSON. */
const KEYWORD_SECRETS = /\b(password|passwd|pwd|pass|secret)(["']?\s*[:=]\s*["']?)([^\s"'&;,}]+)/gi;

export class Redactor {
  private readonly secrets = new Set<string>();

  constructor(secrets: Iterable<string | undefined> = []) {
    for (const s of secrets) this.add(s);
  }

  /** Remember a secret value (and its URL-encoded form) so it is masked wherever it appears. */
  add(secret: string | undefined): void {
    if (!secret || secret.length < 3) return;
    this.secrets.add(secret);
    const encoded = encodeURIComponent(secret);
    if (encoded !== secret) this.secrets.add(encoded);
    try {
      const decoded = decodeURIComponent(secret);
      if (decoded !== secret && decoded.length >= 3) this.secrets.add(decoded);
    } catch {
      // not percent-encoded; nothing more to add
    }
  }

  /** Remember the password of a connection URL, also of one that does not parse. */
  addUrl(url: string | undefined): void {
    if (!url) return;
    for (const pw of urlPasswords(url)) this.add(pw);
  }

  redact(text: string): string {
    let out = text;
    // Longest first, so a secret that contains another is masked whole.
    for (const s of [...this.secrets].sort((a, b) => b.length - a.length)) {
      out = out.split(s).join(MASK);
    }
    out = out.replace(URL_CREDENTIALS, (_m, scheme: string, user: string) => `${scheme}${user}:${MASK}@`);
    out = out.replace(KEYWORD_SECRETS, (_m, key: string, sep: string) => `${key}${sep}${MASK}`);
    return out;
  }
}

/** Every spelling of a URL's password: as parsed, decoded, and raw up to the last `@`. */
export function urlPasswords(url: string): string[] {
  const out: string[] = [];
  try {
    const parsed = new URL(url);
    if (parsed.password) out.push(parsed.password);
  } catch {
    // not parseable: the raw form below still finds it
  }
  const raw = RAW_URL_PASSWORD.exec(url.trim())?.[1];
  if (raw) out.push(raw);
  return out;
}

/** A URL for display: the password replaced by ***. Invalid URLs are masked by pattern. */
export function maskUrl(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = MASK;
    return parsed.toString();
  } catch {
    return new Redactor().redact(url);
  }
}
