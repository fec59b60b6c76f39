import type net from 'node:net';
import type { Logger } from 'pino';
import { FrameReader, StartupReader, type FrameVisitor } from '../protocol/framing.ts';
import { PgError, SqlState } from '../protocol/errors.ts';
import {
  AUTH_OK,
  authenticationRequest,
  backendKeyData,
  errorResponse,
  negotiateProtocolVersion,
  parameterStatus,
  parseParameterStatus,
  parseStartupPacket,
  readyForQuery,
} from '../protocol/messages.ts';
import { ClientAuthExchange } from '../auth/client-auth.ts';
import type { ServerConnection, ServerOwner } from '../pool/server-connection.ts';
import type { Pool } from '../pool/pool.ts';
import type { PoolKey } from '../pool/pools.ts';
import { chooseEndpoint } from '../routing/endpoint.ts';
import { applySettingsQuery, clientSettings } from './startup-params.ts';
import { sendCancel, type CancelTarget } from './cancel-registry.ts';
import type { SessionContext } from './context.ts';

/** Frontend message types valid after startup (PasswordMessage only during authentication). */
const FRONTEND_TYPES = 'BCcdDEfFHPQSX';
const SYNC = Buffer.from([0x53, 0, 0, 0, 4]);
const COPY_FAIL = Buffer.from([0x66, 0, 0, 0, 28, ...Buffer.from('client left during COPY\0')]);

const enum_ = {
  startup: 0,
  auth: 1,
  connecting: 2,
  ready: 3,
  closed: 4,
} as const;
type Phase = (typeof enum_)[keyof typeof enum_];

let nextId = 1;

/**
 * One client from accept to close: startup, authentication, getting a
 * server connection, then the forwarding loop.
 *
 * The loop frames both streams with header peeks only and forwards the
 * original chunks whole. It counts what must be answered (each Query, Sync
 * and FunctionCall gets exactly one ReadyForQuery) so a server connection is
 * only given back once nothing sent on it is still unanswered.
 */
export class ClientSession implements ServerOwner, CancelTarget {
  readonly id = nextId++;
  readonly socket: net.Socket;
  readonly connectedAt = Date.now();
  private readonly ctx: SessionContext;
  private readonly log: Logger;
  private phase: Phase = enum_.startup;

  private readonly startupReader = new StartupReader();
  private authReader: FrameReader | null = null;
  private readonly clientReader: FrameReader;
  private readonly clientVisitor: FrameVisitor;
  private auth: ClientAuthExchange | null = null;
  /** Bytes the client sent after its last authentication message. */
  private early: Buffer[] = [];

  user = '';
  database = '';
  endpointName = '';
  applicationName = '';
  private key: PoolKey | null = null;
  private settings = new Map<string, string>();
  private pool: Pool | null = null;
  server: ServerConnection | null = null;
  private cancelKey: { processId: number; secretKey: number } | null = null;

  // Forwarding-loop bookkeeping.
  /** Query, Sync and FunctionCall messages sent whose ReadyForQuery has not come yet. */
  private pendingReady = 0;
  /** Extended-protocol messages sent since the last Sync. */
  private unsynced = false;
  /** The server is in COPY FROM STDIN and waits for the client's data. */
  private copyIn = false;
  private txStatus = 0x49; /* I */
  /** Set by the client visitor when it meets Terminate: offset just past it. */
  private terminateEnd = -1;
  private drainTimer: NodeJS.Timeout | null = null;
  private readonly resumeClient = () => this.socket.resume();
  private readonly resumeServer = () => this.server?.socket.resume();

