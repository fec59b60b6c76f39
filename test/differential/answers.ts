/**
 * Which answers PostgreSQL still owes a client, worked out the way a
 * client library does: each message sent is matched, in order, with the
 * messages that answer it. The harness waits on this rather than on a
 * count of Syncs, because PostgreSQL answers nothing to a Query sent after
 * an extended-protocol error (it skips to the next Sync), swallows Syncs
 * sent during COPY FROM STDIN, and holds back the answers of extended
 * messages until a Sync or Flush.
 */
import type { Msg } from './protocol.ts';

type Sent = Msg['t'];

/** Messages whose processing makes PostgreSQL flush what it has buffered. */
const FLUSHES = new Set<Sent>(['Sync', 'Flush', 'Query', 'FunctionCall']);
const EXTENDED = new Set<Sent>(['Parse', 'Bind', 'Describe', 'Execute', 'Close']);
const COPY = new Set<Sent>(['CopyData', 'CopyDone', 'CopyFail']);

export class AnswerTracker {
  /** Sent and not yet fully answered; the head is what PostgreSQL is answering. */
  private q: Sent[] = [];
  /** After an error in an extended message: everything up to the next Sync is discarded. */
  private skipping = false;
  /** COPY FROM STDIN in progress (CopyInResponse received), and whether its end was sent. */
  private copyIn = false;
  private copyEnding = false;

  sent(m: Msg): void {
    const t = m.t;
    if (t === 'Terminate' || t === 'Raw') return;
    if (this.copyIn && !this.copyEnding) {
      // PostgreSQL swallows Sync and Flush during COPY FROM STDIN; data needs no answer.
      if (t === 'CopyDone' || t === 'CopyFail') this.copyEnding = true;
      return;
    }
    if (this.skipping && t !== 'Sync') return;
    this.q.push(t);
    this.settle();
  }

  /** Drops what needs no answer from the head: a Flush, COPY messages outside a COPY. */
  private settle(): void {
    while (this.q.length > 0 && (this.q[0] === 'Flush' || (COPY.has(this.q[0]) && !this.copyIn))) this.q.shift();
  }

  private error(): void {
    this.q.shift();
    this.skipping = true;
    const sync = this.q.indexOf('Sync');
    this.q = sync < 0 ? [] : this.q.slice(sync);
  }

  received(type: string): void {
    if (type === 'N' || type === 'S' || type === 'A') return;
    const head = this.q[0];
    if (head === undefined) return;
    if (type === 'G' || type === 'W') {
      this.copyIn = true;
      // What was sent in the same write after the COPY: Syncs and data are swallowed, up to its end.
      let i = 1;
      while (i < this.q.length && !this.copyEnding) {
        const t = this.q[i];
        if (t === 'CopyDone' || t === 'CopyFail') this.copyEnding = true;
        if (t === 'Sync' || t === 'Flush' || COPY.has(t)) this.q.splice(i, 1);
        else i++;
      }
      return;
    }
    if (head === 'Query' || head === 'FunctionCall' || head === 'Sync') {
      if (type === 'Z') {
        this.q.shift();
        if (head === 'Sync') this.skipping = false;
        this.copyIn = this.copyEnding = false;
      } else if (this.copyIn && (type === 'C' || type === 'E')) this.copyIn = this.copyEnding = false;
    } else if (EXTENDED.has(head)) {
      if (type === 'E') {
        this.copyIn = this.copyEnding = false;
        this.error();
      } else if (type === '1' || type === '2' || type === '3' || type === 'n' || type === 'T' || type === 's' || type === 'I') {
        this.q.shift();
      } else if (type === 'C') {
        this.copyIn = this.copyEnding = false;
        this.q.shift();
      }
    }
    this.settle();
  }

  /** Whether PostgreSQL will still send answers without being sent anything more. */
  owed(): boolean {
    if (this.copyIn && !this.copyEnding) return false;
    return this.q.some((t) => FLUSHES.has(t));
  }

  /** Gives up on what was owed (PostgreSQL answered less than expected; the wait timed out). */
  reset(): void {
    this.q = [];
    this.skipping = false;
    this.copyIn = this.copyEnding = false;
  }
}
