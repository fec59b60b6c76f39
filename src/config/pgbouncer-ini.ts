import { ConfigError } from './errors.ts';
import { closestKey } from './issues.ts';
import { DATABASE_KEYS, PEER_KEYS, PGBOUNCER_KEYS, SECTIONS, USER_KEYS, type KeyRule, type ValueKind } from './pgbouncer-keys.ts';
import { scalarSettings } from './introspect.ts';
import { LOAD_BALANCE_HOSTS } from './endpoint-spec.ts';

/**
 * PgBouncer's pgbouncer.ini as a pgmux configuration: `[databases]` become
 * endpoints, `[users]` per-user settings, and every `[pgbouncer]` key
 * pgmux has an equivalent for maps to it (pgbouncer-keys.ts says which).
 *
 * Read as strictly as PgBouncer reads it: a key PgBouncer does not know,
 * a number that is not one, or a setting pgmux cannot honour without
 * weakening security or changing who logs in stops pgmux, every problem at
 * once. Settings pgmux can safely do without are returned by name so pgmux
 * can say, once, what it ignores.
 */

export function isPgbouncerIni(file: string, text: string): boolean {
  return file.endsWith('.ini') || /^\s*\[pgbouncer\]\s*$/im.test(text);
}

export interface IniEntry {
  key: string;
  value: string;
  line: number;
}

/** Each section's `key = value` lines, and the line the section (first) starts on. */
type Sections = Map<string, { line: number; entries: IniEntry[] }>;

/** The file's sections and their `key = value` lines; a line that is neither is a ConfigError. */
export function parseIni(text: string, file: string): Sections {
  const sections: Sections = new Map();
  const problems: string[] = [];
  let current: string | null = null;
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith(';') || line.startsWith('#')) return;
    if (line.startsWith('%include')) return problems.push(`${file}:${i + 1}: %include is not supported; merge the included file into this one`);
    const section = /^\[([^\]]+)\]$/.exec(line);
    if (section !== null) {
      current = section[1].trim().toLowerCase();
      if (!sections.has(current)) sections.set(current, { line: i + 1, entries: [] });
      return;
    }
    const eq = line.indexOf('=');
    // The line is not quoted back: a stray line may well be a password.
    if (eq < 0 || current === null) return problems.push(`${file}:${i + 1}: expected "key = value" inside a [section]`);
    sections.get(current)!.entries.push({ key: line.slice(0, eq).trim(), value: line.slice(eq + 1).trim(), line: i + 1 });
  });
  if (problems.length > 0) throw new ConfigError(problems);
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

export interface IniResult {
  config: Record<string, unknown>;
  /** "section.key" of every setting pgmux does without, once each. */
  ignored: string[];
}

// PgBouncer reads integers with strtol and durations as seconds with strtod.
const INTEGER = /^[+-]?[0-9]+$/;
const SECONDS = /^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;

const AUTH_TYPES: Record<string, string> = { 'scram-sha-256': 'scram-sha-256', md5: 'md5', plain: 'password', trust: 'trust', hba: 'hba' };

/**
 * PgBouncer's own default auth_query. It refuses roles whose password has
 * expired (rolvaliduntil) and roles without LOGIN; pgmux's default does
 * not, so an ini that relies on the default keeps PgBouncer's, and with it
 * the same set of users who may log in.
 */
const PGBOUNCER_AUTH_QUERY =
  'SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname=$1 AND rolcanlogin';

/** A host of a [databases] entry as it goes into a node URL. */
function urlHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

class Translation {
  readonly config: Record<string, unknown> = {};
  readonly ignored = new Set<string>();
  readonly problems: string[] = [];

  private readonly file: string;

  constructor(file: string) {
    this.file = file;
  }

  problem(line: number, what: string): void {
    this.problems.push(`${this.file}:${line}: ${what}`);
  }

  /** A value read as the kind the key takes, or undefined after reporting why it cannot be. */
  read(kind: ValueKind, name: string, value: string, line: number): string | number | undefined {
    if (kind === 'string') return value;
    const ok = kind === 'integer' ? INTEGER.test(value) : SECONDS.test(value);
    if (ok) return Number(value);
    this.problem(line, `${name} = ${JSON.stringify(value)}: expected ${kind === 'integer' ? 'an integer' : 'a number of seconds'}`);
    return undefined;
  }

