import { PgError, SqlState } from '../protocol/errors.ts';

export interface NodeAddress {
  host: string;
  port: number;
  /** Database named in the node's URL, if any. */
  database?: string;
}

export interface Endpoint {
  name: string;
  /** The primary first, then replicas. */
  nodes: NodeAddress[];
}

/** Reads host, port and database from a postgresql:// URL. */
export function parseNodeUrl(url: string): NodeAddress {
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

/**
 * Which endpoint a client wants: `options=endpoint=NAME` first, then a
 * database name that names an endpoint, then default_endpoint, then the
 * only endpoint when there is just one. An unknown name is refused; it
 * never falls through to another endpoint.
 */
export function chooseEndpoint(
  endpoints: ReadonlyMap<string, Endpoint>,
  defaultEndpoint: string | undefined,
  database: string,
  requested: string | undefined,
): EndpointChoice {
  if (requested !== undefined) {
    const ep = endpoints.get(requested);
    if (ep === undefined) throw unknownEndpoint(requested);
    return { endpoint: ep, database };
  }
  const byName = endpoints.get(database);
  if (byName !== undefined) return { endpoint: byName, database: byName.nodes[0].database ?? database };
  const fallback = defaultEndpoint ?? (endpoints.size === 1 ? [...endpoints.keys()][0] : undefined);
  if (fallback === undefined) {
    throw new PgError(SqlState.INVALID_CATALOG_NAME, `no endpoint for database "${database}"`, {
      hint: 'Name an endpoint with options=endpoint=NAME, connect to a database named like an endpoint, or set default_endpoint.',
    });
  }
  const ep = endpoints.get(fallback);
  if (ep === undefined) throw unknownEndpoint(fallback);
  return { endpoint: ep, database };
}

function unknownEndpoint(name: string): PgError {
  return new PgError(SqlState.INVALID_CATALOG_NAME, `endpoint "${name}" does not exist`);
}
