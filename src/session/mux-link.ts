import { MessageReader, type FrameReader } from '../protocol/framing.ts';
import { PgError, SqlState } from '../protocol/errors.ts';
import { parameterStatus, parseErrorFields, parseParameterStatus, query } from '../protocol/messages.ts';
import type { ServerConnection, ServerOwner } from '../pool/server-connection.ts';
import { Relay, completes, enum_ } from './replies.ts';
import type { MuxHost } from './mux-types.ts';
import { ClientParams, REPORTED_SETTABLE, syncParametersQuery } from './params.ts';
import { newBatch, inspect, plainInfo, plainStatement, transactionControl, unnamedRun, type Batch, type BatchInfo, type UnnamedRun } from './batch.ts';
import { FAILING_PARSE, FAILING_QUERY, Translator, forgetUnnamed, recoverable } from './translate.ts';
import { TxnState } from './txn-state.ts';
import { ReadRetry } from './read-retry.ts';
import { refusalFor, sessionStateOf } from './refusals.ts';
import type { ClientStatement } from './statements.ts';

export type { MuxHost, Router } from './mux-types.ts';

const FRONTEND_TYPES = 'BCcdDEfFHPQSX';
const COPY_FAIL = Buffer.from([0x66, 0, 0, 0, 28, ...Buffer.from('client left during COPY\0')]);
const SYNC = Buffer.from([0x53, 0, 0, 0, 4]);
/** A batch is sent once it holds this much, even without a Sync. */
const MAX_BATCH_BYTES = 1 << 20;
const I = 0x49;
/** A pump step that found nothing can go now. */
const STOP = Symbol('stop');

/**
 * The message-level forwarding loop of transaction and statement pooling
 * (and of session pooling over several nodes). The client holds a server
 * connection only from the first message of a transaction to the
 * ReadyForQuery that ends it with nothing else pending; on each lend the
 * connection first gets the client's parameters, and statement names are
 * mapped so prepared statements follow the client from connection to
 * connection.
 */
export class MuxLink implements ServerOwner {
  readonly params: ClientParams;
  readonly statements = new Map<string, ClientStatement>();
  /** The client's portals and the texts bound to them (for what an Execute runs). */
  readonly portals = new Map<string, string>();
  get unnamedSql(): string | null {
    return this.tr.unnamedSql;
  }
  server: ServerConnection | null = null;
  /** Node of `server`; connections parked per node in session mode. */
  node = -1;
  private readonly parked = new Map<number, ServerConnection>();
  pinned: string | null = null;
  /** A write committed at this time (read-your-writes). */
  lastWriteAt = 0;

  private readonly host: MuxHost;
  private readonly reader: MessageReader;
  private readonly relay: Relay;
  private readonly tr: Translator;
  private readonly retry: ReadRetry;
  private current: Batch = newBatch();
  private readonly waiting: Batch[] = [];
  private pumping = false;
  /** The server connection was just taken from the pool: nothing was sent on it yet. */
  private fresh = false;
  private repump = false;
  /** Extended-protocol messages reached the server since its last Sync. */
  private unsynced = false;
  private copyIn = false;
  /** CopyDone or CopyFail sent before the CopyInResponse they end arrived. */
  private copyEndsAhead = 0;
  /** The COPY FROM STDIN came from Execute: the server wants a Sync after it. */
  private copyExtended = false;
  /**
   * A message pgmux refused: the client's messages up to its next Sync are
   * dropped, as the server drops them after an error. That Sync goes to the
   * server when the failed run reached it ('server'), else pgmux answers it.
   */
  private skipping: 'server' | 'alone' | null = null;
  private closing = false;
  private drainTimer: NodeJS.Timeout | null = null;

  // Transaction bookkeeping, settled at the ReadyForQuery that ends it.
  private readonly txn = new TxnState();

  constructor(host: MuxHost, startup: ReadonlyMap<string, string>, extraTracked: ReadonlySet<string>) {
    this.host = host;
    this.params = new ClientParams(startup, extraTracked);
    this.reader = new MessageReader(host.maxPacketSize, FRONTEND_TYPES);
    this.relay = new Relay((b) => this.toClient([b]), {
      onReady: (status, forwarded) => this.onReady(status, forwarded),
      // Counted as the server's are: the client's statement ended there (SHOW STATS, the client timeouts).
      onMadeUpReady: (status) => {
        this.host.stats.queries++;
        if (status === I) this.host.stats.transactions++;
      },
      onParameterStatus: (body, forwarded) => this.onParameterStatus(body, forwarded),
      onError: (body, forwarded) => this.onServerError(body, forwarded),
      onOutOfStep: (type) => this.onOutOfStep(type),
      onCopy: (type) => this.onCopy(type),
    });
    this.tr = new Translator(this.relay.queue, host, this.statements);
    this.retry = new ReadRetry(this.relay, host.log, () => this.pump());
  }