  /**
   * What a rule says about one key: the value when it maps, nothing when
   * ignored (remembered for the warning) or refused (reported).
   */
  apply(rule: KeyRule, label: string, value: string, line: number, shown: string): string | number | undefined {
    if (rule.kind === 'ignore') {
      this.ignored.add(label);
      return undefined;
    }
    if (rule.kind === 'refuse') {
      if (rule.unless?.(value) === true) return undefined;
      this.problem(line, `${shown} is not supported: ${rule.why}`);
      return undefined;
    }
    const v = this.read(rule.value ?? 'string', label.split('.').pop()!, value, line);
    // A negative duration of a [databases] or [users] entry is PgBouncer's "not set", and so is 0 where the key says so.
    if (rule.value === 'seconds' && typeof v === 'number' && (v < 0 || (v === 0 && rule.zeroUnset === true))) return undefined;
    return v;
  }

  unknown(line: number, what: string, key: string, known: readonly string[]): void {
    const hint = closestKey(key, known);
    this.problem(line, `unknown ${what} "${key}"${hint === undefined ? '' : `, did you mean "${hint}"?`}`);
  }
}

function translatePgbouncer(t: Translation, entries: IniEntry[]): void {
  let listenAddrs = ['127.0.0.1'];
  let listenPort: number | undefined = 6432;
  const known = Object.keys(PGBOUNCER_KEYS);
  for (const { key: rawKey, value, line } of entries) {
    const key = rawKey.toLowerCase();
    const rule = PGBOUNCER_KEYS[key];
    if (rule === undefined) {
      t.unknown(line, 'key in [pgbouncer]', rawKey, known);
      continue;
    }
    switch (key) {
      case 'listen_addr': {
        // A list, as PgBouncer's; "*" is every IPv4 and IPv6 address, as pgmux's listen takes it.
        const addrs = value.split(',').map((a) => a.trim()).filter((a) => a !== '');
        if (addrs.length > 0) listenAddrs = addrs;
        continue;
      }
      case 'listen_port': {
        const port = t.read('integer', key, value, line);
        if (typeof port === 'number' && (port < 1 || port > 65535)) t.problem(line, `listen_port = ${port}: expected 1-65535`);
        listenPort = typeof port === 'number' ? port : undefined;
        continue;
      }
      case 'auth_type': {
        const mapped = AUTH_TYPES[value.toLowerCase()];
        if (mapped !== undefined) t.config.auth_type = mapped;
        else t.problem(line, `auth_type = ${JSON.stringify(value)} is not supported: expected scram-sha-256, md5, plain, trust or hba`);
        continue;
      }
      case 'client_tls_sslmode':
        if (value === 'verify-ca' || value === 'verify-full') {
          t.problem(line, `client_tls_sslmode = ${value} is not supported yet: pgmux does not check client certificates; use require`);
        } else t.config.client_tls_sslmode = value;
        continue;
      case 'so_reuseport': {
        const on = t.read('integer', key, value, line);
        if (typeof on === 'number') t.config.so_reuseport = on !== 0;
        continue;
      }
      case 'verbose': {
        const level = t.read('integer', key, value, line);
        if (typeof level === 'number') t.config.log_level = level >= 2 ? 'trace' : level === 1 ? 'debug' : 'info';
        continue;
      }
      case 'unix_socket_group':
        // Empty is PgBouncer's "not set": the socket keeps pgmux's group.
        if (value !== '') t.config[key] = value;
        continue;
      case 'user':
        // Empty is PgBouncer's "not set": pgmux stays the user it was started as.
        if (value !== '') t.config[key] = value;
        continue;
    }
    if (rule.kind === 'refuse') {
      t.apply(rule, `pgbouncer.${key}`, value, line, `${key} = ${value}`);
      continue;
    }
    // Same name, same meaning: whatever pgmux has a setting for maps to it,
    // read as the schema types it; the rest is done without.
    const to = rule.kind === 'map' ? (rule.to ?? key) : key;
    const setting = scalarSettings().find((s) => s.key === to);
    if (setting === undefined) {
      t.ignored.add(`pgbouncer.${key}`);
      continue;
    }
    // Empty is PgBouncer's "not set": a setting pgmux leaves unset by default stays unset.
    if (value === '' && setting.default === undefined) continue;
    if (setting.kind === 'boolean') {
      // PgBouncer's switches are integers: 0 is off, anything else on.
      const on = t.read('integer', key, value, line);
      if (on !== undefined) t.config[to] = on !== 0;
      continue;
    }
    const kind: ValueKind = setting.kind === 'integer' ? 'integer' : setting.kind === 'number' ? 'seconds' : 'string';
    const v = t.read(kind, key, value, line);
    if (v !== undefined) t.config[to] = v;
  }
  if (listenPort !== undefined) t.config.listen = listenAddrs.map((a) => `${urlHost(a)}:${listenPort}`).join(',');
}

