/**
 * SHOW PEERS and SHOW PEER_POOLS, as PgBouncer's console answers them:
 * the configured [peers], and the CancelRequests being forwarded to each.
 */
import type { Config } from '../config/schema.ts';
import type { ResultSet } from '../admin/console.ts';
import type { CancelRegistry } from '../session/cancel-registry.ts';

export function showPeers(config: Config): ResultSet {
  const rows = Object.entries(config.peers)
    .map(([id, p]) => [Number(id), p.host, p.port, p.pool_size ?? config.default_pool_size])
    .sort((a, b) => (a[0] as number) - (b[0] as number));
  return { columns: [['peer_id', 'int4'], ['host', 'text'], ['port', 'int4'], ['pool_size', 'int4']], rows };
}

/**
 * A forward is one connection that carries one CancelRequest, so a request
 * under way is both an active cancel request and an active cancel
 * connection; pgmux has no login phase with a peer (sv_login is 0).
 */
export function showPeerPools(cancels: CancelRegistry): ResultSet {
  return {
    columns: [['peer_id', 'int4'], ['cl_active_cancel_req', 'int4'], ['cl_waiting_cancel_req', 'int4'], ['sv_active_cancel', 'int4'], ['sv_login', 'int4']],
    rows: cancels.peers.stats().map((p) => [p.peerId, p.active, p.waiting, p.active, 0]),
  };
}
