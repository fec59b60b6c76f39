/**
 * Host-based authentication rules in PostgreSQL's pg_hba.conf format, as
 * PgBouncer reads them with auth_type = hba (auth_hba_file): which
 * authentication method a client gets, from how it connects (Unix socket or
 * TCP, TLS or not), its address, the database it asks for and its user.
 *
 * The parser and matcher are pure; loadHba reads the file and the @files it
 * names. What pgmux cannot honour (group membership, host names, methods it
 * has no exchange for, options after the method) is refused at load, every
 * problem at once with its line: a rule silently taken for something else
 * would let in clients it was written to keep out.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ConfigError } from '../config/errors.ts';

/** Methods pgmux can apply: its client exchanges, and reject. */
export type HbaMethod = 'trust' | 'reject' | 'md5' | 'scram-sha-256' | 'password';

export type HbaConnectionType = 'local' | 'host' | 'hostssl' | 'hostnossl' | 'hostgssenc' | 'hostnogssenc';

/** A word of a field: keywords (all, sameuser, …) count only when not quoted. */
export interface HbaToken {
  value: string;
  quoted: boolean;
}

export interface HbaRule {
  /** Where the rule was written, for log lines. */
  file: string;
  line: number;
  type: HbaConnectionType;
  /** Database names and keywords, @files expanded. */
  databases: HbaToken[];
  /** User names and keywords, @files expanded. */
  users: HbaToken[];
  /** Addresses the rule covers; null for local rules and for `all`. */
  addresses: net.BlockList | null;
  method: HbaMethod;
}

/** What a rule is matched against: one client's login. */
export interface HbaClient {
  /** Connected over a Unix-domain socket (local rules), not TCP. */
  local: boolean;
  /** The client's IP address (TCP only). */
  address: string;
  tls: boolean;
  /** The database the client asked for. */
  database: string;
  /** The user the client logs in as. */
  user: string;
  /** A physical replication connection (replication=true). */
  replication: boolean;
}

const TYPES = new Set<string>(['local', 'host', 'hostssl', 'hostnossl', 'hostgssenc', 'hostnogssenc']);
const METHODS = new Set<string>(['trust', 'reject', 'md5', 'scram-sha-256', 'password']);
/** PostgreSQL's other methods: known, but pgmux has no way to apply them. */
const UNSUPPORTED_METHODS: Record<string, string> = {
  peer: 'pgmux cannot read the peer credentials of a Unix-socket client',
  ident: 'pgmux has no ident lookups',
  cert: 'pgmux does not check client certificates',
  gss: 'pgmux has no GSSAPI',
  sspi: 'pgmux has no SSPI',
  pam: 'pgmux has no PAM',
  ldap: 'pgmux has no LDAP',
  radius: 'pgmux has no RADIUS',
  bsd: 'pgmux has no BSD authentication',
};

const keyword = (t: HbaToken, word: string) => !t.quoted && t.value === word;

/**
 * The fields of one line: each a comma-separated list of tokens. A field
 * ends at whitespace unless a comma joins it to the next token (PgBouncer
 * also takes `a , b` as one list); `#` outside quotes starts a comment;
 * inside double quotes "" is a quote.
 */
export function splitHbaLine(line: string): HbaToken[][] | string {
  const fields: HbaToken[][] = [];
  let field: HbaToken[] | null = null;
  let tok: HbaToken | null = null;
  let inQuote = false;
  let afterComma = false;
  const endToken = () => {
    if (tok !== null) field!.push(tok);
    tok = null;
  };
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (inQuote) {
      if (c !== '"') tok!.value += c;
      else if (line[i + 1] === '"') {
        tok!.value += '"';
        i++;
      } else inQuote = false;
      continue;
    }
    if (c === '#') break;
    if (c === ' ' || c === '\t' || c === '\r') {
      endToken();
      continue;
    }
    if (c === ',') {
      endToken();
      if (field === null || afterComma) return 'empty element in a comma-separated list';
      afterComma = true;
      continue;
    }
    if (tok === null) {
      if (field === null) field = [];
      else if (!afterComma) {
        fields.push(field);
        field = [];
      }
      afterComma = false;
      tok = { value: '', quoted: false };
    }
    if (c === '"') {
      tok.quoted = true;
      inQuote = true;
    } else tok.value += c;
  }
  if (inQuote) return 'unterminated quoted string';
  if (afterComma) return 'empty element in a comma-separated list';
  endToken();
  if (field !== null) fields.push(field);
  return fields;
}

/** Reads an @file named in `from`: its text and the path it was found at, or why it cannot be read. */
export type IncludeReader = (name: string, from: string) => { text: string; file: string } | string;

