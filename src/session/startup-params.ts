import { PgError } from '../protocol/errors.ts';

/** Startup parameters that are not settings of the session. */
const NOT_SETTINGS = new Set(['user', 'database', 'options', 'replication']);

export interface ClientSettings {
  /** Settings the client asked for at startup, in the order given (last one wins). */
  settings: Map<string, string>;
  /** `options=endpoint=NAME`, Neon's way to name an endpoint. */
  endpoint?: string;
}

/**
 * Splits the `options` startup parameter as PostgreSQL does: on whitespace,
 * a backslash keeps the next character literally.
 */
export function splitOptions(options: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  for (let i = 0; i < options.length; i++) {
    const ch = options[i];
    if (ch === '\\' && i + 1 < options.length) {
      cur += options[++i];
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

function setting(arg: string, out: Map<string, string>, ignored: ReadonlySet<string>): void {
  const eq = arg.indexOf('=');
  if (eq <= 0) {
    if (ignored.has('options')) return;
    throw new PgError('42601', `invalid command-line argument for server process: ${arg}`, {
      hint: 'Use options=-c name=value.',
    });
  }
  // PostgreSQL accepts dashes for underscores in option names.
  const name = arg.slice(0, eq).replace(/-/g, '_');
  if (!ignored.has(name.toLowerCase())) out.set(name, arg.slice(eq + 1));
}

/**
 * The settings a client's startup packet asks for, `options` expanded.
 * Those named in `ignored` (ignore_startup_parameters, lower-cased) are
 * dropped, given directly or in `options`; `options` itself in it drops
 * the words of `options` that would otherwise be refused, as PgBouncer
 * does.
 */
export function clientSettings(params: ReadonlyMap<string, string>, ignored: ReadonlySet<string> = new Set()): ClientSettings {
  // `replication` is not a setting: replication.ts reads it.
  const settings = new Map<string, string>();
  let endpoint: string | undefined;
  for (const [k, v] of params) if (!NOT_SETTINGS.has(k) && !ignored.has(k.toLowerCase())) settings.set(k, v);
  const words = splitOptions(params.get('options') ?? '');
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if (w === '-c') {
      if (i + 1 >= words.length) {
        if (ignored.has('options')) break;
        throw new PgError('42601', 'invalid command-line argument for server process: -c');
      }
      setting(words[++i], settings, ignored);
    } else if (w.startsWith('-c')) setting(w.slice(2), settings, ignored);
    else if (w.startsWith('--')) setting(w.slice(2), settings, ignored);
    else if (w.startsWith('endpoint=')) endpoint = w.slice('endpoint='.length);
    else if (!ignored.has('options')) throw new PgError('42601', `invalid command-line argument for server process: ${w}`, { hint: 'Use options=-c name=value.' });
  }
  return { settings, endpoint };
}

/** A SQL string literal that means `s` whatever standard_conforming_strings says. */
export function quoteLiteral(s: string): string {
  const body = s.replace(/'/g, "''");
  return s.includes('\\') ? `E'${body.replace(/\\/g, '\\\\')}'` : `'${body}'`;
}

/**
 * One query that gives a server session the client's settings, or null when
 * the server already reports every one of them with the same value.
 * set_config takes the value as raw text, exactly as a startup packet does
 * (so `search_path=a,b` is a list of two schemas, as it would be at startup).
 */
export function applySettingsQuery(wanted: ReadonlyMap<string, string>, current: ReadonlyMap<string, string>): string | null {
  const lower = new Map<string, string>();
  for (const [k, v] of current) lower.set(k.toLowerCase(), v);
  const calls: string[] = [];
  for (const [k, v] of wanted) {
    if (lower.get(k.toLowerCase()) === v) continue;
    calls.push(`pg_catalog.set_config(${quoteLiteral(k)}, ${quoteLiteral(v)}, false)`);
  }
  return calls.length === 0 ? null : `SELECT ${calls.join(', ')}`;
}
