import { expandMultiHostUrl, loadBalanceHostsOf, type LoadBalanceHosts } from '../config/endpoint-spec.ts';
import { PgError, SqlState } from '../protocol/errors.ts';

export interface NodeAddress {
  /** The (first) host; what health checks, credential look-ups and the admin console name. */
  host: string;
  port: number;
  /** Database named in the node's URL, if any. */
  database?: string;
  /**
   * Several equivalent hosts (a URL with several and `load_balance_hosts`,
   * PgBouncer's host list): each new server connection goes to one of them.
   */
  hosts?: { host: string; port: number }[];
  loadBalanceHosts?: LoadBalanceHosts;
}

export interface Endpoint {
  name: string;
  /** The primary first, then replicas. */
  nodes: NodeAddress[];
}

/** Reads host, port and database from a postgresql:// URL; several hosts with load_balance_hosts. */
export function parseNodeUrl(url: string): NodeAddress {
  const mode = loadBalanceHostsOf(url) as LoadBalanceHosts | undefined;
  const singles = mode === undefined ? [url] : expandMultiHostUrl(url);
  if (typeof singles === 'string') throw new Error(`${singles}: ${url}`);
  if (singles.length === 1) return parseOneHost(singles[0]);
  const hosts = singles.map(parseOneHost);
  return { ...hosts[0], hosts: hosts.map(({ host, port }) => ({ host, port })), loadBalanceHosts: mode };
}

function parseOneHost(url: string): NodeAddress {
  const u = new URL(url);
  if (u.protocol !== 'postgresql:' && u.protocol !== 'postgres:') throw new Error(`not a postgresql:// URL: ${url}`);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  const port = u.port === '' ? 5432 : Number(u.port);
  const database = decodeURIComponent(u.pathname.replace(/^\//, '')) || undefined;
  return { host, port, database };
}

export interface EndpointChoice {
  endpoint: Endpoint;
  /** The database to log in to on the endpoint's servers. */
  database: string;
}

export interface EndpointRequest {
  /** Endpoint named by the TLS server name (SNI), if any. */
  fromServerName: string | null;
  /** `options=endpoint=NAME`, Neon's convention. */
  fromOptions: string | undefined;
  /** The database the client asked for. */
  database: string;
}

/**
 * Which endpoint a client wants, in order: the TLS server name, then
 * `options=endpoint=NAME`, then a database name that names an endpoint,
 * then default_endpoint, then the only endpoint when there is just one.
 * Names given several ways must agree. An unknown name is refused; it never
 * falls through to another endpoint. `lookup` finds configured endpoints
 * and asks the control plane for others.
 */
export async function chooseEndpoint(
  configured: ReadonlyMap<string, Endpoint>,
  lookup: (name: string) => Promise<Endpoint | undefined>,
  defaultEndpoint: string | undefined,
  req: EndpointRequest,
): Promise<EndpointChoice> {
  const { fromServerName, fromOptions, database } = req;
  if (fromServerName !== null && fromOptions !== undefined && fromServerName !== fromOptions) {
    throw disagree(`"${fromServerName}" from the TLS server name`, `"${fromOptions}" from options`);
  }
  const explicit = fromServerName ?? fromOptions;
  const byDatabase = configured.get(database);
  if (explicit !== undefined) {
    if (byDatabase !== undefined && byDatabase.name !== explicit) {
      throw disagree(`"${explicit}" from the ${fromServerName !== null ? 'TLS server name' : 'options'}`, `"${database}" from the database name`);
    }
    const ep = await lookup(explicit);
    if (ep === undefined) throw unknownEndpoint(explicit);
    return { endpoint: ep, database: ep.name === database ? (ep.nodes[0].database ?? database) : database };
  }
  if (byDatabase !== undefined) return { endpoint: byDatabase, database: byDatabase.nodes[0].database ?? database };
  const fallback = defaultEndpoint ?? (configured.size === 1 ? [...configured.keys()][0] : undefined);
  if (fallback === undefined) {
    throw new PgError(SqlState.INVALID_CATALOG_NAME, `no endpoint for database "${database}"`, {
      hint: 'Name an endpoint with options=endpoint=NAME, connect to a database named like an endpoint, or set default_endpoint.',
    });
  }
  const ep = configured.get(fallback);
  if (ep === undefined) throw unknownEndpoint(fallback);
  return { endpoint: ep, database };
}

function disagree(a: string, b: string): PgError {
  return new PgError(SqlState.INVALID_CATALOG_NAME, `endpoint ${a} and ${b} disagree`, {
    hint: 'Name one endpoint, or the same one each way.',
  });
}

function unknownEndpoint(name: string): PgError {
  return new PgError(SqlState.INVALID_CATALOG_NAME, `endpoint "${name}" does not exist`);
}