  get database(): string {
    return this.host.database;
  }

  get status(): number {
    return this.relay.queue.status;
  }

  /** Nothing is owed by or to the server: the connection may change hands. */
  private get quiet(): boolean {
    return this.relay.queue.pendingFromServer === 0 && !this.unsynced && !this.copyIn && this.heldBy === null;
  }

  /** The backend a CancelRequest should reach now, if any. */
  busyServer(): ServerConnection | null {
    return this.server !== null && !this.quiet ? this.server : null;
  }

  // -------------------------------------------------------------- client side

  onClientData(chunk: Buffer): void {
    if (this.plainRequest(chunk)) return;
    this.reader.feed(chunk, this.onClientMessage);
    // Where the node is already known, what came in goes on now, as it
    // would reach PostgreSQL (which, say, reports an error at once, before
    // any Sync). A run that is still to be routed waits for its Sync so
    // that it is routed whole.
    if (this.current.msgs.length > 0 && !this.closing && (this.host.router.spreadsReads !== true || (this.waiting.length === 0 && this.tied))) this.endBatch();
  }

  /**
   * The fast lane of transaction and statement pooling on one node: a read
   * that is exactly one simple Query, or one extended-protocol run of the
   * unnamed statement and portal (unnamedRun: Parse, Bind, Describe,
   * Execute, Sync, as libpq's PQexecParams and pgbench -M extended send
   * it), of a plain statement (plainStatement: nothing in it changes the
   * session, controls a transaction, starts a COPY or needs a name
   * mapped) or, for a Query, of transaction control only
   * (transactionControl), while nothing else of the client's is in
   * flight, goes to the server as the client's own chunk, without a
   * batch, the pump or the translator. It does what the message-level
   * loop would do for it and nothing more (the connection lent and given
   * the client's parameters, the unnamed statement and portal followed,
   * the statement counted per node, the same reply-queue entries, the
   * first request on a fresh connection watched); its replies come back
   * through plainReplies. Anything else goes the long way.
   */
  private plainRequest(chunk: Buffer): boolean {
    const h = this.host;
    if (h.mode === 'session' || h.router.spreadsReads === true) return false;
    if (this.closing || this.pumping || this.waiting.length > 0 || this.current.msgs.length > 0 || !this.reader.atBoundary) return false;
    if (this.retry.pending || this.skipping !== null || this.unsynced || this.copyIn || this.pinned !== null || this.heldBy !== null || this.relay.queue.length > 0) return false;
    const n = chunk.length;
    let info: BatchInfo | null;
    let run: UnnamedRun | null = null;
    if (chunk[0] === 0x51 /* Query */) {
      if (n < 6 || n - 1 > h.maxPacketSize || chunk.readInt32BE(1) !== n - 1 || chunk.indexOf(0, 5) !== n - 1) return false;
      const sql = chunk.toString('utf8', 5, n - 1);
      info = plainStatement(sql) ? plainInfo(sql) : transactionControl(sql);
    } else {
      run = unnamedRun(chunk, h.maxPacketSize);
      info = run !== null && plainStatement(run.sql) ? plainInfo(run.sql) : null;
    }
    if (info === null || this.refusal(info) !== null) return false;
    let conn = this.server;
    if (conn === null) {
      if (this.status !== I) return false;
      // One node: the router's choice is the primary (asked below, to count the statement).
      conn = h.tryAcquire(h.router.primaryNode?.() ?? 0);
      if (conn === null) return false;
      this.took(conn, conn.node);
    }
    if (!this.tied) h.router.route(info, this);
    if (this.fresh && this.status === I) this.freshRequest = chunk;
    this.fresh = false;
    this.txn.note(info, this.params);
    const q = this.relay.queue;
    if (run === null) {
      this.tr.queryOutsideRun(conn);
      q.push({ kind: enum_.forward, type: 0x51 });
      this.plainEntries++;
    } else {
      // As inspect() and translate() would have it: the portal holds the text, the statement is the client's own on this connection.
      this.portals.set('', run.sql);
      q.push({ kind: enum_.forward, type: 0x50, onError: this.tr.parseUnnamedOutsideRun(conn, run.rest, run.sql) });
      q.push({ kind: enum_.forward, type: 0x42 });
      if (run.describe) q.push({ kind: enum_.forward, type: 0x44 });
      q.push({ kind: enum_.forward, type: 0x45 });
      q.push({ kind: enum_.forward, type: 0x53 });
      this.tr.syncSent();
      this.plainEntries += run.describe ? 5 : 4;
    }
    if (!conn.socket.write(chunk)) {
      h.pauseClient();
      conn.socket.once('drain', () => h.resumeClient());
    }
    return true;
  }

