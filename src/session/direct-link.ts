import type net from 'node:net';
import { FrameReader, type FrameVisitor } from '../protocol/framing.ts';
import { PgError, SqlState } from '../protocol/errors.ts';
import { parseParameterStatus, query } from '../protocol/messages.ts';
import type { ServerConnection, ServerOwner } from '../pool/server-connection.ts';
import type { Pool } from '../pool/pool.ts';
import { sendCancel } from './cancel-registry.ts';
import { afterPendingWrites } from './write-hold.ts';
import { FAILING_PARSE } from './translate.ts';

/**
 * What pgmux sends after a client that left with answers still due: a
 * failed message and a Sync end any extended-protocol run uncommitted (a
 * client that leaves before its Sync commits nothing), ROLLBACK ends any
 * transaction block, and the last query's error, which names a column that
 * cannot exist, says that everything sent before has been answered or
 * skipped, however the client's messages were counted (the server answers
 * nothing to a Query it skips after an error). The ReadyForQuery after it
 * leaves the connection idle and clean.
 */
const DRAIN_PROBE = Buffer.concat([FAILING_PARSE, Buffer.from([0x53, 0, 0, 0, 4]), query('ROLLBACK'), query('SELECT pgmux_drained')]);
const PROBE_MARK = Buffer.from('"pgmux_drained"');

/** Frontend message types valid after startup. */
const FRONTEND_TYPES = 'BCcdDEfFHPQSX';
const COPY_FAIL = Buffer.from([0x66, 0, 0, 0, 28, ...Buffer.from('client left during COPY\0')]);

export interface DirectHost {
  readonly socket: net.Socket;
  readonly maxPacketSize: number;
  readonly queryTimeoutMs: number;
  /** null in pool_mode = none: the connection is the client's own. */
  readonly pool: Pool | null;
  /** The client sent Terminate: end it. */
  terminated(): void;
  readonly stats: { queries: number; transactions: number };
  fatal(err: unknown): void;
}

/**
 * The forwarding loop of session pooling on one node: the client keeps one
 * server connection for its whole session.
 *
 * Both streams are framed with header peeks only and forwarded as the
 * original chunks. The loop counts what must be answered (each Query, Sync
 * and FunctionCall gets exactly one ReadyForQuery) so a server connection is
 * only given back once nothing sent on it is still unanswered.
 */
export class DirectLink implements ServerOwner {
  server: ServerConnection | null;
  private readonly host: DirectHost;
  private readonly clientReader: FrameReader;
  private readonly clientVisitor: FrameVisitor;
  /** Query, Sync and FunctionCall messages sent whose ReadyForQuery has not come yet. */
  private pendingReady = 0;
  /** Extended-protocol messages sent since the last Sync. */
  private unsynced = false;
  /** The server is in COPY FROM STDIN and waits for the client's data. */
  private copyIn = false;
  /**
   * Syncs sent since the last Execute, while no Query came after it. If
   * that Execute starts a COPY FROM STDIN, the server ignores them (it
   * ignores Sync during COPY, as libpq expects: it sends Sync right after
   * Execute and again after CopyDone): they get no ReadyForQuery.
   */
  private syncsSinceExecute = -1;
  /** Draining with a probe: 1 sent, 2 its error seen, 3 its ReadyForQuery seen. */
  private probe: 0 | 1 | 2 | 3 = 0;
  /** The COPY FROM STDIN came from Execute: after CopyFail the server waits for a Sync. */
  private copyExtended = false;
  private txStatus = 0x49; /* I */
  /** Set by the client visitor when it meets Terminate: offset just past it. */
  private terminateEnd = -1;
  private closing = false;
  private drainTimer: NodeJS.Timeout | null = null;
  private readonly resumeClient = () => this.host.socket.resume();
  private readonly resumeServer = () => this.server?.socket.resume();

  constructor(host: DirectHost, server: ServerConnection) {
    this.host = host;
    this.server = server;
    this.clientReader = new FrameReader('', host.maxPacketSize, FRONTEND_TYPES);
    this.clientVisitor = { onMessage: (type, _body, end) => this.onClientMessage(type, end) };
    server.setOwner(this);
  }

  busyServer(): ServerConnection | null {
    return this.pendingReady > 0 ? this.server : null;
  }

  private onClientMessage(type: number, end: number): boolean {
    switch (type) {
      case 0x51 /* Query */:
      case 0x46 /* FunctionCall */:
        this.pendingReady++;
        this.syncsSinceExecute = -1;
        return true;
      case 0x53 /* Sync */:
        this.unsynced = false;
        if (this.copyIn) return true;
        this.pendingReady++;
        if (this.syncsSinceExecute >= 0) this.syncsSinceExecute++;
        return true;
      case 0x45 /* Execute */:
        this.unsynced = true;
        this.syncsSinceExecute = 0;
        return true;
      case 0x50 /* Parse */:
      case 0x42 /* Bind */:
      case 0x44 /* Describe */:
      case 0x43 /* Close */:
      case 0x48 /* Flush */:
        this.unsynced = true;
        return true;
      case 0x63 /* CopyDone */:
      case 0x66 /* CopyFail */:
        this.copyIn = false;
        return true;
      case 0x58 /* Terminate */:
        this.terminateEnd = end;
        return false;
      default:
        return true;
    }
  }