/** An address with /bits, or an address and a mask, as a BlockList; or what is wrong with it. */
function addressRange(addr: string, mask: string | undefined): net.BlockList | string {
  let ip = addr;
  let bits: number;
  const slash = addr.indexOf('/');
  if (slash >= 0) {
    ip = addr.slice(0, slash);
    const b = addr.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(b)) return `invalid CIDR mask in address "${addr}"`;
    bits = Number(b);
  } else {
    if (mask === undefined) return `address "${addr}" needs a CIDR mask (/bits) or a mask field`;
    const m = maskBits(mask, net.isIP(addr));
    if (m === null) return `invalid IP mask "${mask}"`;
    bits = m;
  }
  const family = net.isIP(ip);
  if (family === 0) return `invalid IP address "${ip}"`;
  if (bits > (family === 4 ? 32 : 128)) return `invalid CIDR mask in address "${addr}"`;
  const list = new net.BlockList();
  list.addSubnet(ip, bits, family === 4 ? 'ipv4' : 'ipv6');
  return list;
}

/** The prefix length of a contiguous netmask of the address's family, or null. */
function maskBits(mask: string, family: number): number | null {
  if (net.isIP(mask) !== family || family === 0) return null;
  const bytes = family === 4 ? mask.split('.').map(Number) : expandIpv6(mask).flatMap((g) => [g >> 8, g & 0xff]);
  if (bytes.some((b) => !(b >= 0 && b <= 255))) return null;
  let bits = 0;
  let ended = false;
  for (const byte of bytes) {
    for (let i = 7; i >= 0; i--) {
      const set = (byte >> i) & 1;
      if (set && ended) return null;
      if (set) bits++;
      else ended = true;
    }
  }
  return bits;
}

/** The eight 16-bit groups of an IPv6 address (NaN where one is not hex, e.g. an embedded IPv4 part). */
function expandIpv6(addr: string): number[] {
  const [head, tail] = addr.includes('::') ? addr.split('::') : [addr, undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? [] : new Array(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((g) => parseInt(g, 16));
}

/**
 * Parses pg_hba.conf text. Every problem is collected and thrown at once as
 * a ConfigError (`file:line: problem`).
 */
export function parseHba(text: string, file: string, readInclude: IncludeReader = () => 'no include reader'): HbaRule[] {
  const rules: HbaRule[] = [];
  const problems: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    const problem = (what: string) => problems.push(`${file}:${line}: ${what}`);
    const fields = splitHbaLine(raw);
    if (typeof fields === 'string') return problem(fields);
    if (fields.length === 0) return;
    const single = (f: HbaToken[], what: string): string | null => {
      if (f.length !== 1) {
        problem(`${what} must be one word, not a list`);
        return null;
      }
      return f[0].value;
    };
    const type = single(fields[0], 'the connection type');
    if (type === null) return;
    if (type === 'include' || type === 'include_if_exists' || type === 'include_dir') {
      return problem(`${type} is not supported; put the rules in this file`);
    }
    if (!TYPES.has(type)) return problem(`invalid connection type "${type}"`);
    const local = type === 'local';
    const needed = local ? 4 : 5;
    if (fields.length < needed) return problem(`end-of-line before ${['database', 'user', local ? 'method' : 'address', 'method'][fields.length - 1]} specification`);
    const databases = expandNames(fields[1], 'database', file, readInclude, problem);
    const users = expandNames(fields[2], 'user', file, readInclude, problem);
    let addresses: net.BlockList | null = null;
    let next = 3;
    if (!local) {
      const addr = single(fields[3], 'the address');
      if (addr === null) return;
      next = 4;
      if (addr === 'samehost' || addr === 'samenet') return problem(`address "${addr}" is not supported; give the addresses in CIDR form`);
      if (addr !== 'all') {
        const slashless = !addr.includes('/');
        const bare = slashless ? addr : addr.slice(0, addr.indexOf('/'));
        if (net.isIP(bare) === 0) return problem(`address "${addr}": host names are not supported; give an IP address with a CIDR mask, or all`);
        let mask: string | undefined;
        if (slashless) {
          if (fields.length < 6) return problem(`end-of-line before netmask specification`);
          mask = single(fields[4], 'the netmask') ?? undefined;
          if (mask === undefined) return;
          next = 5;
        }
        const range = addressRange(addr, mask);
        if (typeof range === 'string') return problem(range);
        addresses = range;
      }
    }
    const method = single(fields[next], 'the authentication method');
    if (method === null) return;
    if (!METHODS.has(method)) {
      const why = UNSUPPORTED_METHODS[method];
      return problem(why === undefined ? `invalid authentication method "${method}"` : `authentication method "${method}" is not supported: ${why}`);
    }
    if (fields.length > next + 1) {
      const opts = fields.slice(next + 1).map((f) => f.map((t) => t.value).join(',')).join(' ');
      return problem(`options after the method are not supported (${opts})`);
    }
    if (databases === null || users === null) return;
    rules.push({ file, line, type: type as HbaConnectionType, databases, users, addresses, method: method as HbaMethod });
  });
  if (problems.length > 0) throw new ConfigError(problems);
  return rules;
}

