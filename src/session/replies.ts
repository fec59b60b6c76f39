import type { FrameReader } from '../protocol/framing.ts';
import { readyForQuery } from '../protocol/messages.ts';
import { renameInError } from '../protocol/error-text.ts';

/**
 * What a client expects back, in order, for the messages pgmux sent on its
 * behalf, and the relay that turns a server's byte stream into exactly that.
 *
 * Each message sent to the server (or answered by pgmux itself) gets an
 * entry. The server's replies are matched to the entry at the head: passed
 * on for the client's own messages, dropped for those pgmux injected (a
 * lazily prepared statement, the Close of an evicted one, the SET that
 * carries the client's parameters), and replies pgmux makes up (ParseComplete
 * for a statement already prepared on this connection, CloseComplete) are
 * written when their entry reaches the head, so the client sees the order
 * PostgreSQL itself would produce.
 */
export const enum_ = { forward: 0, swallow: 1, synth: 2 } as const;
type Kind = (typeof enum_)[keyof typeof enum_];

export interface Entry {
  kind: Kind;
  /** The frontend message type this entry answers ('P', 'B', 'D', 'E', 'C', 'S', 'Q', 'F'). */
  type: number;
  /** synth: the reply, or null for a ReadyForQuery with the current status. */
  bytes?: Buffer | null;
  /** Called when the server reports an error for this entry (e.g. a Parse that failed). */
  onError?: () => void;
  /**
   * Called when the server skipped this entry's message after an earlier
   * error in the same run (it skips to Sync); onError when not given.
   */
  onSkip?: () => void;
  /** Called when the server completes this entry without error (a made-up reply: when it is written). */
  onDone?: () => void;
  /**
   * The server's ErrorResponse for this entry is replaced by this one: a
   * message pgmux sent to make the server fail in the client's place, so
   * that its transaction fails exactly as PostgreSQL's own would, while
   * the client reads pgmux's words.
   */
  replaceError?: Buffer;
  /** The server-side name this message used for a client's statement, and the client's own name for it. */
  names?: { server: string; client: string };
  /** Sent while the server skips to Sync after an error: it gets no reply. */
  skipped?: boolean;
}

const Z = 0x5a;

/** The SQLSTATE of an ErrorResponse body. */
function errorCode(body: Buffer): string | undefined {
  for (let i = 0; i < body.length && body[i] !== 0; ) {
    const end = body.indexOf(0, i + 1);
    if (end < 0) return undefined;
    if (body[i] === 0x43 /* C */) return body.toString('latin1', i + 1, end);
    i = end + 1;
  }
  return undefined;
}
const E = 0x45;
const S_PARAM = 0x53;

/** Whether `reply` completes the entry for frontend message `type`. */
export function completes(type: number, reply: number): boolean {
  switch (type) {
    case 0x50 /* Parse */:
      return reply === 0x31;
    case 0x42 /* Bind */:
      return reply === 0x32;
    case 0x43 /* Close */:
      return reply === 0x33;
    case 0x44 /* Describe */:
      return reply === 0x54 /* RowDescription */ || reply === 0x6e /* NoData */;
    case 0x45 /* Execute */:
      return reply === 0x43 /* CommandComplete */ || reply === 0x49 /* EmptyQuery */ || reply === 0x73 /* PortalSuspended */;
    default:
      // Sync, Query, FunctionCall: ReadyForQuery.
      return reply === Z;
  }
}

/** Frontend messages whose error makes the server skip to the next Sync. */
function isExtended(type: number): boolean {
  return type !== 0x53 && type !== 0x51 && type !== 0x46;
}