  /** Reply-queue entries of the fast lane not yet answered (while any are, they are all the queue holds). */
  private plainEntries = 0;
  /** The fast lane's request sent first on a connection just lent, until the server's first reply. */
  private freshRequest: Buffer | null = null;
  private readonly one: Buffer[] = [];
  private readonly pumpTask = () => this.pump();

  /**
   * The server's replies to fast-lane requests, forwarded as its own chunk
   * when the chunk holds whole messages that the reply queue would only
   * pass on or count off. Anything it acts on otherwise (an ErrorResponse,
   * a ParameterStatus, COPY, a message out of step or after the last
   * answer), a message cut by the chunk's end, or entries not all the fast
   * lane's, sends the chunk through the relay instead, the entries still
   * in the queue. False then, having done nothing.
   */
  private plainReplies(chunk: Buffer, reader: FrameReader, borrowed: boolean): boolean {
    const q = this.relay.queue;
    if (this.server === null || this.closing || !reader.atBoundary || q.length !== this.plainEntries) return false;
    const n = chunk.length;
    let pos = 0;
    let answered = 0;
    while (pos < n) {
      if (n - pos < 5 || answered === this.plainEntries) return false;
      const type = chunk[pos];
      const len = chunk.readInt32BE(pos + 1);
      if (len < 4 || len > n - pos - 1) return false;
      if (type === 0x45 /* ErrorResponse */ || type === 0x53 /* ParameterStatus */ || type === 0x47 || type === 0x48 || type === 0x57 /* COPY */) return false;
      const entry = q.typeAt(answered);
      if (type === 0x5a /* ReadyForQuery */ && (len !== 5 || (entry !== 0x51 && entry !== 0x53))) return false;
      if (completes(entry, type)) answered++;
      pos += len + 1;
    }
    if (this.freshRequest !== null) {
      this.freshRequest = null;
      // What the client sent after it may go now.
      if (this.waiting.length > 0) queueMicrotask(this.pumpTask);
    }
    for (pos = 0; pos < n; ) {
      const type = chunk[pos];
      if (completes(q.headType, type)) {
        this.plainEntries--;
        if (type === 0x5a) q.plainReady(chunk[pos + 5]);
        else q.plainDone();
      }
      pos += chunk.readInt32BE(pos + 1) + 1;
    }
    if (this.closing) return true;
    this.one[0] = chunk;
    this.host.writeClient(this.one);
    this.one.length = 0;
    if (borrowed && this.server !== null && this.host.whenClientWritten(this.borrowedWritten)) {
      this.heldBy = this.server;
      this.server.socket.pause();
    }
    return true;
  }

  /** The client's open transaction or extended-protocol run holds its server connection. */
  private get tied(): boolean {
    return this.server !== null && (this.unsynced || this.status !== I || this.pinned !== null || this.copyIn);
  }

  private endBatch(): void {
    this.waiting.push(this.current);
    this.current = newBatch();
    if (this.waiting.length > 16) this.host.pauseClient();
    this.pump();
  }

  private readonly onClientMessage = (type: number, msg: Buffer): void => {
    if (type === 0x58 /* Terminate */) {
      this.host.terminated();
      return;
    }
    if (this.copyIn && this.server !== null && this.waiting.length === 0 && this.current.msgs.length === 0 && (type === 0x64 || type === 0x63 || type === 0x66 || type === 0x53 || type === 0x48)) {
      // COPY FROM STDIN data goes straight on, in order. The server ignores
      // Sync and Flush during COPY: they get no entry.
      if (type === 0x63 || type === 0x66) this.copyIn = false;
      this.server.socket.write(msg);
      return;
    }
    const b = this.current;
    b.msgs.push({ type, msg });
    b.bytes += msg.length;
    if (type === 0x53 || type === 0x51 || type === 0x46 || type === 0x48 || type === 0x64 || type === 0x63 || type === 0x66 || b.bytes >= MAX_BATCH_BYTES) this.endBatch();
  };

