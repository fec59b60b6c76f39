import net from 'node:net';

/** Gets a socket's reads; a `borrowed` chunk lies in a buffer the next read reuses. */
export type ChunkReader = (chunk: Buffer, borrowed: boolean) => void;

export interface OwnReads {
  readonly socket: net.Socket;
  /** Where reads go from now on; null drops them (the socket is handed to TLS). */
  setReader(reader: ChunkReader | null): void;
}

/** One read of a client takes at most this much. */
const READ_BUFFER_SIZE = 16 * 1024;

type HandleCarrier = net.Socket & { _handle?: { readStart?: unknown } | null };

/**
 * Gives an accepted client connection reads into a buffer of its own,
 * delivered straight to the session rather than through the stream
 * machinery ('data' events, a new buffer per read). That halves what
 * Node spends per message forwarded; it is what `net.connect`'s `onread`
 * does, which `net.Server` does not offer for the connections it
 * accepts. The connection must have been accepted paused
 * (pauseOnConnect): its handle moves, unread, to a socket made with
 * `onread`, and the accepted one lets go of it. Where the handle cannot
 * move, the accepted socket is kept and reads come by 'data' events.
 */
export function ownReads(accepted: net.Socket): OwnReads {
  let reader: ChunkReader | null = null;
  const carrier = accepted as HandleCarrier;
  const handle = carrier._handle;
  if (handle === null || handle === undefined || typeof handle.readStart !== 'function') {
    accepted.on('data', (chunk: Buffer) => reader?.(chunk, false));
    accepted.resume();
    return { socket: accepted, setReader: (r) => (reader = r) };
  }
  const buffer = Buffer.allocUnsafe(READ_BUFFER_SIZE);
  carrier._handle = null;
  // Without its handle, destroying the accepted socket only ends its
  // bookkeeping (the listener's count of open connections).
  accepted.destroy();
  const socket = new net.Socket({
    handle,
    readable: true,
    writable: true,
    onread: { buffer, callback: (n: number) => (reader?.(buffer.subarray(0, n), true), true) },
  } as unknown as net.SocketConstructorOpts);
  return { socket, setReader: (r) => (reader = r) };
}
