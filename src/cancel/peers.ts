/**
 * PgBouncer's peering: a CancelRequest whose key carries another peer_id
 * is sent on, over a new connection, to that peer's address with one
 * forward fewer left in the key. Peers may be pgmux or PgBouncer alike,
 * since both read the key the same way.
 *
 * Each peer has `pool_size` forwards in flight at most (PgBouncer's
 * meaning of the key); more wait their turn. Nothing here can hold up a
 * client: a forward is a fire-and-forget connection, bounded in time.
 */
import net from 'node:net';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { cancelRequest } from '../protocol/messages.ts';
import { socketPath } from '../unix-socket.ts';
import { forwarded, keyOwner, type CancelKey } from '../session/cancel-key.ts';

/** A peer that has not answered (or closed) in this time is given up on. */
const FORWARD_TIMEOUT_MS = 5000;
/** Forwards waiting for a free slot, per peer; past this they are dropped. */
const MAX_WAITING = 1000;

export interface PeerPoolStats {
  peerId: number;
  /** Forwards under way (PgBouncer's cl_active_cancel_req). */
  active: number;
  /** Forwards waiting for a slot (cl_waiting_cancel_req). */
  waiting: number;
}

/** Where a peer entry's host and port lead: TCP, or a Unix socket in a directory. */
export function peerAddress(host: string, port: number): net.NetConnectOpts {
  return host.startsWith('/') || host.startsWith('@') ? { path: socketPath(host, port) } : { host, port };
}

export class PeerForwarder {
  private readonly config: () => Config;
  private readonly log: Logger;
  private readonly active = new Map<number, number>();
  private readonly waiting = new Map<number, CancelKey[]>();

  constructor(config: () => Config, log: Logger) {
    this.config = config;
    this.log = log;
  }

  /**
   * Sends `key` towards the peer it names, or drops it with a log line
   * when its forwards are used up or no such peer is configured. Returns
   * false when the peer is not configured (the caller may try elsewhere).
   */
  forward(key: CancelKey): boolean {
    const { peerId, ttl } = keyOwner(key);
    const peer = this.config().peers[String(peerId)];
    if (peer === undefined) return false;
    if (ttl === 0) {
      this.log.info({ peer: peerId }, 'cancel request dropped: forwarded too many times (TTL exhausted)');
      return true;
    }
    const next = forwarded(key);
    const inFlight = this.active.get(peerId) ?? 0;
    if (inFlight < (peer.pool_size ?? this.config().default_pool_size)) {
      this.send(peerId, next);
      return true;
    }
    let queue = this.waiting.get(peerId);
    if (queue === undefined) this.waiting.set(peerId, (queue = []));
    if (queue.length >= MAX_WAITING) {
      this.log.warn({ peer: peerId }, 'cancel request dropped: too many forwards waiting for this peer');
      return true;
    }
    queue.push(next);
    return true;
  }

  private send(peerId: number, key: CancelKey): void {
    const peer = this.config().peers[String(peerId)];
    if (peer === undefined) return this.done(peerId);
    this.active.set(peerId, (this.active.get(peerId) ?? 0) + 1);
    this.log.debug({ peer: peerId }, 'forwarding cancel request to peer');
    let finished = false;
    const finish = (err?: Error) => {
      if (finished) return;
      finished = true;
      if (err !== undefined) this.log.warn({ peer: peerId, host: peer.host, port: peer.port, err: err.message }, 'cancel request not forwarded to peer');
      s.destroy();
      this.active.set(peerId, (this.active.get(peerId) ?? 1) - 1);
      this.done(peerId);
    };
    const s = net.connect(peerAddress(peer.host, peer.port), () => s.end(cancelRequest(key.processId, key.secretKey)));
    // A peer answers a CancelRequest by closing, as PostgreSQL does.
    s.on('data', () => {});
    s.on('close', () => finish());
    s.on('error', (err) => finish(err));
    s.setTimeout(FORWARD_TIMEOUT_MS, () => finish(new Error('timed out')));
  }

  /** A slot of `peerId` is free: the next waiting forward takes it. */
  private done(peerId: number): void {
    const next = this.waiting.get(peerId)?.shift();
    if (next !== undefined) this.send(peerId, next);
    else if (this.waiting.get(peerId)?.length === 0) this.waiting.delete(peerId);
  }

  /** SHOW PEER_POOLS: every configured peer, with its forwards under way and waiting. */
  stats(): PeerPoolStats[] {
    return Object.keys(this.config().peers)
      .map(Number)
      .sort((a, b) => a - b)
      .map((peerId) => ({ peerId, active: this.active.get(peerId) ?? 0, waiting: this.waiting.get(peerId)?.length ?? 0 }));
  }
}