  /**
   * Drops what the server would skip after a refused message: the client's
   * messages up to its Sync. Returns false when the first waiting batch
   * was used up.
   */
  private skipToSync(): boolean {
    const b = this.waiting[0];
    const at = b.msgs.findIndex((m) => m.type === 0x53);
    if (at < 0) {
      this.waiting.shift();
      return false;
    }
    b.msgs.splice(0, at);
    b.info = null;
    const alone = this.skipping === 'alone';
    this.skipping = null;
    if (alone) {
      b.msgs.shift();
      this.relay.queue.push({ kind: enum_.synth, type: 0x53, bytes: null });
      if (b.msgs.length === 0) {
        this.waiting.shift();
        return false;
      }
    }
    return true;
  }

  /**
   * Sends what waits, in order. Synchronous while every step is (the node is
   * known, a connection is at hand): the steady path makes no promise. A
   * step that must wait (a router that looks something up, a pool with no
   * idle connection) finishes when it can, and the pump starts over.
   */
  private pump(): void {
    if (this.pumping) {
      this.repump = true;
      return;
    }
    this.pumping = true;
    let wait: Promise<unknown> | null;
    try {
      wait = this.pumpNow();
    } catch (err) {
      this.pumping = false;
      this.host.fatal(err);
      return;
    }
    if (wait === null) {
      this.pumped();
      return;
    }
    wait.then(
      (step) => {
        this.pumping = false;
        if (this.closing) return;
        // The step that waited ends the pump when it says so, else more may go.
        if (step === STOP && !this.repump) return;
        this.repump = false;
        this.pump();
      },
      (err) => {
        this.pumping = false;
        this.host.fatal(err);
      },
    );
  }

  private pumped(): void {
    this.pumping = false;
    if (this.repump && !this.closing) {
      this.repump = false;
      this.pump();
    }
  }

  /** The pump's loop: null when it ran to its end (or must stop), else what it waits for. */
  private pumpNow(): Promise<unknown> | null {
    while (this.waiting.length > 0 && !this.closing) {
      // Nothing more goes out until a held read, or a fast-lane request on
      // a fresh connection, has shown how it went.
      if (this.retry.pending || this.freshRequest !== null) return null;
      if (this.skipping !== null && !this.skipToSync()) continue;
      const b = this.waiting[0];
      b.info ??= inspect(b, this, this.host.router.spreadsReads);
      const refusal = this.refusal(b.info);
      if (refusal !== null) {
        this.waiting.shift();
        this.refuse(b, refusal);
        continue;
      }
      // A Flush with nothing to flush, or Parses of known statements and
      // their Sync, need no server connection.
      if (this.server === null && this.status === I && !this.unsynced && (b.msgs.every((m) => m.type === 0x48) || this.tr.answerAlone(b))) {
        this.waiting.shift();
        continue;
      }
      const target = this.chooseNode(b);
      if (typeof target !== 'number') return target.then((node) => this.step(b, node));
      const step = this.step(b, target);
      if (step === STOP) return null;
      if (step !== null) return step;
    }
    if (this.waiting.length <= 4) this.host.resumeClient();
    return null;
  }

  /**
   * Sends the first waiting batch `b` to `node`, lending a connection first
   * if the client holds none. STOP: nothing can go now; a promise: the
   * connection is not at hand yet.
   */
  private step(b: Batch, node: number): typeof STOP | Promise<unknown> | null {
    if (this.closing) return STOP;
    if (this.server !== null && this.node !== node) {
      // Replies come back in order only if one node answers at a time.
      if (!this.quiet) return STOP;
      this.stepAway();
    }
    if (this.server === null) {
      const lent = this.lend(node);
      if (lent !== null) return lent.then(() => (this.server === null || this.closing ? STOP : this.sendFirst(b, this.node)));
    }
    this.sendFirst(b, this.node);
    return null;
  }

