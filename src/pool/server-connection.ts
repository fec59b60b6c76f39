import type net from 'node:net';
import { FrameReader, type FrameVisitor } from '../protocol/framing.ts';
import { parseErrorFields, parseParameterStatus, query, TERMINATE } from '../protocol/messages.ts';
import { PgError, SqlState } from '../protocol/errors.ts';
import type { LoggedInServer } from '../auth/server-login.ts';
import { PreparedOnServer } from './prepared-on-server.ts';
import type { Pool } from './pool.ts';

/**
 * Whoever is reading a server connection's stream right now: a client
 * session forwarding it, or the connection itself running a query of its own
 * (reset, parameter setup). Exactly one at a time.
 */
export interface ServerOwner extends FrameVisitor {
  /**
   * Raw bytes, after the reader has seen the messages in them. A `borrowed`
   * chunk lies in the connection's read buffer: whoever keeps it past the
   * call (a write that has not gone out yet) must pause the socket until it
   * is done with it.
   */
  onServerChunk(chunk: Buffer, consumed: number, borrowed: boolean): void;
  onServerClose(): void;
  /**
   * When present, the owner frames the chunk itself through `reader` (and
   * onMessage/onServerChunk are not called): for owners that cut messages
   * out of the stream rather than forwarding chunks whole.
   */
  onRawChunk?(chunk: Buffer, reader: FrameReader, borrowed: boolean): void;
}

export interface QueryResult {
  /** Transaction status from the final ReadyForQuery. */
  status: number;
  /** First ErrorResponse, if any, as the server sent it. */
  error: PgError | null;
}

let nextId = 1;

/**
 * What another worker process needs to take over an idle server
 * connection (its socket travels beside this, over the IPC channel):
 * the server's facts about the session, never the pooling state of the
 * worker it leaves.
 */
export interface HandedConnection {
  processId: number;
  secretKey: number;
  host: string;
  port: number;
  node: number;
  createdAt: number;
  lastUsedAt: number;
  parameters: [string, string][];
  sessionSets: [string, string][];
}

/**
 * One logged-in server connection. Tracks what PostgreSQL reported about the
 * session (ParameterStatus) and hands its stream to one owner at a time.
 */
export class ServerConnection implements FrameVisitor {
  onRawChunk: undefined;
  readonly id = nextId++;
  readonly socket: net.Socket;
  readonly processId: number;
  readonly secretKey: number;
  readonly host: string;
  readonly port: number;
  /** The server's current ParameterStatus values for this session. */
  readonly parameters: Map<string, string>;
  /** Frames the server stream; kept across owners so boundaries are never lost. */
  readonly reader = new FrameReader('ZSE');
  createdAt = Date.now();
  /** Which of its endpoint's nodes this connection is logged in to. */
  node = 0;
  /** The pool that opened it, which it goes back to (even after a reload replaced that pool). */
  pool: Pool | null = null;
  /** Protocol-level statements pgmux prepared on this session (transaction mode). */
  readonly prepared = new PreparedOnServer();
  /** Parameters set on this session by pgmux or its clients, lower-cased name → value. */
  readonly sessionSets = new Map<string, string>();
  lastUsedAt = Date.now();
  closed = false;
  private owner: ServerOwner | null = null;
  private pending: { resolve: (r: QueryResult) => void; error: PgError | null } | null = null;

  constructor(login: LoggedInServer, host: string, port: number) {
    this.socket = login.socket;
    this.processId = login.processId;
    this.secretKey = login.secretKey;
    this.parameters = login.parameters;
    this.host = host;
    this.port = port;
    this.socket.setNoDelay(true);
    this.socket.setKeepAlive(true, 60_000);
    login.setReader((chunk, borrowed) => this.onData(chunk, borrowed));
    this.socket.on('error', () => this.markClosed(true));
    this.socket.on('close', () => this.markClosed(true));
  }

  /** Gives the stream to `owner` (null: nobody expects data; any is a broken connection). */
  setOwner(owner: ServerOwner | null): void {
    this.owner = owner;
  }

  private onData(chunk: Buffer, borrowed: boolean): void {
    if (this.closed) return;
    const owner = this.owner ?? this;
    if (owner.onRawChunk !== undefined) {
      try {
        owner.onRawChunk(chunk, this.reader, borrowed);
      } catch {
        this.close();
      }
      return;
    }
    let consumed: number;
    try {
      consumed = this.reader.feed(chunk, owner);
    } catch {
      // A server that breaks framing cannot be trusted with anything more.
      this.close();
      return;
    }
    if (this.owner !== null) this.owner.onServerChunk(chunk, consumed, borrowed);
    else if (this.pending === null) {
      // Data while idle in the pool. PostgreSQL sends nothing to an idle
      // session but a notice, a parameter report or a notification; anything
      // else (the FATAL of pg_terminate_backend or a shutdown, which comes
      // just before the server closes the socket) means the session is over:
      // it is dropped now, before a client could be lent it.
      if (this.idleFault || !this.reader.atBoundary) this.close();
    }
  }

  /** A message arrived while idle that only a dying session sends. */
  private idleFault = false;

