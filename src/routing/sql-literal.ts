/**
 * A SQL literal for a value pgmux itself puts in a query (the simple query
 * protocol has no parameters): NULL, or a string quoted as quote_literal()
 * does, so a name holding quotes or backslashes stays one value.
 */
export function sqlLiteral(v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  const s = String(v);
  const quoted = `'${s.replaceAll("'", "''")}'`;
  return s.includes('\\') ? `E${quoted.replaceAll('\\', '\\\\')}` : quoted;
}

/** `$1`, `$2`… in `sql` replaced by the literals of `params`. */
export function inlineParams(sql: string, params: unknown[]): string {
  return sql.replace(/\$(\d+)/g, (m, i: string) => (Number(i) >= 1 && Number(i) <= params.length ? sqlLiteral(params[Number(i) - 1]) : m));
}