  private sendFirst(b: Batch, node: number): null {
    this.waiting.shift();
    const primary = this.host.router.primaryNode?.() ?? 0;
    // Only a whole request (one that ends in a ReadyForQuery) can be held
    // until it shows how it went.
    const last = b.msgs[b.msgs.length - 1].type;
    const whole = last === 0x53 || last === 0x51;
    const retryable = this.host.router.spreadsReads === true && whole && node !== primary && b.info!.hasSql && this.status === I && !this.unsynced && this.relay.queue.pendingForClient === 0;
    // The first batch on a connection just taken, if the server answers
    // it at once (not a Parse still waiting for its Sync) and owes it
    // something (not only replies pgmux makes up).
    const fresh = !retryable && this.fresh && this.status === I && !this.unsynced && (whole || last === 0x46 || last === 0x48);
    this.fresh = false;
    if (retryable) this.retry.watch(b, 'replica');
    const registered = this.send(b, b.info!);
    if (fresh && this.relay.queue.pendingFromServer > 0) {
      this.retry.watch(b, 'fresh');
      this.retry.noteRegistered(b, registered);
    }
    return null;
  }

  /** Where a batch goes: where the transaction is, else the router's choice. */
  private chooseNode(b: Batch): number | Promise<number> {
    if (b.forceNode !== undefined) return b.forceNode;
    if (this.server !== null && (this.tied || !b.info!.hasSql)) return this.node;
    if (this.pinned !== null) return this.node >= 0 ? this.node : this.host.router.route(b.info!, this);
    return this.host.router.route(b.info!, this);
  }

  private refusal(info: BatchInfo): PgError | null {
    const h = this.host;
    return refusalFor(info, this.sessionStateOf(info), { mode: h.mode, onSessionState: h.onSessionState, pinned: this.pinned !== null });
  }

  private sessionStateOf(info: BatchInfo): string | null {
    return sessionStateOf(info, this.params);
  }

  /**
   * Answers a refused batch with its error, as PostgreSQL would answer a
   * failed statement. Inside a transaction or an extended-protocol run the
   * server fails in the client's place, so its transaction fails (and it
   * skips to Sync) as it would have; outside one nothing is open and pgmux
   * answers alone.
   */
  private refuse(b: Batch, err: PgError): void {
    const q = this.relay.queue;
    const last = b.msgs[b.msgs.length - 1].type;
    const simple = last === 0x51 || last === 0x46;
    const conn = this.tied ? this.server! : null;
    if (conn === null) {
      q.push({ kind: enum_.synth, type: 0x45, bytes: recoverable(err) });
      if (simple || last === 0x53) q.push({ kind: enum_.synth, type: 0x53, bytes: null });
      else this.skipping = 'alone';
      return;
    }
    if (simple) {
      conn.socket.write(FAILING_QUERY);
      q.push({ kind: enum_.forward, type: 0x51, replaceError: recoverable(err) });
      return;
    }
    q.push({ kind: enum_.forward, type: 0x50, replaceError: recoverable(err) });
    if (last === 0x53) {
      conn.socket.write(Buffer.concat([FAILING_PARSE, SYNC]));
      q.push({ kind: enum_.forward, type: 0x53 });
      this.unsynced = false;
    } else {
      conn.socket.write(FAILING_PARSE);
      this.unsynced = true;
      this.skipping = 'server';
    }
  }

  /**
   * Ends the client's extended-protocol run without committing it: a
   * client that leaves before its Sync must not have its implicit
   * transaction committed, so the server fails the run first (its replies
   * are hidden), then the Sync rolls it back.
   */
  private abortExtendedRun(conn: ServerConnection): void {
    conn.socket.write(Buffer.concat([FAILING_PARSE, SYNC]));
    this.relay.queue.push({ kind: enum_.swallow, type: 0x50 });
    this.relay.queue.push({ kind: enum_.swallow, type: 0x53 });
    this.unsynced = false;
  }

  private onCopy(type: number): void {
    if (type !== 0x47 /* CopyInResponse */) return;
    if (this.copyEndsAhead > 0) this.copyEndsAhead--;
    else this.copyIn = true;
    this.copyExtended = this.relay.queue.headType === 0x45; /* Execute */
    if (this.copyExtended) {
      // The server ignores the Syncs that reached it during COPY: after it
      // the run is still open (its implicit transaction too) until the
      // client's next Sync or Query.
      this.relay.queue.dropSyncsAfterHead();
      this.unsynced = true;
    }
  }

