/**
 * The BackendKeyData pgmux hands a client, and what it says about who
 * serves that client. A CancelRequest may land on any worker of any pgmux
 * instance (SO_REUSEPORT, a TCP load balancer): the key tells where the
 * client is.
 *
 * As 8 bytes (processId big-endian, then secretKey big-endian):
 *   byte 0      random, sign bit clear (pids are positive; some clients
 *               mishandle a negative one)
 *   bytes 1..2  peer_id, low byte first: PgBouncer's own layout, so a
 *               [peers] group reads it as PgBouncer does (0 = no peering)
 *   byte 3      the worker (0 .. 254) within the instance
 *   bytes 4..7  random, but the low 2 bits of byte 7: with peering on, the
 *               number of times the request may still be forwarded (3 at
 *               first, as PgBouncer)
 * Without peering bytes 1..2 are random too, and so are the TTL bits.
 */
import { randomBytes } from 'node:crypto';

export const CANCEL_TTL_MASK = 0x03;

export interface CancelKey {
  processId: number;
  secretKey: number;
}

export interface KeyOwner {
  /** peer_id in the key; meaningful only where peering is on. */
  peerId: number;
  worker: number;
  /** Forwards left (peering only). */
  ttl: number;
}

/** A fresh random key for a client of `worker`, with `peerId` (0: no peering) in it. */
export function newCancelKey(worker: number, peerId: number): CancelKey {
  const b = randomBytes(8);
  b[0] &= 0x7f;
  if (peerId > 0) {
    b[1] = peerId & 0xff;
    b[2] = (peerId >> 8) & 0xff;
    b[7] |= CANCEL_TTL_MASK;
  }
  b[3] = worker;
  return { processId: b.readInt32BE(0), secretKey: b.readInt32BE(4) };
}

export function keyBytes(key: CancelKey): Buffer {
  const b = Buffer.alloc(8);
  b.writeInt32BE(key.processId | 0, 0);
  b.writeInt32BE(key.secretKey | 0, 4);
  return b;
}

/** Who the key says serves its client. */
export function keyOwner(key: CancelKey): KeyOwner {
  const b = keyBytes(key);
  return { peerId: b[1] | (b[2] << 8), worker: b[3], ttl: b[7] & CANCEL_TTL_MASK };
}

/** The same key with one forward fewer left (the caller checked ttl > 0). */
export function forwarded(key: CancelKey): CancelKey {
  const b = keyBytes(key);
  b[7] -= 1;
  return { processId: b.readInt32BE(0), secretKey: b.readInt32BE(4) };
}