export interface RelayEvents {
  /** A ReadyForQuery the client will see (or that ended an injected query). */
  onReady(status: number, forwarded: boolean): void;
  /** A ReadyForQuery pgmux made up (a run it answered or refused alone) was written to the client. */
  onMadeUpReady?(status: number): void;
  /** ParameterStatus from the server; return true to pass it on to the client. */
  onParameterStatus(body: Buffer, forwarded: boolean): boolean;
  /** The first ErrorResponse body of a client's statement, for bookkeeping. */
  onError(body: Buffer, forwarded: boolean): void;
  /** The server sent something no entry expects: the stream cannot be trusted. */
  onOutOfStep(type: number): void;
  /** CopyInResponse / CopyOutResponse / CopyBothResponse / CopyDone seen. */
  onCopy(type: number): void;
}

export class ReplyQueue {
  private readonly entries: Entry[] = [];
  private head = 0;
  /** Transaction status of the last ReadyForQuery, for synthesized ones. */
  status = 0x49;
  /**
   * An extended-protocol message failed and the client's Sync that ends
   * its run is still to come: the server skips what is sent until then.
   */
  private inFailedRun = false;

  private readonly write: (b: Buffer) => void;
  private readonly events: RelayEvents;

  constructor(write: (b: Buffer) => void, events: RelayEvents) {
    this.write = write;
    this.events = events;
  }

  get length(): number {
    return this.entries.length - this.head;
  }

  /** Entries still waiting for a server reply (synthesized ones excluded). */
  get pendingFromServer(): number {
    let n = 0;
    for (let i = this.head; i < this.entries.length; i++) if (this.entries[i].kind !== enum_.synth) n++;
    return n;
  }

  /** Entries whose replies the client is to get (neither made up nor pgmux's own, swallowed). */
  get pendingForClient(): number {
    let n = 0;
    for (let i = this.head; i < this.entries.length; i++) if (this.entries[i].kind === enum_.forward) n++;
    return n;
  }

  /** Whether the entry at the head is pgmux's own query, whose replies the client never sees. */
  get headSwallowed(): boolean {
    return this.peek()?.kind === enum_.swallow;
  }

  /** Forgets every entry (their connection is gone). */
  clear(): void {
    this.entries.length = 0;
    this.head = 0;
  }

  push(e: Entry): void {
    if (this.inFailedRun) {
      if (e.type === 0x53) this.inFailedRun = false;
      else if (e.kind === enum_.synth) {
        // A made-up reply to a message the server skips: none.
        (e.onSkip ?? e.onError)?.();
        return;
      } else e.skipped = true;
    }
    this.entries.push(e);
    if (this.length === 1) this.emitSynth();
  }

  private peek(): Entry | undefined {
    return this.entries[this.head];
  }

  private pop(): void {
    this.head++;
    if (this.head > 64 && this.head * 2 > this.entries.length) {
      this.entries.splice(0, this.head);
      this.head = 0;
    }
  }

  /** Writes a made-up message now, in the place of the one being decided. */
  insert(bytes: Buffer): void {
    this.write(bytes);
  }

  /** Writes made-up replies that have reached the head. */
  private emitSynth(): void {
    for (let e = this.peek(); e !== undefined && e.kind === enum_.synth; e = this.peek()) {
      this.pop();
      e.onDone?.();
      this.write(e.bytes ?? readyForQuery(String.fromCharCode(this.status) as 'I'));
      if (e.bytes == null) this.events.onMadeUpReady?.(this.status);
    }
  }

  /** After an error in the extended protocol the server skips to Sync; so do the entries. */
  private skipToSync(): void {
    // Everything up to the Sync: a Query or FunctionCall too.
    for (let e = this.peek(); e !== undefined && e.type !== 0x53; e = this.peek()) {
      // A skipped Parse creates nothing, like a failed one.
      (e.onSkip ?? e.onError)?.();
      this.pop();
    }
  }

  /**
   * The server entered COPY FROM STDIN for the entry at the head. It
   * ignores Sync while in copy-in mode, so the Syncs already sent after
   * that Execute get no ReadyForQuery: their entries go.
   */
  dropSyncsAfterHead(): void {
    for (let i = this.entries.length - 1; i > this.head; i--) {
      if (this.entries[i].type === 0x53 && this.entries[i].kind !== enum_.synth) this.entries.splice(i, 1);
    }
  }