  /** Gives the client a connection to `node`: at once (null) when one is at hand, else a promise. */
  private lend(node: number): Promise<void> | null {
    let conn: ServerConnection | null | undefined = this.parked.get(node);
    if (conn !== undefined) this.parked.delete(node);
    else {
      conn = this.host.tryAcquire(node);
      // The pool may serve a read from another node (the primary, when a
      // replica cannot be reached): the connection says which.
      if (conn === null) return this.host.acquire(node).then((c) => this.took(c, c.node));
    }
    this.took(conn, conn.node);
    return null;
  }

  private took(conn: ServerConnection, node: number): void {
    if (this.closing) {
      this.host.release(conn, false);
      return;
    }
    this.server = conn;
    this.node = node;
    this.fresh = true;
    conn.setOwner(this);
    // What happened on the connection since this client last had it (the
    // query below, a pool's check) may have dropped its unnamed statement.
    forgetUnnamed(conn);
    const q = syncParametersQuery(this.params.want, conn);
    if (q !== null) {
      conn.socket.write(query(q));
      this.relay.queue.push({ kind: enum_.swallow, type: 0x51 });
    }
  }

  /** Lets go of the current connection before another node serves the client. */
  private stepAway(): void {
    const conn = this.server!;
    this.server = null;
    this.relay.reset();
    if (this.host.mode === 'session') {
      this.park(conn);
    } else {
      conn.setOwner(null);
      this.host.release(conn, false);
    }
  }

  /**
   * Keeps a session-mode client's connection to a node it left, for its
   * return. Nothing is owed on it; anything but a notice or a parameter
   * report arriving there (the FATAL before a termination) or its close
   * means it is gone: it is dropped, and a later visit takes a new one.
   */
  private park(conn: ServerConnection): void {
    const node = this.node;
    const drop = () => {
      if (this.parked.get(node) !== conn) return;
      this.parked.delete(node);
      this.host.discard(conn);
    };
    const watch = { onMessage: (type: number) => (type !== 0x4e && type !== 0x53 && type !== 0x41 ? (drop(), false) : true) };
    conn.setOwner({
      onMessage: () => true,
      onServerChunk: () => {},
      onRawChunk: (chunk, reader) => void reader.feed(chunk, watch),
      onServerClose: drop,
    });
    this.parked.set(node, conn);
  }

  /** Returns the client statement names the batch defined. */
  private send(b: Batch, info: BatchInfo): string[] {
    const conn = this.server!;
    const state = this.sessionStateOf(info);
    if (state !== null && this.pinned === null) {
      // In session mode over several nodes a pin keeps the session on the
      // node that holds its state.
      this.pinned = state;
      this.host.log.info({ reason: state, server: conn.id }, 'server connection pinned to client');
    }
    this.txn.note(info, this.params);
    const trace = this.host.router.trace?.(this.node, info, b) ?? null;
    if (trace !== null) {
      const n = this.host.notice(trace);
      if (n !== null) this.relay.queue.push({ kind: enum_.synth, type: 0x4e, bytes: n });
    }
    // COPY data that went through the batches ends here, possibly before
    // the server's CopyInResponse has come back.
    for (const m of b.msgs) {
      if (m.type !== 0x63 && m.type !== 0x66) continue;
      if (this.copyIn) this.copyIn = false;
      else this.copyEndsAhead++;
    }
    // With no extended-protocol run open nothing sent before can be
    // skipped: what the translator kept for undoing it goes (a client of
    // the simple protocol alone never sends the Sync that would let it go).
    if (!this.unsynced) this.tr.syncSent();
    const out = this.tr.translate(b, conn);
    this.retry.noteRegistered(b, out.registered);
    if (out.unsynced !== null) this.unsynced = out.unsynced;
    if (out.refusedUntilSync) this.skipping = 'server';
    if (out.chunks.length > 0) {
      const ok = conn.socket.write(out.chunks.length === 1 ? out.chunks[0] : Buffer.concat(out.chunks));
      if (!ok) {
        this.host.pauseClient();
        conn.socket.once('drain', () => this.host.resumeClient());
      }
    }
    return out.registered;
  }

  // -------------------------------------------------------------- server side

  // The stream comes whole to onRawChunk; these two are never called.
  onMessage(): boolean {
    return true;
  }
  onServerChunk(): void {}

  onRawChunk(chunk: Buffer, reader: FrameReader, borrowed: boolean): void {
    if (this.plainEntries > 0) {
      if (this.plainReplies(chunk, reader, borrowed)) return;
      // The relay takes over the fast lane's entries, and the read retry its fresh request.
      this.plainEntries = 0;
      this.watchFresh();
    }
    this.toClient(this.relay.feed(reader, chunk, borrowed), borrowed);
  }