  constructor(socket: net.Socket, ctx: SessionContext) {
    this.socket = socket;
    this.ctx = ctx;
    this.log = ctx.log.child({ client: this.id });
    this.clientReader = new FrameReader('', ctx.settings().maxPacketSize, FRONTEND_TYPES);
    this.clientVisitor = { onMessage: (type, _body, end) => this.onClientMessage(type, end) };
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onClientData(chunk));
    socket.on('error', () => {});
    socket.on('close', () => this.onClientGone('client closed the connection'));
  }

  currentServer() {
    const s = this.server;
    if (s === null || this.phase !== enum_.ready || this.pendingReady === 0) return null;
    return { host: s.host, port: s.port, processId: s.processId, secretKey: s.secretKey };
  }

  private onClientData(chunk: Buffer): void {
    try {
      switch (this.phase) {
        case enum_.ready:
          this.forwardToServer(chunk);
          return;
        case enum_.startup:
          this.onStartupData(this.startupReader.push(chunk));
          return;
        case enum_.auth:
          this.feedAuth(chunk);
          return;
        case enum_.connecting:
          this.early.push(chunk);
          return;
        default:
          return;
      }
    } catch (err) {
      this.fatal(err);
    }
  }

  // ---------------------------------------------------------------- startup

  private onStartupData(packet: Buffer | null): void {
    while (packet !== null && this.phase === enum_.startup) {
      const req = parseStartupPacket(packet);
      switch (req.kind) {
        case 'ssl':
        case 'gssenc':
          // No TLS or GSS encryption here: 'N' and the client goes on in plaintext.
          this.socket.write('N');
          packet = this.startupReader.next();
          continue;
        case 'cancel':
          this.ctx.cancels.cancel(req.processId, req.secretKey);
          this.phase = enum_.closed;
          this.socket.end();
          return;
        case 'startup': {
          const rest = this.startupReader.takeRest();
          if (rest.length > 0) this.early.push(rest);
          if (req.minor > 0 || req.protocolOptions.length > 0) {
            this.socket.write(negotiateProtocolVersion(0, req.protocolOptions));
          }
          this.phase = enum_.auth;
          this.socket.pause();
          this.startAuth(req.params).catch((err) => this.fatal(err));
          return;
        }
      }
    }
  }

  private async startAuth(params: Map<string, string>): Promise<void> {
    const user = params.get('user');
    if (!user) throw new PgError(SqlState.INVALID_AUTHORIZATION_SPECIFICATION, 'no PostgreSQL user name specified in startup packet');
    this.user = user;
    this.database = params.get('database') || user;
    const cs = clientSettings(params);
    this.settings = cs.settings;
    this.applicationName = cs.settings.get('application_name') ?? '';
    const choice = chooseEndpoint(this.ctx.endpoints(), this.ctx.settings().defaultEndpoint, this.database, cs.endpoint);
    this.endpointName = choice.endpoint.name;
    this.key = { endpoint: choice.endpoint.name, database: choice.database, user };
    this.log.debug({ user, database: this.database, endpoint: this.endpointName }, 'startup');
    if (!this.ctx.admitClient(this)) {
      throw new PgError(SqlState.TOO_MANY_CONNECTIONS, 'no more connections allowed (max_client_conn)');
    }

    let credential;
    try {
      credential = await this.ctx.credentials.lookup(user, choice.endpoint.nodes[0], choice.database);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'credential lookup failed');
      throw new PgError(SqlState.CONNECTION_FAILURE, `could not look up credentials for user "${user}"`, {
        detail: (err as Error).message,
      });
    }
    if (this.phase !== enum_.auth) return;
    this.auth = new ClientAuthExchange(this.ctx.settings().authType, user, credential, this.ctx.mockSecret);
    this.authReader = new FrameReader('p', 0x10000, 'p');
    const first = this.auth.start();
    if (first.reply !== null) this.socket.write(first.reply);
    if (first.done) {
      await this.onAuthenticated();
      return;
    }
    this.socket.resume();
    const early = this.early;
    this.early = [];
    for (const c of early) this.feedAuth(c);
  }

  private feedAuth(chunk: Buffer): void {
    let done = false;
    const consumed = this.authReader!.feed(chunk, {
      onMessage: (_type, body) => {
        let step;
        try {
          step = this.auth!.step(body!);
        } catch (err) {
          if (err instanceof PgError && err.code === SqlState.INVALID_PASSWORD) {
            this.ctx.credentials.invalidate(this.user);
            this.ctx.stats.authFailures++;
          }
          throw err;
        }
        if (step.reply !== null) this.socket.write(step.reply);
        done = step.done;
        return !done;
      },
    });
    if (done) {
      if (consumed < chunk.length) this.early.push(chunk.subarray(consumed));
      this.onAuthenticated().catch((err) => this.fatal(err));
    }
  }

  // ------------------------------------------------------------ login done

  private async onAuthenticated(): Promise<void> {
    this.phase = enum_.connecting;
    this.socket.pause();
    this.ctx.stats.authSuccesses++;
    const keys = this.auth?.keys;
    if (keys) this.ctx.credentials.rememberClientKey(this.user, keys.clientKey, keys.serverKey);
    this.socket.write(authenticationRequest(AUTH_OK));

    const key = this.key!;
    const mode = this.ctx.settings().poolModeFor(key.endpoint, key.user);
    let server: ServerConnection;
    if (mode === 'none') {
      // No pool: the server gets the client's own startup settings, and any
      // refusal is PostgreSQL's own FATAL.
      server = await this.ctx.openServer(key, this.settings);
    } else {
      this.pool = this.ctx.pools.get(key);
      server = await this.pool.acquire();
    }
    if (this.phase !== enum_.connecting) {
      // The client left while waiting.
      this.server = server;
      this.releaseServer();
      return;
    }
    this.server = server;
    if (mode !== 'none') {
      const q = applySettingsQuery(this.settings, server.parameters);
      if (q !== null) {
        const r = await server.runQuery(q, this.ctx.settings().queryTimeoutMs);
        if (r.error !== null) {
          // The server refused a startup setting: the client sees PostgreSQL's
          // own words, as it would connecting directly.
          throw new PgError(r.error.code, r.error.message, { detail: r.error.detail, hint: r.error.hint });
        }
        if (this.phase !== enum_.connecting) {
          this.releaseServer();
          return;
        }
      }
    }
    server.setOwner(this);
    this.cancelKey = this.ctx.cancels.register(this);
    const out: Buffer[] = [];
    for (const [k, v] of server.parameters) out.push(parameterStatus(k, v));
    out.push(backendKeyData(this.cancelKey.processId, this.cancelKey.secretKey));
    out.push(readyForQuery('I'));
    this.socket.write(Buffer.concat(out));
    this.phase = enum_.ready;
    this.log.info({ user: this.user, database: this.database, endpoint: this.endpointName, server: server.id, mode }, 'login');
    const early = this.early;
    this.early = [];
    for (const c of early) this.forwardToServer(c);
    this.socket.resume();
  }

  // ------------------------------------------------------ forwarding loop

  private onClientMessage(type: number, end: number): boolean {
    switch (type) {
      case 0x51 /* Query */:
      case 0x46 /* FunctionCall */:
        this.pendingReady++;
        return true;
      case 0x53 /* Sync */:
        this.pendingReady++;
        this.unsynced = false;
        return true;
      case 0x50 /* Parse */:
      case 0x42 /* Bind */:
      case 0x45 /* Execute */:
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

  private forwardToServer(chunk: Buffer): void {
    const server = this.server!;
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
      this.onClientGone('client sent Terminate');
      this.socket.end();
      return;
    }
    if (pre !== null) out.write(pre);
    const keep = reader.partialHeaderLength;
    const ok = out.write(keep === 0 ? chunk : chunk.subarray(0, chunk.length - keep));
    if (!ok) {
      this.socket.pause();
      out.once('drain', this.resumeClient);
    }
  }

  /** Server side of the loop: count ReadyForQuery, watch COPY, track ParameterStatus. */
  onMessage(type: number, body: Buffer | null): boolean {
    switch (type) {
      case 0x5a /* ReadyForQuery */:
        this.pendingReady--;
        this.txStatus = body![0];
        this.copyIn = false;
        return true;
      case 0x47 /* CopyInResponse */:
        this.copyIn = true;
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

  onServerChunk(chunk: Buffer): void {
    if (this.phase === enum_.ready) {
      if (!this.socket.write(chunk)) {
        this.server!.socket.pause();
        this.socket.once('drain', this.resumeServer);
      }
      return;
    }
    // Draining for a client that left: answers are dropped, only counted.
    if (this.isQuiet()) this.finishDrain();
  }

  onServerClose(): void {
    const server = this.server;
    if (server === null) return;
    this.server = null;
    if (this.drainTimer !== null) clearTimeout(this.drainTimer);
    this.pool?.discard(server);
    if (this.phase === enum_.ready) {
      // The server's FATAL, if it sent one, has already been forwarded.
      this.fatal(new PgError(SqlState.CONNECTION_FAILURE, 'server closed the connection unexpectedly', {
        hint: 'The server may have been restarted or the backend terminated.',
      }));
    }
  }

  // ------------------------------------------------------------ the end

  /** Sends an ErrorResponse and ends this client only. */
  fatal(err: unknown): void {
    if (this.phase === enum_.closed) return;
    const pgErr =
      err instanceof PgError
        ? err
        : new PgError(SqlState.INTERNAL_ERROR, `internal error: ${(err as Error)?.message ?? String(err)}`);
    if (!(err instanceof PgError)) this.log.error({ err }, 'unexpected error');
    const fields = pgErr.fields();
    if (fields.severity === 'ERROR') fields.severity = 'FATAL';
    if (!this.socket.destroyed) this.socket.end(errorResponse(fields));
    this.onClientGone(pgErr.message);
  }

  private onClientGone(reason: string): void {
    if (this.phase === enum_.closed) return;
    const wasLoggedIn = this.phase === enum_.ready;
    this.phase = enum_.closed;
    if (this.cancelKey !== null) this.ctx.cancels.unregister(this.cancelKey.processId);
    this.ctx.clientGone(this);
    if (wasLoggedIn) this.log.info({ reason, durationMs: Date.now() - this.connectedAt }, 'disconnect');
    else this.log.debug({ reason }, 'disconnect before login');
    if (this.server !== null) this.releaseServer();
  }

  private isQuiet(): boolean {
    return this.pendingReady <= 0 && !this.unsynced && !this.copyIn && this.server!.reader.atBoundary;
  }

  /**
   * Gives the server connection back, or drains it first: a client that
   * leaves with answers still due leaves a connection that must not be lent
   * until the last of them has arrived.
   */
  private releaseServer(): void {
    const server = this.server!;
    server.socket.resume();
    if (this.pool === null) {
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
    server.setOwner(this);
    if (this.copyIn) server.socket.write(COPY_FAIL);
    if (this.unsynced) {
      server.socket.write(SYNC);
      this.pendingReady++;
      this.unsynced = false;
    }
    // Give a running statement a moment to finish, then cancel it; give up on
    // the connection if it still has not answered.
    const timeout = this.ctx.settings().queryTimeoutMs;
    let cancelled = false;
    const tick = () => {
      if (this.server !== server) return;
      if (!cancelled) {
        cancelled = true;
        sendCancel(server.host, server.port, server.processId, server.secretKey);
        this.drainTimer = setTimeout(tick, timeout);
        return;
      }
      this.discardServer();
    };
    this.drainTimer = setTimeout(tick, 500);
  }

  private finishDrain(): void {
    const server = this.server!;
    const pool = this.pool!;
    if (this.drainTimer !== null) clearTimeout(this.drainTimer);
    this.server = null;
    server.setOwner(null);
    if (this.txStatus === 0x49 /* I */) {
      pool.release(server);
      return;
    }
    // Left inside a transaction block: roll it back before the reset.
    server.runQuery('ROLLBACK', this.ctx.settings().queryTimeoutMs).then(
      (r) => (r.error === null && r.status === 0x49 ? pool.release(server) : pool.discard(server)),
      () => pool.discard(server),
    );
  }

  private discardServer(): void {
    const server = this.server!;
    if (this.drainTimer !== null) clearTimeout(this.drainTimer);
    this.server = null;
    this.pool!.discard(server);
  }
}