function translateDatabases(t: Translation, entries: IniEntry[]): void {
  const endpoints: Record<string, Record<string, unknown>> = {};
  const known = Object.keys(DATABASE_KEYS);
  for (const { key: name, value, line } of entries) {
    const c = parseConnString(value);
    const ep = name === '*' ? 'default' : name;
    const entry: Record<string, unknown> = {};
    let ports: number[] | null = [5432];
    for (const [k, v] of c) {
      const rule = DATABASE_KEYS[k];
      if (rule === undefined) {
        t.unknown(line, `parameter in [databases] ${name}`, k, known);
        continue;
      }
      if (k === 'port') ports = portsOf(t, `[databases] ${name}`, v, line);
      // Where the servers are: read together below.
      if (k === 'host' || k === 'dbname' || k === 'port' || k === 'load_balance_hosts') continue;
      // Never shown with its value: password= is a secret, user= says whose.
      const got = t.apply(rule, `databases.${name}.${k}`, v, line, `[databases] ${name}: the ${k} parameter`);
      if (got !== undefined && rule.kind === 'map') entry[rule.to ?? k] = got;
    }
    const hosts = (c.get('host') ?? '127.0.0.1').split(',').map((h) => h.trim());
    const socket = hosts.find((h) => h.startsWith('/') || h === '');
    if (socket !== undefined) {
      t.problem(line, `[databases] ${name}: host ${JSON.stringify(socket)}: pgmux connects to servers over TCP only; give a host name or address`);
      continue;
    }
    if (ports !== null && ports.length !== 1 && ports.length !== hosts.length) {
      t.problem(line, `[databases] ${name}: port = ${JSON.stringify(c.get('port'))}: expected one port, or one for each of the ${hosts.length} hosts`);
      ports = null;
    }
    const spread = c.get('load_balance_hosts') ?? 'round-robin';
    if (!(LOAD_BALANCE_HOSTS as readonly string[]).includes(spread)) {
      t.problem(line, `[databases] ${name}: load_balance_hosts = ${JSON.stringify(spread)}: expected ${LOAD_BALANCE_HOSTS.join(' or ')}`);
      continue;
    }
    if (ports === null) continue;
    const db = c.get('dbname') ?? (name === '*' ? '' : name);
    // Several hosts are equivalent servers, as PgBouncer takes them: one
    // node whose server connections are spread over them, never a
    // primary and replicas (pgmux would send reads and writes apart).
    const authority = hosts.map((h, i) => `${urlHost(h)}:${ports[i] ?? ports[0]}`).join(',');
    endpoints[ep] = {
      nodes: [`postgresql://${authority}${db === '' ? '' : `/${encodeURIComponent(db)}`}${hosts.length > 1 ? `?load_balance_hosts=${spread}` : ''}`],
      ...entry,
    };
    if (name === '*') t.config.default_endpoint = 'default';
  }
  t.config.endpoints = endpoints;
}

/**
 * A [databases] entry's `port`: one for every host, or one per host in
 * the order of `host` (PgBouncer 1.24's `port=5432,5433`); null after
 * reporting why not.
 */
