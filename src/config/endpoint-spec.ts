/**
 * Endpoint names and node URLs: what the schema accepts in `nodes`, and the
 * `--endpoint` / `PGMUX_ENDPOINTS` syntax that fits several endpoints, each
 * possibly a libpq multi-host URL, in one string.
 */
import { ConfigError } from './errors.ts';

/** An endpoint name: also usable as a database name and in `options=endpoint=NAME`. */
export const ENDPOINT_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

const SCHEMES = new Set(['postgresql', 'postgres']);

/** scheme://authority then path, query and fragment, kept verbatim. */
const URL_PARTS = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/s;

/**
 * One host of an authority: a name or IPv4 address, or a bracketed IPv6
 * address (without zone, which WHATWG URLs refuse), then an optional port.
 */
const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]+)(?::([^:]*))?$/;

/**
 * How a node URL that lists several hosts spreads new server connections
 * over them (PgBouncer's load_balance_hosts): the hosts are equivalent
 * servers, not a primary and replicas. `round-robin`: each new connection
 * goes to the next host; `disable`: to the same host until connecting to
 * it fails.
 */
export const LOAD_BALANCE_HOSTS = ['round-robin', 'disable'] as const;
export type LoadBalanceHosts = (typeof LOAD_BALANCE_HOSTS)[number];

/** The `load_balance_hosts` parameter of a URL, as given; undefined when it has none. */
export function loadBalanceHostsOf(url: string): string | undefined {
  const query = /\?([^#]*)/.exec(url)?.[1];
  if (query === undefined) return undefined;
  return new URLSearchParams(query).get('load_balance_hosts') ?? undefined;
}

/** `name=` at the start of a comma-separated piece: the start of the next endpoint. */
const NAMED = /^([A-Za-z0-9_][A-Za-z0-9_.-]*)=(.*)$/s;

/**
 * Looks like a mistyped scheme (`postgresql:/h`) rather than `host:port`,
 * whose colon is followed by a digit, or `user:password@host`.
 */
const SCHEME_LIKE = /^[A-Za-z][A-Za-z0-9+.-]*:(?![0-9])[^@]*$/;

interface SplitUrl {
  scheme: string;
  /** `user:password@`, or empty. */
  userinfo: string;
  hosts: string[];
  /** Path, query and fragment. */
  rest: string;
}

/** The parts of a postgresql:// URL, or why it is not one. */
function splitUrl(url: string): SplitUrl | string {
  const m = URL_PARTS.exec(url);
  if (m === null) return 'expected a postgresql:// URL';
  const [, scheme, authority, rest] = m;
  if (!SCHEMES.has(scheme.toLowerCase())) return `expected a postgresql:// URL, got scheme "${scheme}"`;
  const at = authority.lastIndexOf('@');
  const hostList = authority.slice(at + 1);
  // The user info ends at the last "@", so commas after it separate hosts.
  const hosts = hostList === '' ? [] : hostList.split(',');
  return { scheme, userinfo: authority.slice(0, at + 1), hosts, rest };
}

function hostProblem(host: string): string | null {
  if (host === '') return 'empty host';
  const m = HOST_PORT.exec(host);
  if (m === null) return `invalid host "${host}"`;
  const port = m[2];
  if (port === undefined) return null;
  if (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    return `invalid port "${port}" in "${host}": expected 1-65535`;
  }
  return null;
}

/**
 * Why `url` cannot be an endpoint node, or null when it can. A node is one
 * server: a postgresql:// (or postgres://) URL with exactly one host, or
 * several equivalent ones with `load_balance_hosts` saying how to spread
 * server connections over them.
 */
export function nodeUrlProblem(url: string): string | null {
  const parts = splitUrl(url);
  if (typeof parts === 'string') return parts;
  if (parts.hosts.length === 0) return 'expected a host in the URL';
  const lbh = loadBalanceHostsOf(url);
  if (lbh !== undefined && !(LOAD_BALANCE_HOSTS as readonly string[]).includes(lbh)) {
    return `load_balance_hosts: expected ${LOAD_BALANCE_HOSTS.join(' or ')}, got ${JSON.stringify(lbh)}`;
  }
  if (parts.hosts.length > 1) {
    if (lbh === undefined) return 'expected one host per node URL; list each host as its own node';
    for (const host of parts.hosts) {
      const problem = hostProblem(host) ?? nodeUrlProblem(`${parts.scheme}://${parts.userinfo}${host}${parts.rest}`);
      if (problem !== null) return problem;
    }
    return null;
  }
  const bad = hostProblem(parts.hosts[0]);
  if (bad !== null) return bad;
  try {
    new URL(url);
  } catch {
    return 'not a valid URL';
  }
  return null;
}

/**
 * One URL per host of a libpq multi-host URL, each keeping the user,
 * password, database and parameters: `postgresql://u@h1,h2:5433/db` gives
 * `postgresql://u@h1/db` and `postgresql://u@h2:5433/db`. Returns a
 * problem string instead when the URL is not usable.
 */
export function expandMultiHostUrl(url: string): string[] | string {
  const parts = splitUrl(url);
  if (typeof parts === 'string') return parts;
  if (parts.hosts.length === 0) return 'expected a host in the URL';
  const urls: string[] = [];
  for (const host of parts.hosts) {
    const single = `${parts.scheme}://${parts.userinfo}${host}${parts.rest}`;
    const bad = hostProblem(host) ?? nodeUrlProblem(single);
    if (bad !== null) return bad;
    urls.push(single);
  }
  return urls;
}

/**
 * Parses `--endpoint` values: `name=postgresql://host:port[,host:port...][/db][?...]`,
 * several comma-separated. After a comma, `name=` starts the next endpoint
 * and anything else is one more host of the current URL. A value without
 * `scheme://` is taken as the part after `postgresql://`, so `main=db1:5432`
 * works. `source` names where the value came from, for error messages.
 */
export function parseEndpointSpecs(value: string, source = 'endpoint spec'): Record<string, { nodes: string[] }> {
  const specs: { name: string; text: string }[] = [];
  for (const raw of value.split(',')) {
    const piece = raw.trim();
    const named = NAMED.exec(piece);
    if (named !== null) {
      specs.push({ name: named[1], text: named[2].trim() });
    } else if (specs.length === 0) {
      throw new ConfigError(`${source} "${value}": expected name=postgresql://host:port`);
    } else {
      specs[specs.length - 1].text += `,${piece}`;
    }
  }
  // A Map, then fromEntries: names such as "__proto__" must stay plain keys.
  const out = new Map<string, { nodes: string[] }>();
  for (const { name, text } of specs) {
    const spec = `${name}=${text}`;
    if (out.has(name)) throw new ConfigError(`${source} "${spec}": endpoint "${name}" is given twice`);
    if (text === '') throw new ConfigError(`${source} "${spec}": expected a postgresql:// URL or host:port after "="`);
    let url = text;
    if (!text.includes('://')) {
      if (SCHEME_LIKE.test(text)) throw new ConfigError(`${source} "${spec}": expected a postgresql:// URL or host:port`);
      url = `postgresql://${text}`;
    }
    // With load_balance_hosts the hosts are one node's equivalent servers.
    const nodes = loadBalanceHostsOf(url) === undefined ? expandMultiHostUrl(url) : (nodeUrlProblem(url) ?? [url]);
    if (typeof nodes === 'string') throw new ConfigError(`${source} "${spec}": ${nodes}`);
    out.set(name, { nodes });
  }
  return Object.fromEntries(out);
}