  /** A fast-lane request on a fresh connection whose first reply the relay is to see: watched as sendFirst would. */
  private watchFresh(): void {
    const chunk = this.freshRequest;
    if (chunk === null) return;
    this.freshRequest = null;
    const b = newBatch();
    for (let pos = 0; pos < chunk.length; ) {
      const end = pos + 1 + chunk.readInt32BE(pos + 1);
      b.msgs.push({ type: chunk[pos], msg: chunk.subarray(pos, end) });
      pos = end;
    }
    b.bytes = chunk.length;
    this.retry.watch(b, 'fresh');
  }

  /** Everything for the client passes here, so a held read stays unseen. */
  private toClient(out: Buffer[], borrowed = false): void {
    const pass = this.retry.pass(out, borrowed);
    if (this.closing || pass.length === 0) return;
    this.host.writeClient(pass);
    if (borrowed && this.server !== null && this.host.whenClientWritten(this.borrowedWritten)) {
      // Slices of the server's read buffer wait in the client's socket: no
      // more reads into it, and the connection stays with this client (it
      // is not quiet), until they are out.
      this.heldBy = this.server;
      this.server.socket.pause();
    }
  }

  /** The server connection whose read buffer a pending client write still uses. */
  private heldBy: ServerConnection | null = null;
  private readonly borrowedWritten = () => {
    const conn = this.heldBy;
    this.heldBy = null;
    if (conn === null) return;
    if (!conn.closed) conn.socket.resume();
    this.afterReady();
  };

  /** Sends a batch again, as if for the first time: a read to the primary, a first batch to its node. */
  private sendAgain(w: { batch: Batch; registered: string[]; kind: 'replica' | 'fresh' }): void {
    this.txn.failed = false;
    for (const name of w.registered) this.statements.delete(name);
    w.batch.forceNode = w.kind === 'replica' ? (this.host.router.primaryNode?.() ?? 0) : this.node;
    this.waiting.unshift(w.batch);
  }

  private onParameterStatus(body: Buffer, forwarded: boolean): boolean {
    const [name, value] = parseParameterStatus(body);
    const conn = this.server;
    conn?.parameters.set(name, value);
    const lc = name.toLowerCase();
    const start = forwarded && this.txn.resetting(lc) ? this.params.startup.get(lc) : undefined;
    if (start !== undefined) {
      // RESET went back to the server's default; PostgreSQL goes back to
      // the client's startup value (set again when the transaction ends):
      // the client hears of that value, if it is news to it.
      if (this.params.reported.get(name) === start) return false;
      this.params.reported.set(name, start);
      this.relay.queue.insert(parameterStatus(name, start));
      return false;
    }
    if (REPORTED_SETTABLE.has(lc) && (forwarded || this.params.want.has(lc))) {
      // The server's spelling wins (TimeZone 'utc' is reported as 'UTC').
      this.params.want.set(lc, value);
      conn?.sessionSets.set(lc, value);
    }
    if (this.params.reported.get(name) === value) return false;
    this.params.reported.set(name, value);
    return true;
  }

  private onServerError(body: Buffer, forwarded: boolean): void {
    this.txn.failed = true;
    if (forwarded && !this.retry.dropping) {
      const f = parseErrorFields(body);
      const severity = f.get('V') ?? f.get('S');
      if (severity === 'FATAL' || severity === 'PANIC') this.host.serverFatalForwarded(f.get('M') ?? '');
      return;
    }
    if (!this.closing) {
      const f = parseErrorFields(body);
      this.host.log.warn({ code: f.get('C'), message: f.get('M') }, 'query pgmux sent for the client failed');
    }
  }

  private onReady(status: number, forwarded: boolean): void {
    const again = forwarded ? this.retry.take('ready') : null;
    if (again !== null) {
      this.sendAgain(again);
      queueMicrotask(this.afterReadyTask);
      return;
    }
    if (forwarded) {
      this.host.stats.queries++;
      if (status === I) {
        this.host.stats.transactions++;
        this.settleTransaction();
      }
    }
    queueMicrotask(this.afterReadyTask);
  }