function portsOf(t: Translation, entry: string, value: string, line: number): number[] | null {
  const ports = value.split(',').map((p) => t.read('integer', 'port', p.trim(), line));
  if (ports.some((p) => p === undefined)) return null;
  const wrong = ports.find((p) => (p as number) < 1 || (p as number) > 65535);
  if (wrong !== undefined) {
    t.problem(line, `${entry}: port = ${wrong}: expected 1-65535`);
    return null;
  }
  return ports.map(Number);
}

function translateUsers(t: Translation, entries: IniEntry[]): void {
  const users: Record<string, Record<string, unknown>> = {};
  const known = Object.keys(USER_KEYS);
  for (const { key: name, value, line } of entries) {
    users[name] = {};
    for (const [k, v] of parseConnString(value)) {
      const rule = USER_KEYS[k];
      if (rule === undefined) {
        t.unknown(line, `parameter in [users] ${name}`, k, known);
        continue;
      }
      const got = t.apply(rule, `users.${name}.${k}`, v, line, `[users] ${name}: the ${k} parameter`);
      if (got !== undefined && rule.kind === 'map') users[name][rule.to ?? k] = got;
    }
  }
  if (Object.keys(users).length > 0) t.config.users = users;
}

/**
 * [peers]: `peer_id = host=… port=… pool_size=…`, where a CancelRequest
 * whose key carries that peer_id is forwarded. A host starting with / or @
 * is a Unix-socket directory, as in PgBouncer.
 */
function translatePeers(t: Translation, entries: IniEntry[]): void {
  const peers: Record<string, Record<string, unknown>> = {};
  const known = Object.keys(PEER_KEYS);
  for (const { key: id, value, line } of entries) {
    const n = t.read('integer', 'peer_id', id, line);
    if (n === undefined) continue;
    if ((n as number) < 1 || (n as number) > 16383) {
      t.problem(line, `[peers] ${id}: expected a peer_id 1-16383`);
      continue;
    }
    const peer: Record<string, unknown> = {};
    for (const [k, v] of parseConnString(value)) {
      const rule = PEER_KEYS[k];
      if (rule === undefined) {
        t.unknown(line, `parameter in [peers] ${id}`, k, known);
        continue;
      }
      const got = t.apply(rule, `peers.${id}.${k}`, v, line, `[peers] ${id}: the ${k} parameter`);
      if (got !== undefined) peer[k] = got;
    }
    if (typeof peer.host !== 'string' || peer.host === '') t.problem(line, `[peers] ${id}: host is required (a host name, address or Unix-socket directory)`);
    if (typeof peer.port === 'number' && (peer.port < 1 || peer.port > 65535)) t.problem(line, `[peers] ${id}: port = ${peer.port}: expected 1-65535`);
    if (typeof peer.pool_size === 'number' && peer.pool_size < 1) t.problem(line, `[peers] ${id}: pool_size = ${peer.pool_size}: expected 1 or more`);
    peers[String(n)] = peer;
  }
  if (Object.keys(peers).length > 0) t.config.peers = peers;
}

export function pgbouncerIniToConfig(text: string, file: string): IniResult {
  const sections = parseIni(text, file);
  const t = new Translation(file);
  // PgBouncer's defaults where pgmux's differ in a way that matters for
  // security: TLS to servers when they offer it, and its auth_query.
  t.config.server_tls_sslmode = 'prefer';
  t.config.auth_query = PGBOUNCER_AUTH_QUERY;
  for (const [name, { line }] of sections) {
    // A misspelt [databases] would otherwise leave pgmux without them.
    if (!SECTIONS.includes(name)) t.unknown(line, 'section', name, SECTIONS);
  }
  translatePgbouncer(t, sections.get('pgbouncer')?.entries ?? []);
  translateDatabases(t, sections.get('databases')?.entries ?? []);
  translateUsers(t, sections.get('users')?.entries ?? []);
  translatePeers(t, sections.get('peers')?.entries ?? []);
  if (t.problems.length > 0) throw new ConfigError(t.problems);
  return { config: t.config, ignored: [...t.ignored] };
}
