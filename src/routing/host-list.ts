/**
 * Which host of a node's host list a new server connection goes to, as
 * PgBouncer's load_balance_hosts chooses among a `host=a,b` list: the
 * hosts are equivalent servers (no primary, no replicas), and only where
 * a new connection goes is chosen; a connection lent again stays where it
 * is.
 *
 * - `round-robin`: each new connection starts at the next host;
 * - `disable`: new connections go to the same host until connecting to
 *   it fails, then to the next.
 *
 * A host that cannot be reached (a connection-level failure) is skipped
 * for that connection, which tries the next hosts in turn; PgBouncer
 * would fail that connection and leave the client waiting for a retry.
 * Anything else (a refused login, a server error) is the answer.
 */
import { PgError } from '../protocol/errors.ts';
import type { NodeAddress } from './endpoint.ts';

export interface HostAddress {
  host: string;
  port: number;
}

/** A failure to reach a server at all (SQLSTATE class 08), as opposed to its answer. */
const unreachable = (err: unknown) => err instanceof PgError && err.code.startsWith('08');

export class HostChoice {
  /** Per node: the host the next connection starts at. */
  private readonly next = new WeakMap<NodeAddress, number>();
  /**
   * Where round-robin starts for a node not used yet: worker processes
   * start at different hosts (worker i at host i), so that the first
   * connections of all of them spread over the list rather than each
   * worker's first going to the first host.
   */
  private readonly first: number;

  constructor(first = 0) {
    this.first = first;
  }

  /**
   * Connects to one of the node's hosts with `attempt`, starting where the
   * node's load_balance_hosts says; a single-host node is just its host.
   */
  async connect<T>(node: NodeAddress, attempt: (at: HostAddress) => Promise<T>): Promise<{ value: T; at: HostAddress }> {
    const hosts = node.hosts ?? [node];
    if (hosts.length === 1) return { value: await attempt(hosts[0]), at: hosts[0] };
    const start = (this.next.get(node) ?? (node.loadBalanceHosts === 'disable' ? 0 : this.first)) % hosts.length;
    if (node.loadBalanceHosts !== 'disable') this.next.set(node, start + 1);
    let last: unknown;
    for (let i = 0; i < hosts.length; i++) {
      const index = (start + i) % hosts.length;
      try {
        const value = await attempt(hosts[index]);
        if (node.loadBalanceHosts === 'disable') this.next.set(node, index);
        return { value, at: hosts[index] };
      } catch (err) {
        if (!unreachable(err)) throw err;
        last = err;
      }
    }
    throw last;
  }
}
