import { ConfigError } from './errors.ts';

/**
 * PgBouncer's pgbouncer.ini as a pgmux configuration: `[databases]` become
 * endpoints, `[users]` per-user pool modes, and every `[pgbouncer]` key
 * pgmux has an equivalent for maps to it. Keys without one are returned by
 * name so pgmux can say, once, what it ignores.
 */

export function isPgbouncerIni(file: string, text: string): boolean {
  return file.endsWith('.ini') || /^\s*\[pgbouncer\]\s*$/im.test(text);
}

type Sections = Map<string, [key: string, value: string, line: number][]>;

export function parseIni(text: string, file: string): Sections {
  const sections: Sections = new Map();
  let current: string | null = null;
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith(';') || line.startsWith('#')) return;
    if (line.startsWith('%include')) throw new ConfigError(`${file}:${i + 1}: %include is not supported; merge the included file into this one`);
    const section = /^\[([^\]]+)\]$/.exec(line);
    if (section !== null) {
      current = section[1].trim().toLowerCase();
      if (!sections.has(current)) sections.set(current, []);
      return;
    }
    const eq = line.indexOf('=');
    // The line is not quoted back: a stray line may well be a password.
    if (eq < 0 || current === null) throw new ConfigError(`${file}:${i + 1}: expected "key = value" inside a [section]`);
    sections.get(current)!.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim(), i + 1]);
  });
  return sections;
}

/** `host=a port=5432 dbname='x y'` as a map. */
export function parseConnString(s: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /\s*([a-z_]+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S*))/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null && m[0] !== '') out.set(m[1], m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]);
  return out;
}

const SECONDS = (v: string) => Number(v);
const INT = (v: string) => Number.parseInt(v, 10);

/** [pgbouncer] keys with the same meaning in pgmux, and how to read their values. */
const SAME: Record<string, (v: string) => unknown> = {
  pool_mode: String,
  default_pool_size: INT,
  max_client_conn: INT,
  client_login_timeout: SECONDS,
  query_wait_timeout: SECONDS,
  server_idle_timeout: SECONDS,
  server_lifetime: SECONDS,
  server_connect_timeout: SECONDS,
  server_reset_query: String,
  auth_file: String,
  auth_user: String,
  auth_query: String,
  admin_users: String,
  stats_users: String,
  client_tls_cert_file: String,
  client_tls_key_file: String,
  server_tls_ca_file: String,
  max_prepared_statements: INT,
  track_extra_parameters: String,
  pkt_buf: () => undefined,
};

export interface IniResult {
  config: Record<string, unknown>;
  /** "section.key" of every setting pgmux does not use, once each. */
  ignored: string[];
}

export function pgbouncerIniToConfig(text: string, file: string): IniResult {
  const sections = parseIni(text, file);
  const config: Record<string, unknown> = {};
  const ignored = new Set<string>();
  let listenAddr = '127.0.0.1';
  let listenPort = '6432';

  for (const [key, value] of sections.get('pgbouncer') ?? []) {
    const k = key.toLowerCase();
    if (k === 'listen_addr') listenAddr = value.split(',')[0].trim() === '*' ? '0.0.0.0' : value.split(',')[0].trim();
    else if (k === 'listen_port') listenPort = value;
    else if (k === 'auth_type') {
      const map: Record<string, string> = { 'scram-sha-256': 'scram-sha-256', md5: 'md5', plain: 'password', trust: 'trust' };
      if (map[value] !== undefined) config.auth_type = map[value];
      else ignored.add(`pgbouncer.auth_type = ${value}`);
    } else if (k === 'client_tls_sslmode') {
      // pgmux does not ask clients for certificates: verify-* act as require.
      config.client_tls_sslmode = value === 'verify-ca' || value === 'verify-full' ? 'require' : value;
      if (value.startsWith('verify')) ignored.add(`pgbouncer.client_tls_sslmode = ${value} (client certificates)`);
    } else if (k === 'server_tls_sslmode') config.server_tls_sslmode = value;
    else if (k === 'verbose') config.log_level = Number(value) >= 2 ? 'trace' : Number(value) === 1 ? 'debug' : 'info';
    else if (k === 'shutdown_wait_timeout') config.shutdown_timeout = SECONDS(value);
    else if (SAME[k] !== undefined && k !== 'pkt_buf') config[k] = SAME[k](value);
    else ignored.add(`pgbouncer.${k}`);
  }
  config.listen = `${listenAddr.includes(':') ? `[${listenAddr}]` : listenAddr}:${listenPort}`;

  const endpoints: Record<string, Record<string, unknown>> = {};
  for (const [name, value] of sections.get('databases') ?? []) {
    const c = parseConnString(value);
    const ep = name === '*' ? 'default' : name;
    const hosts = (c.get('host') ?? '127.0.0.1').split(',');
    const port = c.get('port') ?? '5432';
    const db = c.get('dbname') ?? (name === '*' ? '' : name);
    endpoints[ep] = { nodes: hosts.map((h) => `postgresql://${h.trim()}:${port}${db === '' ? '' : `/${encodeURIComponent(db)}`}`) };
    if (c.has('pool_mode')) endpoints[ep].pool_mode = c.get('pool_mode');
    if (c.has('pool_size')) endpoints[ep].default_pool_size = INT(c.get('pool_size')!);
    if (name === '*') config.default_endpoint = 'default';
    for (const k of c.keys()) if (!['host', 'port', 'dbname', 'pool_mode', 'pool_size'].includes(k)) ignored.add(`databases.${name}.${k}`);
  }
  config.endpoints = endpoints;

  const users: Record<string, Record<string, unknown>> = {};
  for (const [name, value] of sections.get('users') ?? []) {
    const c = parseConnString(value);
    users[name] = {};
    if (c.has('pool_mode')) users[name].pool_mode = c.get('pool_mode');
    for (const k of c.keys()) if (k !== 'pool_mode') ignored.add(`users.${name}.${k}`);
  }
  if (Object.keys(users).length > 0) config.users = users;
  for (const s of sections.keys()) if (!['pgbouncer', 'databases', 'users'].includes(s)) ignored.add(`[${s}]`);
  return { config, ignored: [...ignored] };
}