  /** A transaction ended: what it set stays only if it committed. */
  private settleTransaction(): void {
    const { wrote, discarded, restore } = this.txn.settle(this.params, this.server);
    if (discarded) this.pinned = null;
    const conn = this.server;
    if (restore && conn !== null) {
      // Before anything else of the client's, unseen.
      const q = syncParametersQuery(this.params.want, conn);
      if (q !== null) {
        conn.socket.write(query(q));
        this.relay.queue.push({ kind: enum_.swallow, type: 0x51 });
      }
    }
    if (wrote) {
      this.lastWriteAt = Date.now();
      this.host.router.noteWrite?.(this);
    }
  }

  /** afterReady as a task, made once: a ReadyForQuery queues it without a new closure. */
  private readonly afterReadyTask = () => this.afterReady();

  private afterReady(): void {
    if (this.closing) {
      this.finishDrainIfQuiet();
      return;
    }
    const conn = this.server;
    if (conn !== null && this.host.mode !== 'session' && this.pinned === null && this.quiet && this.status === I && this.waiting.length === 0) {
      this.server = null;
      this.relay.reset();
      conn.setOwner(null);
      this.host.release(conn, false);
    }
    this.pump();
  }

  private onOutOfStep(type: number): void {
    const conn = this.server;
    this.host.log.error({ type: String.fromCharCode(type) }, 'server sent a message nobody asked for');
    if (conn !== null) {
      this.server = null;
      this.host.discard(conn);
    }
    this.host.fatal(new PgError(SqlState.PROTOCOL_VIOLATION, 'server connection out of step; closed'));
  }

  onServerClose(): void {
    // A fast-lane request's connection that closes before answering fails the client, as a watched fresh batch's does.
    this.plainEntries = 0;
    this.freshRequest = null;
    const conn = this.server;
    if (conn === null) return;
    this.server = null;
    this.host.discard(conn);
    if (this.closing) return;
    const again = this.retry.take('closed');
    if (again !== null) {
      // A replica went away before any of the read reached the client (the
      // primary answers it instead), or a connection just lent had been
      // terminated while idle: the client never knows.
      if (again.kind === 'replica') this.host.log.warn({ node: this.node }, 'replica closed the connection during a read: sending it to the primary');
      this.relay.queue.clear();
      this.relay.reset();
      this.unsynced = false;
      this.sendAgain(again);
      this.pump();
      return;
    }
    this.host.fatal(
      new PgError(SqlState.CONNECTION_FAILURE, 'server closed the connection unexpectedly', {
        hint: 'The server may have been restarted or the backend terminated.',
      }),
    );
  }

  // ------------------------------------------------------------------ the end

  /**
   * The client is gone: give back what it held. A connection with answers
   * still due is drained first (a running statement is cancelled after a
   * moment), an open transaction rolled back; anything unclear closes it.
   */
  close(cancel: (conn: ServerConnection) => void): void {
    if (this.closing) return;
    this.closing = true;
    this.waiting.length = 0;
    for (const conn of this.parked.values()) {
      conn.setOwner(null);
      this.host.release(conn, true);
    }
    this.parked.clear();
    const conn = this.server;
    if (conn === null) return;
    if (this.copyIn) {
      conn.socket.write(COPY_FAIL);
      this.copyIn = false;
      // After an Execute's COPY fails the server skips to a Sync.
      if (this.copyExtended) this.unsynced = true;
    }
    if (this.unsynced) this.abortExtendedRun(conn);
    if (this.finishDrainIfQuiet()) return;
    let cancelled = false;
    const tick = () => {
      if (this.server !== conn) return;
      if (!cancelled) {
        cancelled = true;
        cancel(conn);
        this.drainTimer = setTimeout(tick, this.host.queryTimeoutMs);
        return;
      }
      this.server = null;
      this.host.discard(conn);
    };
    this.drainTimer = setTimeout(tick, 500);
  }

  private finishDrainIfQuiet(): boolean {
    const conn = this.server;
    if (conn === null) return true;
    if (!this.quiet) return false;
    if (this.drainTimer !== null) clearTimeout(this.drainTimer);
    this.server = null;
    conn.setOwner(null);
    // A pinned connection carries the client's session state: reset it.
    const reset = this.pinned !== null || this.host.mode === 'session';
    if (this.status === I) {
      this.host.release(conn, reset);
      return true;
    }
    conn.runQuery('ROLLBACK', this.host.queryTimeoutMs).then(
      (r) => (r.error === null && r.status === I ? this.host.release(conn, reset) : this.host.discard(conn)),
      () => this.host.discard(conn),
    );
    return true;
  }
}
