/**
 * Secrets never leave dbops: every line written to stdout or stderr passes through a Redactor.
 *
 * The Redactor learns secrets from the WHOLE raw value of every secret-bearing setting (any `*_URL`,
 * any `*PASSWORD*`, from a flag, the environment, `.env` or the config file), before anything is
 * validated, and without trusting a URL parser to find them: a value that a parser misreads (a
 * scheme typo, an unencoded `#`, `/`, `@` or space in the password) still has all its
 * credential-shaped pieces learned. It then masks (1) every spelling of what it learned (as given,
 * percent-encoded, decoded, form-encoded, JSON-escaped) and (2) anything shaped like a credential
 * (`scheme://user:password@`, `password=...`), because drivers sometimes embed connection strings in
 * their messages.
 */

export const MASK = '***';

/** Shorter secrets are not masked: masking every "ab" in the output would garble it. */
export const MIN_SECRET_LENGTH = 3;

/**
 * `scheme://user:password@host` → `scheme://user:***@host` (also without a user). The password runs
 * to the last `@` of the token, so an unencoded `/`, `#`, `?` or `@` in it is masked too.
 */
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/)([^:@/\s]*):(\S+)@(?=[^@\s]*$|[^@\s]*\s)/gi;
/** What documentation and hints write in a password's place (a learnt secret is masked before this applies). */
const PLACEHOLDERS = new Set(['PASSWORD', 'password', '<password>', MASK]);
/** `password=secret`, `sslpassword=secret`, `password: "secret"` in keyword/value strings, URLs and JSON. */
const KEYWORD_SECRETS = /\b((?:ssl)?password|passwd|pwd|pass|secret)(["']?\s*[:=]\s*["']?)([^\s"'&;,}]+)/gi;
/** Query parameters whose value is a secret (`password`, `sslpassword`, `token`, ...). */
const SECRET_PARAM = /pass|pwd|secret|token|credential/i;
/** Setting and environment names whose value is or may carry a secret. */
const SECRET_NAME = /(_URL|_URI|_DSN)$|PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL/i;

/** Whether a setting or environment variable of this name holds, or may carry, a secret. */
export function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name);
}

export class Redactor {
  private readonly secrets = new Set<string>();
  private sorted: string[] | undefined;

  constructor(secrets: Iterable<string | undefined> = []) {
    for (const s of secrets) this.add(s);
  }

  /** Remember a secret value, masked wherever it appears in any of its spellings. */
  add(secret: string | undefined): void {
    if (!secret) return;
    for (const form of spellings(secret)) {
      if (form.length >= MIN_SECRET_LENGTH && !this.secrets.has(form)) {
        this.secrets.add(form);
        this.sorted = undefined;
      }
    }
  }

  /**
   * Remember everything secret in a value that is, or was meant to be, a connection string: the
   * whole value when it carries a credential or does not parse, every `user:password@` candidate
   * (found without a URL parser), the parser's password and secret query parameters.
   */
  addUrl(value: string | undefined): void {
    if (!value) return;
    for (const s of secretsOfValue(value)) this.add(s);
  }

  /**
   * Remember the credential-shaped pieces of any other value (a cache prefix, a host, an argument):
   * nothing is learned from a value without `:...@` or a secret query parameter.
   */
  scan(value: string | undefined): void {
    if (!value) return;
    for (const s of credentialCandidates(value)) this.add(s);
    for (const s of secretParams(value)) this.add(s);
  }

  /** Learn from a named value: by its name a secret (`*_URL`, `*PASSWORD*`), otherwise only scanned. */
  addNamed(name: string, value: string | undefined): void {
    if (!value) return;
    if (!isSecretName(name)) this.scan(value);
    else if (/PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL/i.test(name) && !/(_URL|_URI|_DSN)$/i.test(name)) this.add(value);
    else this.addUrl(value);
  }

  /** Every spelling learned so far (longest first). */
  list(): string[] {
    this.sorted ??= [...this.secrets].sort((a, b) => b.length - a.length);
    return this.sorted;
  }

  redact(text: string): string {
    let out = text;
    // Longest first, so a secret that contains another is masked whole.
    for (const s of this.list()) {
      if (out.includes(s)) out = out.split(s).join(MASK);
    }
    out = out.replace(URL_CREDENTIALS, (m, scheme: string, user: string, password: string) =>
      PLACEHOLDERS.has(password) ? m : `${scheme}${user}:${MASK}@`,
    );
    out = out.replace(KEYWORD_SECRETS, (_m, key: string, sep: string) => `${key}${sep}${MASK}`);
    return out;
  }
}