  /** The frontend message type of the entry at the head, or -1. */
  get headType(): number {
    return this.peek()?.type ?? -1;
  }

  /**
   * Decides one complete server message: true to pass it to the client.
   * Made-up replies due before it are written first.
   */
  decide(type: number, body: Buffer | null): boolean {
    this.emitSynth();
    // Messages the server skipped get nothing; whatever comes is for later ones.
    for (let s = this.peek(); s !== undefined && s.skipped === true; s = this.peek()) {
      (s.onSkip ?? s.onError)?.();
      this.pop();
      this.emitSynth();
    }
    const e = this.peek();
    if (e === undefined) {
      // Between requests only asynchronous messages may arrive.
      if (type === 0x4e /* Notice */ || type === 0x41 /* Notification */) return true;
      if (type === S_PARAM) return this.events.onParameterStatus(body!, true);
      if (type === E) {
        // A FATAL the server sends on its own (pg_terminate_backend,
        // idle_in_transaction_session_timeout) before it closes: the
        // client reads it, as it would connected directly.
        this.events.onError(body!, true);
        return true;
      }
      this.events.onOutOfStep(type);
      return false;
    }
    const forward = e.kind === enum_.forward;
    switch (type) {
      case S_PARAM:
        return this.events.onParameterStatus(body!, forward);
      case E: {
        e.onError?.();
        // In a failed transaction block the server refuses any message with
        // 25P02 before looking at it: so would it the client's own.
        const aborted = e.replaceError !== undefined && errorCode(body!) === '25P02';
        const replace = (aborted ? undefined : e.replaceError) ?? (e.names !== undefined ? (renameInError(E, body!, `"${e.names.server}"`, `"${e.names.client}"`) ?? undefined) : undefined);
        this.events.onError(body!, forward || replace !== undefined);
        if (isExtended(e.type)) {
          this.pop();
          this.skipToSync();
          this.inFailedRun = this.peek() === undefined;
        }
        if (replace !== undefined) {
          // Written in the server's error's place; the server's is dropped.
          this.write(replace);
          this.emitSynthAfter();
          return false;
        }
        // An injected query's error still reaches the client: it explains
        // why the client's own statement will not run as expected.
        this.emitSynthAfter();
        return true;
      }
      case 0x47 /* CopyIn */:
      case 0x48 /* CopyOut */:
      case 0x57 /* CopyBoth */:
        this.events.onCopy(type);
        return forward;
      default:
        break;
    }
    let done = e;
    if (type === Z && isExtended(e.type)) {
      // The ReadyForQuery of a Sync: whatever the failed run sent after
      // its error was skipped by the server.
      this.skipToSync();
      const sync = this.peek();
      if (sync === undefined) {
        this.events.onOutOfStep(type);
        return false;
      }
      done = sync;
    }
    if (completes(done.type, type)) {
      done.onDone?.();
      this.pop();
      if (type === Z) {
        this.status = body![0];
        this.events.onReady(this.status, done.kind === enum_.forward);
        this.emitSynthAfter();
        return done.kind === enum_.forward;
      }
      this.emitSynthAfter();
    }
    return forward;
  }

  /** Synthesized replies right after this message must follow it, not precede it. */
  private synthDue = false;
  private emitSynthAfter(): void {
    this.synthDue = this.peek()?.kind === enum_.synth;
  }

  /** Called by the relay once the decided message has been queued for the client. */
  afterMessage(): void {
    if (this.synthDue) {
      this.synthDue = false;
      this.emitSynth();
    }
  }

  /**
   * A reply that completes the fast lane's entry at the head (not a
   * ReadyForQuery), seen by the caller instead of decide(): the entries
   * are the fast lane's own and no error came, so nothing else is due.
   */
  plainDone(): void {
    const e = this.entries[this.head];
    e.onDone?.();
    this.pop();
  }

  /** The frontend message type of the entry `i` places after the head, or -1. */
  typeAt(i: number): number {
    return this.entries[this.head + i]?.type ?? -1;
  }

