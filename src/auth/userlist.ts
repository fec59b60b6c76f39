import { readFile } from 'node:fs/promises';
import { ConfigError } from '../config/errors.ts';
import { parseScramVerifier } from '../protocol/scram.ts';

/**
 * PgBouncer's auth_file (userlist.txt): one user per line,
 *
 *     "username" "password-or-secret" ...
 *
 * Both fields are double-quoted; a double quote inside a field is written
 * twice (""). Whatever follows the second field is ignored, as PgBouncer
 * does, so files with extra columns load. Blank lines and lines starting
 * with ';' or '#' are comments. A user listed twice keeps the last entry.
 *
 * A secret that starts like a SCRAM verifier but does not parse as one is a
 * mistake (a truncated copy from pg_authid), not a plaintext password as
 * PostgreSQL would take it: as a password it would only ever fail logins,
 * with nothing saying why.
 *
 * Every bad line is reported at once, as `source:line: problem`, in one
 * ConfigError. Problems never quote a secret, not even a character of one.
 */
export function parseUserlist(text: string, source = 'auth_file'): Map<string, string> {
  const users = new Map<string, string>();
  const problems: string[] = [];
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  lines.forEach((line, i) => {
    const problem = (what: string) => problems.push(`${source}:${i + 1}: ${what}`);
    let pos = skipBlanks(line, 0);
    if (pos === line.length || line[pos] === ';' || line[pos] === '#') return;
    const user = readQuoted(line, pos, 'user name');
    if (typeof user === 'string') return problem(user);
    if (user.value === '') return problem('empty user name');
    pos = skipBlanks(line, user.end);
    const password = readQuoted(line, pos, 'password');
    if (typeof password === 'string') return problem(`user ${JSON.stringify(user.value)}: ${password}`);
    if (password.value.startsWith('SCRAM-SHA-256$') && parseScramVerifier(password.value) === null) {
      return problem(
        `user ${JSON.stringify(user.value)}: malformed SCRAM verifier; expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> as pg_authid.rolpassword holds it`,
      );
    }
    users.set(user.value, password.value);
  });
  if (problems.length > 0) throw new ConfigError(problems);
  return users;
}

/** Reads and parses an auth_file; a missing or unreadable file is a ConfigError like a bad line. */
export async function loadUserlist(file: string): Promise<Map<string, string>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ConfigError(`auth_file "${file}" does not exist`);
    throw new ConfigError(`cannot read auth_file "${file}": ${(err as Error).message}`);
  }
  return parseUserlist(text, file);
}

function skipBlanks(line: string, pos: number): number {
  while (pos < line.length && (line[pos] === ' ' || line[pos] === '\t')) pos++;
  return pos;
}

/**
 * Reads a "..." field starting at `pos`: its value and the index after the
 * closing quote, or what is wrong.
 */
function readQuoted(line: string, pos: number, what: string): { value: string; end: number } | string {
  if (line[pos] !== '"') {
    return `expected a double-quoted ${what}, found ${pos < line.length ? 'unquoted text' : 'end of line'}`;
  }
  let value = '';
  let i = pos + 1;
  for (;;) {
    const close = line.indexOf('"', i);
    if (close < 0) return `unterminated quoted ${what}`;
    value += line.slice(i, close);
    if (line[close + 1] !== '"') return { value, end: close + 1 };
    value += '"';
    i = close + 2;
  }
}
