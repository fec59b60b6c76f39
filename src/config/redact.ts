/**
 * Keeps secrets out of configuration error messages. Errors end up in
 * terminals, CI logs and issue reports, so a message may name a setting and
 * say what is wrong with it, but never repeat a password, a password inside
 * a URL or connection string, or a stored SCRAM / md5 secret.
 */

export const REDACTED = '[redacted]';

/** Keys whose values are secrets, wherever they appear (TOML, conninfo, URL query). */
const SECRET_KEYS = ['password', 'passwd', 'sslpassword'];

/** Whether a configuration key path ends at a secret (`users.alice.password`). */
export function isSecretPath(path: readonly PropertyKey[]): boolean {
  const last = path[path.length - 1];
  return typeof last === 'string' && SECRET_KEYS.includes(last.toLowerCase());
}

// `key = value` and `key=value`: TOML lines, libpq connection strings and
// URL query parameters. The value ends at a blank, `&`, `,` or its closing
// quote; an unterminated quote (a TOML syntax error) runs to the line end.
const KEY_VALUE = new RegExp(
  String.raw`\b(${SECRET_KEYS.join('|')})(\s*=\s*)("[^"\n]*"?|'(?:[^'\\\n]|\\.)*'?|[^\s&,'"]*)`,
  'gi',
);

// `user:password@` wherever it starts a token: after `scheme://`, or a bare
// `app:pw@host` as --endpoint accepts it. The password runs to the token's
// last `@`, since an unencoded `@` or `/` in it is a mistake this message
// may be about. `:` followed by `//` is a scheme, not a password.
const USERINFO = /(^|[\s"'=,/(])([^\s"'=,:@/()]*):(?!\/\/)[^\s"']*@/g;

// Secrets as PostgreSQL stores them, pasted into the wrong place; the
// form written out with placeholders (`SCRAM-SHA-256$<iterations>:…`) stays.
const SCRAM_SECRET = /SCRAM-SHA-256\$(?!<)[^\s"']+/g;
const MD5_SECRET = /\bmd5[0-9a-f]{32}\b/g;

/** `text` with every secret it visibly holds replaced by [redacted]. */
export function redactSecrets(text: string): string {
  return text
    .replace(KEY_VALUE, (_m, key: string, eq: string) => `${key}${eq}${REDACTED}`)
    .replace(USERINFO, (_m, before: string, user: string) => `${before}${user}:${REDACTED}@`)
    .replace(SCRAM_SECRET, `SCRAM-SHA-256$${REDACTED}`)
    .replace(MD5_SECRET, `md5${REDACTED}`);
}
