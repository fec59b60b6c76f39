/**
 * PgBouncer's auth_file (userlist.txt): one user per line,
 *
 *     "username" "password-or-secret" ...
 *
 * Both fields are double-quoted; a double quote inside a field is written
 * twice (""). Whatever follows the second field is ignored, as PgBouncer
 * does, so files with extra columns load. Blank lines and lines starting
 * with ';' or '#' are comments. A user listed twice keeps the last entry.
 */
export function parseUserlist(text: string): Map<string, string> {
  const users = new Map<string, string>();
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  lines.forEach((line, i) => {
    const lineNo = i + 1;
    let pos = skipBlanks(line, 0);
    if (pos === line.length || line[pos] === ';' || line[pos] === '#') return;
    const user = readQuoted(line, pos, lineNo, 'user name');
    pos = skipBlanks(line, user.end);
    const password = readQuoted(line, pos, lineNo, 'password');
    if (user.value === '') throw new Error(`auth file line ${lineNo}: empty user name`);
    users.set(user.value, password.value);
  });
  return users;
}

function skipBlanks(line: string, pos: number): number {
  while (pos < line.length && (line[pos] === ' ' || line[pos] === '\t')) pos++;
  return pos;
}

/** Reads a "..." field starting at `pos`; returns its value and the index after the closing quote. */
function readQuoted(line: string, pos: number, lineNo: number, what: string): { value: string; end: number } {
  if (line[pos] !== '"') {
    const found = pos < line.length ? `found '${line[pos]}'` : 'found end of line';
    throw new Error(`auth file line ${lineNo}: expected a double-quoted ${what}, ${found}`);
  }
  let value = '';
  let i = pos + 1;
  for (;;) {
    const close = line.indexOf('"', i);
    if (close < 0) throw new Error(`auth file line ${lineNo}: unterminated quoted ${what}`);
    value += line.slice(i, close);
    if (line[close + 1] !== '"') return { value, end: close + 1 };
    value += '"';
    i = close + 2;
  }
}