/**
 * A database or user field with its @files replaced by the names in them
 * (nested @files too), or null after reporting what cannot be honoured.
 */
function expandNames(
  field: HbaToken[],
  what: 'database' | 'user',
  file: string,
  readInclude: IncludeReader,
  problem: (what: string) => void,
  depth = 0,
): HbaToken[] | null {
  const out: HbaToken[] = [];
  let ok = true;
  for (const t of field) {
    if (!t.quoted && t.value.startsWith('@') && t.value.length > 1) {
      if (depth > 10) {
        problem(`@${t.value.slice(1)}: @files nested too deep`);
        ok = false;
        continue;
      }
      const got = readInclude(t.value.slice(1), file);
      if (typeof got === 'string') {
        problem(got);
        ok = false;
        continue;
      }
      const tokens: HbaToken[] = [];
      for (const l of got.text.split('\n')) {
        const fields = splitHbaLine(l);
        if (typeof fields === 'string') {
          problem(`${got.file}: ${fields}`);
          ok = false;
          continue;
        }
        for (const f of fields) tokens.push(...f);
      }
      const inner = expandNames(tokens, what, got.file, readInclude, problem, depth + 1);
      if (inner === null) ok = false;
      else out.push(...inner);
      continue;
    }
    if (what === 'database' && (keyword(t, 'samerole') || keyword(t, 'samegroup'))) {
      problem(`database "${t.value}" is not supported: pgmux does not look up role membership; list the databases`);
      ok = false;
      continue;
    }
    if (what === 'user' && !t.quoted && t.value.startsWith('+')) {
      problem(`user "${t.value}": group membership (+role) is not supported: pgmux does not look up role membership; list the users, or name a file of them with @file`);
      ok = false;
      continue;
    }
    out.push(t);
  }
  return ok ? out : null;
}

function databaseMatches(tokens: HbaToken[], client: HbaClient): boolean {
  for (const t of tokens) {
    // A physical replication connection names no database: only the
    // replication keyword covers it, as in PostgreSQL.
    if (client.replication) {
      if (keyword(t, 'replication')) return true;
      continue;
    }
    if (keyword(t, 'all')) return true;
    if (keyword(t, 'sameuser')) {
      if (client.database === client.user) return true;
      continue;
    }
    if (keyword(t, 'replication')) continue;
    if (t.value === client.database) return true;
  }
  return false;
}

function userMatches(tokens: HbaToken[], user: string): boolean {
  return tokens.some((t) => keyword(t, 'all') || t.value === user);
}

function addressMatches(list: net.BlockList | null, address: string): boolean {
  if (list === null) return true;
  const family = net.isIP(address);
  if (family === 0) return false;
  return list.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/** The first rule that covers the client, or null: no rule does (PostgreSQL rejects it). */
export function matchHba(rules: readonly HbaRule[], client: HbaClient): HbaRule | null {
  for (const r of rules) {
    if (r.type === 'local') {
      if (!client.local) continue;
    } else {
      if (client.local) continue;
      if (r.type === 'hostssl' && !client.tls) continue;
      if (r.type === 'hostnossl' && client.tls) continue;
      // pgmux never offers GSSAPI encryption, so no client has it.
      if (r.type === 'hostgssenc') continue;
      if (!addressMatches(r.addresses, client.address)) continue;
    }
    if (!databaseMatches(r.databases, client)) continue;
    if (!userMatches(r.users, client.user)) continue;
    return r;
  }
  return null;
}

/** Reads and parses an HBA file; @files are read relative to the file that names them. */
export function loadHba(file: string): HbaRule[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(code === 'ENOENT' ? `auth_hba_file "${file}" does not exist` : `cannot read auth_hba_file "${file}": ${(err as Error).message}`);
  }
  return parseHba(text, file, (name, from) => {
    const target = path.resolve(path.dirname(from), name);
    try {
      return { text: readFileSync(target, 'utf8'), file: target };
    } catch (err) {
      return `cannot read @${name} ("${target}"): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
    }
  });
}
