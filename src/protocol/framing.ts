import { protocolViolation } from './errors.ts';

/**
 * Incremental framing of a PostgreSQL message stream (after startup): a type
 * byte, an Int32 length that counts itself, then the body.
 *
 * The reader peeks at headers and skips bodies. Only messages whose type the
 * caller asked to keep have their body handed over (a view into the chunk when
 * it lies within one chunk, a copy only when it spans chunks), so forwarding a
 * 64 MB DataRow never buffers it: the caller forwards the original chunks.
 */
export interface FrameVisitor {
  /**
   * One complete message. `body` is null unless its type was asked for.
   * `end` is the offset in the current chunk just past the message.
   * `size` is the whole message's size (type byte and length included), so
   * it began at `end - size`, which is negative when it began in an earlier
   * chunk. Return false to stop reading the chunk there (feed returns `end`).
   */
  onMessage(type: number, body: Buffer | null, end: number, size: number): boolean | void;
}

const HEADER = 5;

/** Lookup tables by message type, shared by every reader that asks for the same set. */
const tables = new Map<string, Uint8Array>();
function typeTable(types: string, all: boolean): Uint8Array {
  const key = `${all ? '*' : ''}${types}`;
  let t = tables.get(key);
  if (t === undefined) {
    t = new Uint8Array(256).fill(all ? 1 : 0);
    for (let i = 0; i < types.length; i++) t[types.charCodeAt(i)] = 1;
    tables.set(key, t);
  }
  return t;
}

export class FrameReader {
  private readonly maxLength: number;
  private readonly keep: Uint8Array;
  private readonly header = Buffer.allocUnsafe(HEADER);
  private headerFill = 0;
  /** Body bytes of the current message not yet seen; -1 while reading a header. */
  private remaining = -1;
  private type = 0;
  /** Declared length of the current message (its size minus the type byte). */
  private length = 0;
  private parts: Buffer[] | null = null;

  /**
   * @param keepTypes message type characters whose bodies the visitor needs
   * @param maxLength largest accepted length field (which counts itself)
   * @param validTypes message types the stream may carry (default: any)
   */
  constructor(keepTypes: string, maxLength = 0x3fffffff, validTypes?: string) {
    this.maxLength = maxLength;
    this.keep = typeTable(keepTypes, false);
    this.valid = validTypes === undefined ? typeTable('', true) : typeTable(validTypes, false);
  }

  /** Types accepted; any other is refused as soon as its header is read. */
  private readonly valid: Uint8Array;

  /** True when no message is partly read: the stream is at a message boundary. */
  get atBoundary(): boolean {
    return this.remaining === -1 && this.headerFill === 0;
  }

  /** True unless inside a message body (a partial header may be pending). */
  get betweenBodies(): boolean {
    return this.remaining === -1;
  }

  /**
   * Bytes of a header that began in an earlier chunk and is not complete yet.
   * A forwarder holds these back so it never sends part of a message whose
   * type it has not seen (it might be one it must not forward).
   */
  get partialHeaderLength(): number {
    return this.headerFill;
  }

  partialHeader(): Buffer {
    return Buffer.from(this.header.subarray(0, this.headerFill));
  }

  /**
   * Bytes of the current, incomplete message read so far (header included),
   * and its type (-1 while the header itself is incomplete). A relay that
   * may drop a message holds these back until the message is whole.
   */
  get partialSize(): number {
    if (this.remaining < 0) return this.headerFill;
    return HEADER + (this.length - 4 - this.remaining);
  }
  get partialType(): number {
    return this.remaining < 0 ? -1 : this.type;
  }

