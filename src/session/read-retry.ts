import type { Logger } from 'pino';
import { SqlState } from '../protocol/errors.ts';
import { parseErrorFields } from '../protocol/messages.ts';
import type { Batch } from './batch.ts';
import type { Relay } from './replies.ts';

interface Watched {
  batch: Batch;
  /** replica: a read that a replica may refuse; fresh: the first batch on a connection just taken from the pool. */
  kind: 'replica' | 'fresh';
  state: 'holding' | 'dropping';
  held: Buffer[];
  /** Client statement names the batch defined, undone before it is sent again. */
  registered: string[];
}

/**
 * A read sent to a replica has its replies held until the first one that
 * says how it went. If that is a read-only-transaction error (25006) — the
 * classification was wrong, say a STABLE function that calls nextval — or
 * the replica goes away, nothing has reached the client yet, and the batch
 * is sent again to the primary, unseen. Anything else releases the held
 * replies and the read goes on where it is.
 *
 * The first batch on a connection just taken from the pool is held until
 * the server's first reply: if that is the FATAL of a backend terminated
 * while it sat idle (57P01–57P03, before anything of the batch ran), the
 * batch goes again on another connection and the client never knows.
 */
export class ReadRetry {
  private cur: Watched | null = null;
  private readonly relay: Relay;
  private readonly log: Logger;
  private readonly onRelease: () => void;

  constructor(relay: Relay, log: Logger, onRelease: () => void) {
    this.relay = relay;
    this.log = log;
    this.onRelease = onRelease;
  }

  get pending(): boolean {
    return this.cur !== null;
  }

  /** The watched batch's server is going away with a FATAL that the client must not see. */
  get dropping(): boolean {
    return this.cur !== null && this.cur.state === 'dropping';
  }

  watch(batch: Batch, kind: 'replica' | 'fresh' = 'replica'): void {
    const w: Watched = { batch, kind, state: 'holding', held: [], registered: [] };
    this.cur = w;
    this.relay.observer = (type, body, own) => {
      if (this.cur !== w || w.state !== 'holding') return;
      if (kind === 'fresh') {
        if (type === 0x45 && diedIdle(body!)) {
          w.state = 'dropping';
          w.held = [];
          this.log.info('server connection was terminated while idle: sending the batch on another connection');
        } else this.release(w);
        return;
      }
      // pgmux's own query ahead of the read (the client's settings set on
      // the connection) says nothing of the read.
      if (own) return;
      // ParseComplete, BindComplete, CloseComplete, descriptions, parameter
      // reports and notices say nothing yet; anything else decides.
      if (type === 0x31 || type === 0x32 || type === 0x33 || type === 0x74 || type === 0x6e || type === 0x54 || type === 0x53 || type === 0x4e) return;
      if (type === 0x45 && parseErrorFields(body!).get('C') === SqlState.READ_ONLY_SQL_TRANSACTION) {
        w.state = 'dropping';
        w.held = [];
        this.log.info('replica refused a write (25006): sending the statement to the primary');
      } else this.release(w);
    };
  }

  private release(w: Watched): void {
    this.cur = null;
    this.relay.observer = null;
    this.released = w.held;
  }

  /** Replies held when the watched read was released, to go out first. */
  private released: Buffer[] | null = null;

  noteRegistered(batch: Batch, names: string[]): void {
    if (this.cur?.batch === batch) this.cur.registered = names;
  }

  /** The refused read's last replies are still in the relay's output: drop them once. */
  private dropNext = false;

  /** What of `out` the client gets now (nothing while held or dropped). */
  pass(out: Buffer[], borrowed = false): Buffer[] {
    if (this.dropNext) {
      this.dropNext = false;
      return [];
    }
    if (this.released !== null) {
      const all = [...this.released, ...out];
      this.released = null;
      queueMicrotask(this.onRelease);
      return all;
    }
    const w = this.cur;
    if (w === null) return out;
    // Held past this read: copies when the read buffer is reused.
    if (w.state === 'holding') w.held.push(...(borrowed ? out.map((b) => Buffer.from(b)) : out));
    return [];
  }

  /**
   * The batch to send again, with its statement names to forget: after the
   * replica's ReadyForQuery that ends a refused read (`ready`), or when the
   * replica went away while the read was held (`closed`); else null.
   */
  take(event: 'ready' | 'closed'): Watched | null {
    const w = this.cur;
    if (w === null) return null;
    if (event === 'ready' && (w.kind !== 'replica' || w.state !== 'dropping')) return null;
    if (event === 'closed' && w.state !== (w.kind === 'replica' ? 'holding' : 'dropping')) return null;
    this.cur = null;
    this.relay.observer = null;
    // The ReadyForQuery that ends the refused read is being relayed now.
    if (event === 'ready') this.dropNext = true;
    return w;
  }
}

/** The FATAL a backend sends when it is terminated or the server shuts down: nothing of the batch ran. */
function diedIdle(body: Buffer): boolean {
  const f = parseErrorFields(body);
  const code = f.get('C');
  return (f.get('V') ?? f.get('S')) === 'FATAL' && (code === '57P01' || code === '57P02' || code === '57P03');
}
