import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FrameReader, StartupReader, type FrameVisitor } from '../src/protocol/framing.ts';
import { PgError } from '../src/protocol/errors.ts';
import { parseStartupPacket, startupMessage, cancelRequest } from '../src/protocol/messages.ts';

type Msg = { type: number; body: Buffer };

function encode(msgs: Msg[]): Buffer {
  return Buffer.concat(
    msgs.map((m) => {
      const h = Buffer.alloc(5);
      h[0] = m.type;
      h.writeInt32BE(m.body.length + 4, 1);
      return Buffer.concat([h, m.body]);
    }),
  );
}

/** Splits `buf` at the given cut points. */
function chunk(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  out.push(buf.subarray(prev));
  return out;
}

function readAll(chunks: Buffer[], keep: string): { type: number; body: Buffer | null }[] {
  const reader = new FrameReader(keep);
  const got: { type: number; body: Buffer | null }[] = [];
  const visitor: FrameVisitor = {
    onMessage(type, body) {
      got.push({ type, body: body === null ? null : Buffer.from(body) });
    },
  };
  for (const c of chunks) expect(reader.feed(c, visitor)).toBe(c.length);
  expect(reader.atBoundary).toBe(true);
  return got;
}

const message = fc.record({
  type: fc.integer({ min: 0x41, max: 0x7a }),
  body: fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
});

describe('FrameReader', () => {
  it('gives the same messages for every chunking of a stream', () => {
    fc.assert(
      fc.property(fc.array(message, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), (msgs, cuts) => {
        const stream = encode(msgs);
        const got = readAll(chunk(stream, cuts), '\x00ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz[\\]^_`');
        expect(got.map((m) => m.type)).toEqual(msgs.map((m) => m.type));
        got.forEach((m, i) => expect(m.body?.equals(msgs[i].body)).toBe(true));
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps only the bodies it was asked for, and still counts every message', () => {
    fc.assert(
      fc.property(fc.array(message, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), (msgs, cuts) => {
        const got = readAll(chunk(encode(msgs), cuts), 'Z');
        expect(got.map((m) => m.type)).toEqual(msgs.map((m) => m.type));
        got.forEach((m, i) => {
          if (m.type === 0x5a) expect(m.body?.equals(msgs[i].body)).toBe(true);
          else expect(m.body).toBeNull();
        });
      }),
      { numRuns: 1000 },
    );
  });

  it('reports where each message ends within the chunk and stops when asked', () => {
    const stream = encode([
      { type: 0x51, body: Buffer.from('a') },
      { type: 0x58, body: Buffer.alloc(0) },
      { type: 0x51, body: Buffer.from('b') },
    ]);
    const reader = new FrameReader('');
    const ends: number[] = [];
    const consumed = reader.feed(stream, {
      onMessage(type, _body, end) {
        ends.push(end);
        return type !== 0x58;
      },
    });
    expect(ends).toEqual([6, 11]);
    expect(consumed).toBe(11);
  });

  it('refuses lengths under 4, negative lengths and lengths over the limit with 08P01', () => {
    for (const len of [0, 3, -1, -2147483648, 2147483647]) {
      const b = Buffer.alloc(5);
      b[0] = 0x51;
      b.writeInt32BE(len, 1);
      const reader = new FrameReader('', 1 << 20);
      let err: unknown;
      try {
        reader.feed(b, { onMessage() {} });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(PgError);
      expect((err as PgError).code).toBe('08P01');
    }
  });
});

describe('startup packets', () => {
  it('reassembles a startup packet from any chunking and decodes it', () => {
    const packet = startupMessage([
      ['user', 'app'],
      ['database', 'appdb'],
      ['_pq_.compression', 'on'],
    ]);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 10 }), (cuts) => {
        const r = new StartupReader();
        let got: Buffer | null = null;
        for (const c of chunk(packet, cuts)) got = got ?? r.push(c);
        expect(got?.equals(packet)).toBe(true);
        const req = parseStartupPacket(got!);
        expect(req.kind).toBe('startup');
        if (req.kind === 'startup') {
          expect(Object.fromEntries(req.params)).toEqual({ user: 'app', database: 'appdb' });
          expect(req.protocolOptions).toEqual(['_pq_.compression']);
        }
      }),
    );
  });

  it('decodes CancelRequest and refuses unknown codes and bad lengths', () => {
    expect(parseStartupPacket(cancelRequest(42, -7))).toEqual({ kind: 'cancel', processId: 42, secretKey: -7 });
    const bad = Buffer.alloc(8);
    bad.writeInt32BE(8);
    bad.writeInt32BE(0x00020000, 4);
    expect(() => parseStartupPacket(bad)).toThrow(/unsupported frontend protocol/);
    const huge = Buffer.alloc(8);
    huge.writeInt32BE(0x7fffffff);
    expect(() => new StartupReader().push(huge)).toThrow(PgError);
  });
});