  /** The ReadyForQuery that completes the fast lane's entry at the head (a Query or Sync). */
  plainReady(status: number): void {
    this.pop();
    this.status = status;
    this.events.onReady(status, true);
  }

  /** Whether a message of `type` may be forwarded before it is complete. */
  streamable(type: number): boolean {
    const e = this.peek();
    return e !== undefined && e.kind === enum_.forward && type !== S_PARAM && type !== E;
  }
}

/**
 * Cuts a server's chunks into what the client gets: forwarded messages
 * stay views into the chunks (a 64 MB DataRow streams through), dropped
 * ones are cut out, made-up ones are inserted by the queue.
 */
export class Relay {
  private held: Buffer[] = [];
  private out: Buffer[] = [];
  private chunk: Buffer = Buffer.alloc(0);
  /** End of the last message decided in this chunk. */
  private cursor = 0;
  /** Start of the forwarded bytes not yet cut out: consecutive forwarded messages go as one slice. */
  private rangeStart = 0;
  private feeding = false;
  readonly queue: ReplyQueue;
  private readonly write: (b: Buffer) => void;

  /** `write` sends to the client; replies made up outside a feed go straight there. */
  constructor(write: (b: Buffer) => void, events: RelayEvents) {
    this.write = write;
    this.queue = new ReplyQueue((b) => this.insert(b), events);
  }

  /** Queue's writer: made-up replies land between the forwarded slices. */
  private insert(b: Buffer): void {
    if (!this.feeding) {
      this.write(b);
      return;
    }
    this.flushRange(this.cursor);
    this.out.push(b);
  }

  private flushRange(to: number): void {
    if (to > this.rangeStart) this.out.push(this.chunk.subarray(this.rangeStart, to));
    this.rangeStart = Math.max(this.rangeStart, to);
  }

  /** Feeds one server chunk through `reader`; returns what to write to the client. */
  feed(reader: FrameReader, chunk: Buffer, borrowed = false): Buffer[] {
    this.chunk = chunk;
    this.cursor = 0;
    this.rangeStart = 0;
    this.feeding = true;
    try {
      reader.feed(chunk, this);
    } finally {
      this.feeding = false;
    }
    const n = chunk.length;
    if (this.cursor < n) {
      const partial = reader.partialSize;
      const type = reader.partialType;
      if (partial > 0 && (type === -1 || !this.queue.streamable(type))) {
        // Its fate is decided when it is whole: hold its bytes back.
        const from = Math.max(this.cursor, n - partial);
        this.flushRange(from);
        // Kept past this read: a copy when the read buffer is reused.
        this.held.push(borrowed ? Buffer.from(chunk.subarray(from)) : chunk.subarray(from));
      } else {
        // A message that will be forwarded whatever comes: stream what is here.
        this.flushHeld();
        this.flushRange(n);
      }
    } else {
      this.flushRange(n);
    }
    const out = this.out;
    this.out = [];
    return out;
  }

  /** Sees each server message before it is decided (a read that may be retried elsewhere). */
  observer: ((type: number, body: Buffer | null, own: boolean) => void) | null = null;

  onMessage(type: number, body: Buffer | null, end: number, size: number): void {
    this.observer?.(type, body, this.queue.headSwallowed);
    const start = end - size;
    const keep = this.queue.decide(type, body);
    if (keep) {
      // Held bytes are this message's beginning, from an earlier chunk:
      // nothing of this chunk is pending before them.
      this.flushHeld();
    } else {
      this.held = [];
      this.flushRange(Math.max(start, this.rangeStart));
      this.rangeStart = end;
    }
    this.cursor = end;
    this.queue.afterMessage();
  }

  private flushHeld(): void {
    if (this.held.length === 0) return;
    for (const h of this.held) this.out.push(h);
    this.held = [];
  }

  /** Drops anything held (the connection is going away or changing hands). */
  reset(): void {
    if (this.held.length > 0) this.held = [];
    if (this.out.length > 0) this.out = [];
  }
}