  /** A `borrowed` chunk lies in the client's read buffer, reused by its next read. */
  onClientData(chunk: Buffer, borrowed = false): void {
    const server = this.server;
    if (server === null) return;
    const reader = this.clientReader;
    const held = reader.partialHeaderLength;
    const pre = held > 0 ? reader.partialHeader() : null;
    reader.feed(chunk, this.clientVisitor);
    const out = server.socket;
    if (this.terminateEnd >= 0) {
      // Everything before Terminate goes on; Terminate itself never does.
      const cut = this.terminateEnd - 5;
      if (cut >= 0) {
        if (pre !== null) out.write(pre);
        if (cut > 0) out.write(chunk.subarray(0, cut));
      }
      this.host.terminated();
      return;
    }
    const keep = reader.partialHeaderLength;
    if (keep > chunk.length) {
      // Still the same unfinished header (it began in an earlier read and
      // this one did not complete it): nothing can go on yet.
      return;
    }
    if (pre !== null) out.write(pre);
    const ok = out.write(keep === 0 ? chunk : chunk.subarray(0, chunk.length - keep));
    // A write still pointing into the client's read buffer: no reads into
    // it until the write is out (which also covers backpressure).
    if (borrowed && afterPendingWrites(out, this.resumeClient)) this.host.socket.pause();
    else if (!ok) {
      this.host.socket.pause();
      out.once('drain', this.resumeClient);
    }
  }

  /** Server side of the loop: count ReadyForQuery, watch COPY, track ParameterStatus. */
  onMessage(type: number, body: Buffer | null): boolean {
    switch (type) {
      case 0x45 /* ErrorResponse */:
        if (this.probe === 1 && body!.includes(PROBE_MARK)) this.probe = 2;
        return true;
      case 0x5a /* ReadyForQuery */:
        if (this.probe === 2) this.probe = 3;
        this.pendingReady--;
        this.txStatus = body![0];
        this.host.stats.queries++;
        if (this.txStatus === 0x49) this.host.stats.transactions++;
        this.copyIn = false;
        return true;
      case 0x47 /* CopyInResponse */:
        this.copyIn = true;
        this.copyExtended = this.syncsSinceExecute >= 0;
        if (this.syncsSinceExecute > 0) this.pendingReady -= this.syncsSinceExecute;
        this.syncsSinceExecute = -1;
        return true;
      case 0x53 /* ParameterStatus */: {
        const [k, v] = parseParameterStatus(body!);
        this.server!.parameters.set(k, v);
        return true;
      }
      default:
        return true;
    }
  }

  onServerChunk(chunk: Buffer, _consumed: number, borrowed: boolean): void {
    if (!this.closing) {
      const client = this.host.socket;
      const ok = client.write(chunk);
      // Likewise for the server's read buffer.
      if (borrowed && afterPendingWrites(client, this.resumeServer)) this.server!.socket.pause();
      else if (!ok) {
        this.server!.socket.pause();
        client.once('drain', this.resumeServer);
      }
      return;
    }
    // Draining for a client that left: answers are dropped, only counted.
    if (this.probe === 3 || (this.probe === 0 && this.isQuiet())) this.finishDrain();
  }

  onServerClose(): void {
    const server = this.server;
    if (server === null) return;
    this.server = null;
    if (this.drainTimer !== null) clearTimeout(this.drainTimer);
    if (this.host.pool !== null) this.host.pool.discard(server);
    if (!this.closing) {
      // The server's FATAL, if it sent one, has already been forwarded.
      this.host.fatal(
        new PgError(SqlState.CONNECTION_FAILURE, 'server closed the connection unexpectedly', {
          hint: 'The server may have been restarted or the backend terminated.',
        }),
      );
    }
  }

  private isQuiet(): boolean {
    return this.pendingReady <= 0 && !this.unsynced && !this.copyIn && this.server!.reader.atBoundary;
  }

  /**
   * The client is gone: give the server connection back, or drain it first.
   * A client that leaves with answers still due leaves a connection that
   * must not be lent until the last of them has arrived.
   */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    const server = this.server;
    if (server === null) return;
    server.socket.resume();
    const pool = this.host.pool;
    if (pool === null) {
      this.server = null;
      server.setOwner(null);
      server.close();
      return;
    }
    if (!this.clientReader.betweenBodies) {
      // The client left in the middle of a message: the server waits for the
      // rest of it, which will never come.
      this.discardServer();
      return;
    }
    if (this.isQuiet()) {
      this.finishDrain();
      return;
    }
    if (this.copyIn) {
      server.socket.write(COPY_FAIL);
      if (this.copyExtended) this.unsynced = true;
    }
    server.socket.write(DRAIN_PROBE);
    this.unsynced = false;
    this.probe = 1;
    // Give a running statement a moment to finish, then cancel it; give up on
    // the connection if it still has not answered.
    let cancelled = false;
    const tick = () => {
      if (this.server !== server) return;
      if (!cancelled) {
        cancelled = true;
        sendCancel(server.host, server.port, server.processId, server.secretKey);
        this.drainTimer = setTimeout(tick, this.host.queryTimeoutMs);
        return;
      }
      this.discardServer();
    };
    this.drainTimer = setTimeout(tick, 500);
  }

  private finishDrain(): void {
    const server = this.server!;
    const pool = this.host.pool!;
    if (this.drainTimer !== null) clearTimeout(this.drainTimer);
    this.server = null;
    server.setOwner(null);
    if (this.txStatus === 0x49 /* I */) {
      pool.release(server);
      return;
    }
    // Left inside a transaction block: roll it back before the reset.
    server.runQuery('ROLLBACK', this.host.queryTimeoutMs).then(
      (r) => (r.error === null && r.status === 0x49 ? pool.release(server) : pool.discard(server)),
      () => pool.discard(server),
    );
  }

  private discardServer(): void {
    const server = this.server!;
    if (this.drainTimer !== null) clearTimeout(this.drainTimer);
    this.server = null;
    this.host.pool!.discard(server);
  }
}