/** A secret as given, trimmed, percent-encoded (two ways), decoded, form-encoded and JSON-escaped. */
function spellings(secret: string): Set<string> {
  const forms = new Set<string>([secret, secret.trim()]);
  for (const s of [...forms]) {
    forms.add(encodeURIComponent(s));
    forms.add(encodeURI(s));
    forms.add(new URLSearchParams({ x: s }).toString().slice(2));
    try {
      forms.add(decodeURIComponent(s));
    } catch {
      // not percent-encoded
    }
    try {
      const u = new URL('x://h');
      u.password = s;
      forms.add(u.password);
    } catch {
      // cannot be set as a password
    }
  }
  for (const s of [...forms]) forms.add(JSON.stringify(s).slice(1, -1));
  return forms;
}

/**
 * The `user:password` pieces of a value, found without a URL parser: for every `@`, the text after
 * each earlier `:` up to it (leading slashes dropped). Over-inclusive on purpose: a scheme typo
 * (`postgresql//u:pw@`, `postgres:/u:pw@`, `postgresql:u:pw@`, `u:pw@`) or an unencoded `#`, `/`,
 * space or `@` in the password still yields the password itself among the candidates.
 */
export function credentialCandidates(value: string): string[] {
  const out: string[] = [];
  const colons: number[] = [];
  let ats = 0;
  for (let j = 0; j < value.length && ats < 64; j++) {
    const ch = value[j];
    if (ch === ':' && colons.length < 64) colons.push(j);
    else if (ch === '@') {
      ats++;
      for (const i of colons) {
        const raw = value.slice(i + 1, j);
        const piece = raw.replace(/^\/+/, '');
        // `scheme://user@`: a user without a password is no secret.
        if (piece && (piece === raw || piece.includes(':'))) out.push(piece);
      }
    }
  }
  return out;
}

/** Values of secret query parameters (`?password=`, `&sslpassword=`), wherever a `?` starts a query. */
export function secretParams(value: string): string[] {
  const out: string[] = [];
  let from = value.indexOf('?');
  while (from !== -1) {
    const query = value.slice(from + 1);
    // application/x-www-form-urlencoded: pairs split on '&', name and value on the first '='.
    for (const pair of query.split('&')) {
      const eq = pair.indexOf('=');
      if (eq > 0 && SECRET_PARAM.test(pair.slice(0, eq)) && eq < pair.length - 1) out.push(pair.slice(eq + 1));
    }
    for (const [name, v] of new URLSearchParams(query)) if (SECRET_PARAM.test(name) && v) out.push(v);
    from = value.indexOf('?', from + 1);
  }
  return out;
}

/** Whether a value parses as a URL with an authority and carries no credential at all. */
function isCleanUrl(value: string): boolean {
  try {
    const u = new URL(value);
    return (
      !u.username &&
      !u.password &&
      !value.includes('@') &&
      secretParams(value).length === 0 &&
      u.href.startsWith(`${u.protocol}//`)
    );
  } catch {
    return false;
  }
}

/** Every secret piece of a secret-bearing value (see Redactor.addUrl). */
export function secretsOfValue(value: string): string[] {
  const out = [...credentialCandidates(value), ...secretParams(value), ...urlPasswords(value)];
  if (!isCleanUrl(value)) out.push(value);
  return out;
}

/** The password of a URL as a URL parser reads it (raw and decoded); empty when it does not parse. */
export function urlPasswords(url: string): string[] {
  const out: string[] = [];
  try {
    const parsed = new URL(url);
    if (parsed.password) {
      out.push(parsed.password);
      try {
        out.push(decodeURIComponent(parsed.password));
      } catch {
        // a stray % in the password
      }
    }
  } catch {
    // not parseable: credentialCandidates still finds it
  }
  return out;
}

/**
 * A connection string for display: the password and secret query parameters replaced by ***. A
 * value that does not parse as a URL with a host is not shown at all (it may hold a password in a
 * place no parser can point at).
 */
export function maskUrl(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  try {
    const parsed = new URL(url);
    if (!parsed.href.startsWith(`${parsed.protocol}//`) || parsed.hash) return MASK;
    if (parsed.password) parsed.password = MASK;
    for (const [name] of [...parsed.searchParams]) if (SECRET_PARAM.test(name)) parsed.searchParams.set(name, MASK);
    return parsed.toString().replace(/=%2A%2A%2A(?=&|$)/g, `=${MASK}`);
  } catch {
    // A socket URL with credentials (postgresql://u:pw@/db?host=/sock) has no host for WHATWG URL.
    const at = url.lastIndexOf('@/');
    if (at > 0) {
      const masked = maskUrl(`${url.slice(0, at)}@localhost${url.slice(at + 1)}`);
      if (masked && masked !== MASK) return masked.replace('@localhost/', '@/');
    }
    return MASK;
  }
}
