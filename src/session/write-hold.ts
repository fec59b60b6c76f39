import type net from 'node:net';

/** A write of nothing, queued after the others to learn when they are out. */
const NOTHING = Buffer.alloc(0);

/**
 * After a write of a borrowed chunk (one that lies in a read buffer the next
 * read reuses): if `dest` has not sent all it was given yet, the write still
 * points into that buffer. Then `done` runs once every write so far has gone
 * out (an empty write queued behind them calls back), and this returns true:
 * the caller pauses the socket whose buffer it is until then.
 */
export function afterPendingWrites(dest: net.Socket, done: () => void): boolean {
  if (dest.writableLength === 0) return false;
  dest.write(NOTHING, () => done());
  return true;
}