  /**
   * Reads `chunk`, calling the visitor per complete message. Returns the number
   * of bytes consumed: chunk.length, or less when the visitor stopped early.
   * Throws PgError 08P01 on an invalid length.
   */
  feed(chunk: Buffer, visitor: FrameVisitor): number {
    const n = chunk.length;
    let pos = 0;
    while (pos < n) {
      if (this.remaining < 0) {
        // Header: fast path when all five bytes are in this chunk.
        let type: number;
        let length: number;
        if (this.headerFill === 0 && n - pos >= HEADER) {
          type = chunk[pos];
          length = chunk.readInt32BE(pos + 1);
          pos += HEADER;
        } else {
          const take = Math.min(HEADER - this.headerFill, n - pos);
          chunk.copy(this.header, this.headerFill, pos, pos + take);
          this.headerFill += take;
          pos += take;
          if (this.headerFill < HEADER) return n;
          this.headerFill = 0;
          type = this.header[0];
          length = this.header.readInt32BE(1);
        }
        if (this.valid[type] === 0) throw protocolViolation(`invalid frontend message type ${type}`);
        if (length < 4) throw protocolViolation(`invalid message length ${length}`);
        if (length > this.maxLength) {
          throw protocolViolation(`message of type "${printable(type)}" too long`, `Length ${length} exceeds the limit of ${this.maxLength} bytes.`);
        }
        this.type = type;
        this.length = length;
        this.remaining = length - 4;
        if (this.keep[type] === 1) {
          const bodyLen = this.remaining;
          if (n - pos >= bodyLen) {
            // Whole body in this chunk: hand over a view, no copy.
            const body = chunk.subarray(pos, pos + bodyLen);
            pos += bodyLen;
            this.remaining = -1;
            if (visitor.onMessage(type, body, pos, length + 1) === false) return pos;
            continue;
          }
          this.parts = [];
        } else {
          this.parts = null;
        }
      }
      // Body (possibly empty), continued across chunks.
      const take = Math.min(this.remaining, n - pos);
      // A copy: the chunk may be a read buffer that the next read reuses.
      if (this.parts !== null && take > 0) this.parts.push(Buffer.from(chunk.subarray(pos, pos + take)));
      pos += take;
      this.remaining -= take;
      if (this.remaining === 0) {
        const parts = this.parts;
        this.parts = null;
        this.remaining = -1;
        const body = parts === null ? null : parts.length === 1 ? parts[0] : Buffer.concat(parts);
        if (visitor.onMessage(this.type, body, pos, this.length + 1) === false) return pos;
      }
    }
    return n;
  }
}

/**
 * Whole-message framing for the paths that rewrite messages (transaction
 * pooling, routing): each message is handed over with its header, as a view
 * into the chunk when it lies within one, else assembled once.
 */
export class MessageReader {
  private readonly frames: FrameReader;
  private pending: Buffer[] = [];

  constructor(maxLength: number, validTypes?: string) {
    // Bodies are not kept by the inner reader: the message is cut from the
    // chunks by offsets, so nothing is copied for messages within a chunk.
    this.frames = new FrameReader('', maxLength, validTypes);
  }

  get atBoundary(): boolean {
    return this.frames.atBoundary;
  }

  /** Calls `onMessage` with each complete message (header included). */
  feed(chunk: Buffer, onMessage: (type: number, msg: Buffer) => void): void {
    let from = 0;
    this.frames.feed(chunk, {
      onMessage: (type, _body, end, size) => {
        const start = end - size;
        if (start >= 0) {
          onMessage(type, chunk.subarray(start, end));
        } else {
          this.pending.push(chunk.subarray(0, end));
          const msg = Buffer.concat(this.pending);
          this.pending = [];
          onMessage(type, msg.subarray(msg.length - size));
        }
        from = end;
      },
    });
    if (from < chunk.length) this.pending.push(chunk.subarray(from));
  }
}

function printable(type: number): string {
  return type >= 0x20 && type < 0x7f ? String.fromCharCode(type) : `\\x${type.toString(16).padStart(2, '0')}`;
}

/**
 * Startup-phase framing: packets with a length but no type byte
 * (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest).
 * PostgreSQL refuses startup packets over 10000 bytes; so do we.
 */
export const MAX_STARTUP_PACKET_LENGTH = 10000;

export class StartupReader {
  private buffered: Buffer = Buffer.alloc(0);

  /** Adds bytes; returns one complete packet (length word included) or null. */
  push(chunk: Buffer): Buffer | null {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    return this.next();
  }

  /** The next complete packet already buffered, or null. */
  next(): Buffer | null {
    if (this.buffered.length < 4) return null;
    const length = this.buffered.readInt32BE(0);
    if (length < 8 || length > MAX_STARTUP_PACKET_LENGTH) throw protocolViolation(`invalid length of startup packet: ${length}`);
    if (this.buffered.length < length) return null;
    const packet = this.buffered.subarray(0, length);
    this.buffered = this.buffered.subarray(length);
    return packet;
  }

  /** Bytes received past the packets returned so far (e.g. a pipelined message after startup). */
  takeRest(): Buffer {
    const rest = this.buffered;
    this.buffered = Buffer.alloc(0);
    return rest;
  }
}