  /** Whether the connection can still be lent: not closed, and the server has not ended its side. */
  get usable(): boolean {
    return !this.closed && !this.socket.destroyed && !this.socket.readableEnded && this.socket.writable;
  }

  /** Own queries (reset, setup): record ParameterStatus, first error, final status. */
  onMessage(type: number, body: Buffer | null): boolean {
    if (this.owner === null && this.pending === null && type !== 0x53 /* S */ && type !== 0x4e /* N */ && type !== 0x41 /* A */) {
      this.idleFault = true;
      return false;
    }
    if (type === 0x53 /* S */) {
      const [k, v] = parseParameterStatus(body!);
      this.parameters.set(k, v);
    } else if (type === 0x45 /* E */ && this.pending !== null && this.pending.error === null) {
      const f = parseErrorFields(body!);
      this.pending.error = new PgError(f.get('C') ?? SqlState.INTERNAL_ERROR, f.get('M') ?? 'error', {
        severity: 'ERROR',
        detail: f.get('D'),
        hint: f.get('H'),
      });
    } else if (type === 0x5a /* Z */ && this.pending !== null) {
      const p = this.pending;
      this.pending = null;
      p.resolve({ status: body![0], error: p.error });
    }
    return true;
  }

  /**
   * Runs one simple Query of pgmux's own and waits for its ReadyForQuery,
   * discarding the rows. Only when nobody else owns the connection.
   */
  runQuery(sql: string, timeoutMs: number): Promise<QueryResult> {
    if (this.closed) return Promise.reject(new PgError(SqlState.CONNECTION_FAILURE, 'server connection is closed'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = null;
        this.close();
        reject(new PgError(SqlState.CONNECTION_FAILURE, `server did not answer "${sql}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending = {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        error: null,
      };
      this.onClosedDuringQuery = () => {
        clearTimeout(timer);
        reject(new PgError(SqlState.CONNECTION_FAILURE, 'server closed the connection unexpectedly'));
      };
      this.owner = null;
      this.socket.write(query(sql));
    });
  }

  private onClosedDuringQuery: (() => void) | null = null;

  private markClosed(destroy: boolean): void {
    if (this.closed) return;
    this.closed = true;
    if (destroy) this.socket.destroy();
    if (this.pending !== null) {
      this.pending = null;
      this.onClosedDuringQuery?.();
    }
    this.owner?.onServerClose();
    this.onClose?.();
  }

  /** Called once when the connection closes, whatever the cause (set by the pool). */
  onClose: (() => void) | null = null;

  /**
   * Whether the socket can be passed to another process: a plain one
   * (TLS state lives in this process), idle, with nothing half read.
   */
  get canHandOver(): boolean {
    const sock = this.socket as net.Socket & { encrypted?: boolean; _handle?: unknown };
    return (
      !this.closed && this.owner === null && this.pending === null && this.reader.atBoundary && sock.encrypted !== true && sock._handle != null && sock.readableLength === 0 && this.usable
    );
  }

  /**
   * Lets go of the connection for another process: what that one needs,
   * and the socket to send beside it. This object is done with (closed,
   * without touching the socket); null when canHandOver is false.
   */
  handOver(): { conn: HandedConnection; socket: net.Socket } | null {
    if (!this.canHandOver) return null;
    this.closed = true;
    this.onClose = null;
    // No more reads here: the handle stays open in this process until the
    // send completes, and a reply the other side asks for must reach it,
    // not this process.
    (this.socket as net.Socket & { _handle: { readStop?: () => number } })._handle.readStop?.();
    this.socket.removeAllListeners('error');
    this.socket.removeAllListeners('close');
    // Sending the handle ends this side's reads; an error meanwhile is the receiver's to see.
    this.socket.on('error', () => {});
    const conn: HandedConnection = {
      processId: this.processId,
      secretKey: this.secretKey,
      host: this.host,
      port: this.port,
      node: this.node,
      createdAt: this.createdAt,
      lastUsedAt: this.lastUsedAt,
      parameters: [...this.parameters],
      sessionSets: [...this.sessionSets],
    };
    return { conn, socket: this.socket };
  }

  /** A connection another worker handed over, on the socket that came with it. */
  static handedOver(conn: HandedConnection, socket: net.Socket): ServerConnection {
    const login: LoggedInServer = {
      socket,
      processId: conn.processId,
      secretKey: conn.secretKey,
      parameters: new Map(conn.parameters),
      rest: Buffer.alloc(0),
      setReader: (reader) => socket.on('data', (chunk: Buffer) => reader(chunk, false)),
    };
    const c = new ServerConnection(login, conn.host, conn.port);
    c.node = conn.node;
    c.createdAt = conn.createdAt;
    c.lastUsedAt = conn.lastUsedAt;
    for (const [k, v] of conn.sessionSets) c.sessionSets.set(k, v);
    return c;
  }

  /** Closes politely: Terminate, then end. Never a half-close while a client uses it. */
  close(): void {
    if (this.closed) return;
    if (this.socket.writable) this.socket.end(TERMINATE);
    else this.socket.destroy();
    this.markClosed(false);
  }
}
