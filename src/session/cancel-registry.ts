import net from 'node:net';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { cancelRequest } from '../protocol/messages.ts';
import { PeerForwarder } from '../cancel/peers.ts';
import type { RedisCancelStore } from '../cancel/redis-store.ts';
import { SoloLink, type WorkerLink } from '../workers/link.ts';
import { CANCEL_TTL_MASK, keyBytes, keyOwner, newCancelKey, type CancelKey } from './cancel-key.ts';

/** The server connection a cancel should reach, if the client is using one. */
export interface CancelTarget {
  currentServer(): { host: string; port: number; processId: number; secretKey: number } | null;
}

export interface CancelRegistryOptions {
  /** The configuration in force ([peers] is read at each use, so RELOAD changes it; peer_id and cancel_store at start). */
  config: () => Config;
  log: Logger;
  /** The other workers of this pgmux (a SoloLink when it runs one process). */
  link?: WorkerLink;
}

/** The key as the map and the cancel store name it: its 8 bytes in hex. */
const hexOf = (key: CancelKey) => keyBytes(key).toString('hex');

/**
 * Maps the BackendKeyData pgmux gave each client to that client, and finds
 * the client of a CancelRequest wherever it landed. A key says which worker
 * of which peer serves its client (cancel-key.ts), so a request goes:
 *
 * 1. with peering on (peer_id > 0), to the peer its key names, if that is
 *    another configured peer: forwarded there as PgBouncer does;
 * 2. to the worker its key names, if that is another worker of this pgmux;
 * 3. here: to the backend serving the client at that moment, over a new
 *    connection as PostgreSQL expects;
 * 4. with a cancel store and no client of that key here, to the instance
 *    the store says owns it.
 *
 * A wrong key or an idle client cancels nothing. Nothing here blocks or
 * fails the connection that brought the request: it is answered (closed)
 * at once, and the forwarding goes on without it.
 */
export class CancelRegistry {
  private readonly byKey = new Map<string, CancelTarget>();
  private readonly log: Logger;
  /** In every key handed out, so fixed for the life of the instance. */
  private readonly peerId: number;
  readonly link: WorkerLink;
  readonly peers: PeerForwarder;
  private store: RedisCancelStore | null = null;
  private readonly storeOpening: Promise<void> | null = null;
  private closed = false;

  constructor(opts: CancelRegistryOptions) {
    this.log = opts.log;
    this.peerId = opts.config().peer_id;
    this.link = opts.link ?? new SoloLink();
    this.peers = new PeerForwarder(opts.config, opts.log);
    this.link.handle('cancel', (payload) => this.cancelHere(payload as CancelKey, true));
    const url = opts.config().cancel_store;
    if (url !== undefined) this.storeOpening = this.openStore(url);
  }

  private async openStore(url: string): Promise<void> {
    try {
      const { RedisCancelStore } = await import('../cancel/redis-store.ts');
      const store = await RedisCancelStore.open(url, this.log, () => this.byKey.keys(), (hexKey) => this.onStoreCancel(hexKey));
      if (this.closed) await store.close();
      else this.store = store;
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'cancel store not used: cannot load its client');
    }
  }

  /** A fresh key for a client of this worker, with this pgmux's peer_id in it. */
  register(target: CancelTarget): CancelKey {
    let key: CancelKey;
    let hex: string;
    do {
      key = newCancelKey(this.link.id, this.peerId);
      hex = hexOf(key);
    } while (this.byKey.has(hex));
    this.byKey.set(hex, target);
    this.store?.add(hex);
    return key;
  }

  unregister(key: CancelKey): void {
    const hex = hexOf(key);
    if (this.byKey.delete(hex)) this.store?.remove(hex);
  }

  /** Clients with a key now. */
  get size(): number {
    return this.byKey.size;
  }

  /** A CancelRequest that came to this worker. */
  cancel(processId: number, secretKey: number): void {
    try {
      this.route({ processId, secretKey });
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cancel request failed');
    }
  }

  private route(key: CancelKey): void {
    if (this.peerId > 0) {
      const owner = keyOwner(key);
      if (owner.peerId !== this.peerId) {
        if (this.peers.forward(key)) return;
        // No such peer: PgBouncer drops it; a cancel store may still know the key.
        if (this.store === null) {
          this.log.info({ peer: owner.peerId }, 'cancel request dropped: its key names no configured peer');
          return;
        }
      } else {
        // Keys are kept as handed out, with every forward left.
        const b = keyBytes(key);
        b[7] |= CANCEL_TTL_MASK;
        key = { processId: b.readInt32BE(0), secretKey: b.readInt32BE(4) };
      }
    }
    const { worker } = keyOwner(key);
    if (worker !== this.link.id && worker < this.link.count) {
      this.link.tell(worker, 'cancel', key);
      return;
    }
    this.cancelHere(key, true);
  }

  /** Cancels the client of `key` if it is this worker's; else, if allowed, asks the store who has it. */
  private cancelHere(key: CancelKey, askStore: boolean): void {
    const hex = hexOf(key);
    const target = this.byKey.get(hex);
    if (target !== undefined) {
      const server = target.currentServer();
      if (server !== null) sendCancel(server.host, server.port, server.processId, server.secretKey);
      return;
    }
    if (askStore && (this.store !== null || this.storeOpening !== null)) void this.forwardThroughStore(hex);
  }

  private async forwardThroughStore(hex: string): Promise<void> {
    await this.storeOpening;
    const store = this.store;
    if (store === null) return;
    try {
      const result = await store.forward(hex);
      if (result !== 'delivered') this.log.debug({ result }, 'cancel request matched no client of any instance');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cancel request for another instance not forwarded: cancel store unreachable');
    }
  }

  /** A cancel another instance found this instance owns (through the store). */
  private onStoreCancel(hexKey: string): void {
    if (!/^[0-9a-f]{16}$/.test(hexKey)) return;
    const b = Buffer.from(hexKey, 'hex');
    const key = { processId: b.readInt32BE(0), secretKey: b.readInt32BE(4) };
    try {
      this.cancelHere(key, false);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cancel request failed');
    }
  }

  /** Stops using the cancel store (its keys of ours expire or were deleted as clients left). */
  async close(): Promise<void> {
    this.closed = true;
    await this.storeOpening;
    await this.store?.close();
    this.store = null;
  }
}

export function sendCancel(host: string, port: number, processId: number, secretKey: number): void {
  const s = net.connect({ host, port }, () => s.end(cancelRequest(processId, secretKey)));
  s.on('error', () => s.destroy());
  s.setTimeout(5000, () => s.destroy());
}
