import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CANCEL_TTL_MASK, forwarded, keyBytes, keyOwner, newCancelKey } from '../src/session/cancel-key.ts';
import { cancelRequest, parseStartupPacket } from '../src/protocol/messages.ts';

describe('cancel key layout', () => {
  it('says the worker and peer_id it was made with, with every forward left, and a positive processId', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 254 }), fc.integer({ min: 1, max: 16383 }), (worker, peerId) => {
        const key = newCancelKey(worker, peerId);
        expect(keyOwner(key)).toEqual({ peerId, worker, ttl: 3 });
        expect(key.processId).toBeGreaterThanOrEqual(0);
      }),
    );
  });

  it('is PgBouncer\'s layout: peer_id in bytes 1 and 2, low byte first; the TTL in the low bits of byte 7', () => {
    const key = newCancelKey(7, 0x1234);
    const b = keyBytes(key);
    expect([b[1], b[2], b[3]]).toEqual([0x34, 0x12, 7]);
    expect(b[7] & CANCEL_TTL_MASK).toBe(3);
    expect(b[0] & 0x80).toBe(0);
  });

  it('without peering keeps the worker and leaves the rest random', () => {
    const keys = Array.from({ length: 200 }, () => newCancelKey(3, 0));
    for (const k of keys) expect(keyOwner(k).worker).toBe(3);
    expect(new Set(keys.map((k) => keyOwner(k).peerId)).size).toBeGreaterThan(1);
    expect(new Set(keys.map((k) => k.secretKey)).size).toBe(200);
  });

  it('each forward takes one from the TTL and changes nothing else', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 254 }), fc.integer({ min: 1, max: 16383 }), (worker, peerId) => {
        let key = newCancelKey(worker, peerId);
        for (const ttl of [2, 1, 0]) {
          const next = forwarded(key);
          expect(keyOwner(next)).toEqual({ peerId, worker, ttl });
          expect(next.processId).toBe(key.processId);
          expect(keyBytes(next).subarray(0, 7)).toEqual(keyBytes(key).subarray(0, 7));
          expect(keyBytes(next)[7] >> 2).toBe(keyBytes(key)[7] >> 2);
          key = next;
        }
      }),
    );
  });

  it('survives a CancelRequest on the wire: the 8 bytes sent are the 8 bytes read', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 254 }), fc.integer({ min: 0, max: 16383 }), (worker, peerId) => {
        const key = newCancelKey(worker, peerId);
        const req = parseStartupPacket(cancelRequest(key.processId, key.secretKey));
        expect(req).toEqual({ kind: 'cancel', processId: key.processId, secretKey: key.secretKey });
      }),
    );
  });
});
