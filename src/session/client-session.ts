import type net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { FrameReader, StartupReader } from '../protocol/framing.ts';
import { PgError, SqlState } from '../protocol/errors.ts';
import {
  AUTH_OK,
  authenticationRequest,
  backendKeyData,
  errorResponse,
  negotiateProtocolVersion,
  noticeResponse,
  parameterStatus,
  parseErrorFields,
  parseStartupPacket,
  protocol2Error,
  PROTOCOL_3_0,
  readyForQuery,
  TERMINATE_AS_STARTUP_LENGTH,
  unsupportedProtocol,
} from '../protocol/messages.ts';
import { ClientAuthExchange, type AuthType } from '../auth/client-auth.ts';
import { matchHba } from '../auth/hba.ts';
import type { ServerConnection } from '../pool/server-connection.ts';
import type { Pool } from '../pool/pool.ts';
import type { PoolKey } from '../pool/pools.ts';
import { chooseEndpoint } from '../routing/endpoint.ts';
import { endpointFromServerName } from '../tls/client-tls.ts';
import { applySettingsQuery, clientSettings } from './startup-params.ts';
import { sendCancel, type CancelTarget } from './cancel-registry.ts';
import type { PoolMode, SessionContext } from './context.ts';
import { DirectLink, type DirectHost } from './direct-link.ts';
import type { OwnReads } from './own-reads.ts';
import { afterPendingWrites } from './write-hold.ts';
import { MuxLink } from './mux-link.ts';
import { loginParameters } from './login-params.ts';
import { replicationOf, replicationParameter, type Replication } from './replication.ts';
import { loadClassifier } from '../sql/classify.ts';
import { ADMIN_DATABASES, ADMIN_ENDPOINT, AdminLink } from '../admin/session.ts';
import { ClientCounters, type DatabaseStats } from '../metrics/database-stats.ts';
import type { Rights } from '../admin/console.ts';
import { ClientTimeouts, type ClientActivity, type WatchedClient } from './client-timeouts.ts';
import type { ClientTimeoutLimits } from './context.ts';

const enum_ = {
  startup: 0,
  auth: 1,
  connecting: 2,
  ready: 3,
  closed: 4,
} as const;
type Phase = (typeof enum_)[keyof typeof enum_];

let nextId = 1;

/** ReadyForQuery's status byte outside a transaction block. */
const IDLE = 0x49; /* I */

/** What the server gives each client session besides the shared context. */
export interface SessionOptions {
  /** client_login_timeout: from accept until the client has authenticated, in ms (0: no limit). */
  loginTimeoutMs: number;
  /** Per-database counters (SHOW STATS). */
  databaseStats: DatabaseStats;
  /** Connected through the Unix-domain socket: no address, no TLS (as PostgreSQL and PgBouncer). */
  unixSocket?: boolean;
}

const loginTimedOut = (session: ClientSession) => session.onLoginTimeout();

/** How long the last message to a client may take to leave before its connection is cut. */
const HANG_UP_GRACE_MS = 5000;

/**
 * One client from accept to close: startup, authentication, login to a
 * server (or to the pool's knowledge of one), then a forwarding loop: the
 * direct one for session pooling on one node, the message-level one for
 * transaction and statement pooling and for reads spread over replicas.
 */
export class ClientSession implements CancelTarget, WatchedClient {
  readonly id = nextId++;
  socket: net.Socket;
  /** The TLS server name (SNI) the client sent, lower-cased. */
  serverName: string | null = null;
  readonly connectedAt = Date.now();
  private readonly ctx: SessionContext;
  private childLog: Logger | null = null;
  private phase: Phase = enum_.startup;

  private readonly startupReader = new StartupReader();
  private authReader: FrameReader | null = null;
  private auth: ClientAuthExchange | null = null;
  /** Bytes the client sent after its last authentication message. */
  private early: Buffer[] = [];

  user = '';
  database = '';
  endpointName = '';
  applicationName = '';
  mode: PoolMode = 'session';
  /** A replication connection (replication=true or database): passed through to the primary, never pooled. */
  replication: Replication | null = null;
  private key: PoolKey | null = null;
  /** The key of the pool that serves it (its forced user's, if any), once known. */
  get poolKey(): Readonly<PoolKey> | null {
    return this.key;
  }
  private settings = new Map<string, string>();
  private link: DirectLink | MuxLink | AdminLink | null = null;
  /** Set for admin console clients. */
  private adminRights: Rights | null = null;
  private cancelKey: { processId: number; secretKey: number } | null = null;

  constructor(reads: OwnReads, ctx: SessionContext, opts: SessionOptions) {
    this.socket = reads.socket;
    this.reads = reads;
    this.ctx = ctx;
    this.databaseStats = opts.databaseStats;
    this.unixSocket = opts.unixSocket === true;
    const loginTimeoutMs = opts.loginTimeoutMs;
    this.socket.setNoDelay(true);
    reads.setReader(this.onRead);
    this.attach(this.socket);
    if (loginTimeoutMs > 0) this.loginTimer = setTimeout(loginTimedOut, loginTimeoutMs, this).unref();
  }

  private readonly databaseStats: DatabaseStats;
  /** Connected through the Unix-domain socket. */
  readonly unixSocket: boolean;
  /** What this client's forwarding loop counts, for its database's SHOW STATS row; null for the admin console. */
  counters: ClientCounters | null = null;

  /** Runs until the client has authenticated (client_login_timeout). */
  private loginTimer: NodeJS.Timeout | null = null;
  /** A TLS handshake is under way: the plain socket is no longer ours to write to. */
  private handshaking = false;

  private stopLoginTimer(): void {
    if (this.loginTimer !== null) clearTimeout(this.loginTimer);
    this.loginTimer = null;
  }

  /**
   * A client that stopped during login (silent after connecting, or in the
   * middle of the password exchange) is let go, in PostgreSQL's words for
   * its authentication_timeout, so it holds nothing (a descriptor, a place
   * under max_client_conn) for ever.
   */
  onLoginTimeout(): void {
    this.loginTimer = null;
    if (this.phase !== enum_.startup && this.phase !== enum_.auth) return;
    this.log.debug({ phase: this.phase }, 'client_login_timeout');
    if (this.handshaking) {
      this.socket.destroy();
      this.onClientGone('client_login_timeout during the TLS handshake');
      return;
    }
    this.fatal(new PgError(SqlState.QUERY_CANCELED, 'canceling authentication due to timeout'));
  }

  /** The plain connection's reads, until TLS takes the socket over. */
  private reads: OwnReads | null;
  private readonly onRead = (chunk: Buffer, borrowed: boolean) => this.onClientData(chunk, borrowed);
  private readonly onData = (chunk: Buffer) => this.onClientData(chunk, false);
  private readonly onClose = () => this.onClientGone('client closed the connection');

  private attach(socket: net.Socket): void {
    if (this.reads === null) socket.on('data', this.onData);
    socket.on('error', () => {});
    socket.on('close', this.onClose);
  }

  /** SSLRequest: 'S' and the handshake when TLS is offered, else 'N'. */
  private startTls(): boolean {
    const clientTls = this.ctx.clientTls();
    // Nothing to protect on the Unix-domain socket: PostgreSQL and PgBouncer refuse TLS there too.
    if (!clientTls.offered || this.socket instanceof tls.TLSSocket || this.unixSocket) {
      this.socket.write('N');
      return false;
    }
    if (this.startupReader.takeRest().length > 0) {
      // Bytes sent before the handshake could be anyone's: refuse them.
      throw new PgError(SqlState.PROTOCOL_VIOLATION, 'received unencrypted data after SSL request');
    }
    const plain = this.socket;
    this.reads?.setReader(null);
    this.reads = null;
    plain.off('data', this.onData);
    plain.off('close', this.onClose);
    plain.write('S');
    this.handshaking = true;
    clientTls.upgrade(plain, this.ctx.settings().queryTimeoutMs).then(
      ({ socket, serverName }) => {
        this.handshaking = false;
        this.socket = socket;
        this.serverName = serverName;
        this.attach(socket);
      },
      (err: Error) => {
        plain.destroy();
        this.log.debug({ err: err.message }, 'TLS handshake failed');
        this.onClientGone(err.message);
      },
    );
    return true;
  }

  /** Who this client is, for the lines that say why a login failed. */
  private who(): { user: string; database: string; addr: string } {
    const s = this.socket;
    const addr = this.unixSocket ? 'unix socket' : `${s.remoteAddress ?? '?'}:${s.remotePort ?? '?'}`;
    return { user: this.user, database: this.database, addr };
  }

  /**
   * Where failed logins are counted (auth_failure_limit): the client's IP
   * address; every client of the Unix-domain socket, which has none, is
   * local and counts as one.
   */
  private failureKey(): string {
    return this.unixSocket ? 'unix socket' : (this.socket.remoteAddress ?? '');
  }

  /** This client's logger, made on first use (10,000 idle clients need not carry one each). */
  private get log(): Logger {
    this.childLog ??= this.ctx.log.child({ client: this.id });
    return this.childLog;
  }

  /**
   * Since when (ms since the epoch) the client has been waiting for a
   * server connection, or null: SHOW CLIENTS' `waiting` state and `wait`.
   */
  waitingSince: number | null = null;

  /** Logged in (the admin console's included): SHOW CLIENTS lists it; before, SHOW SOCKETS says cl_login. */
  get loggedIn(): boolean {
    return this.phase === enum_.ready;
  }

  /** The server connection serving this client right now, if a statement is running. */
  get server(): ServerConnection | null {
    return this.link?.server ?? null;
  }

  /**
   * Inside a transaction block or with a statement under way: a safe
   * shutdown (SIGINT, SHUTDOWN WAIT_FOR_SERVERS) waits for it.
   */
  inTransaction(): boolean {
    const link = this.link;
    if (this.phase !== enum_.ready || link === null || link instanceof AdminLink) return false;
    if (link.busyServer() !== null) return true;
    const status = link instanceof MuxLink ? link.status : link instanceof SessionLink ? link.transactionStatus : IDLE;
    return status !== IDLE;
  }

  /** client_idle_timeout and the other client timeouts, once logged in (not for the admin console). */
  private timeouts: ClientTimeouts | null = null;
  /** When the login completed, in performance.now() milliseconds. */
  private readyAtMs = 0;

  /** What the client timeouts look at: the loop's own times, read only when a timer wakes. */
  activity(): ClientActivity | null {
    const link = this.link;
    const counters = this.counters;
    if (this.phase !== enum_.ready || counters === null || link === null || link instanceof AdminLink) return null;
    const status = link instanceof MuxLink ? link.status : (link as SessionLink).transactionStatus;
    const state =
      this.waitingSince !== null
        ? 'waiting'
        : link.busyServer() !== null || counters.running
          ? 'active'
          : status === IDLE
            ? 'idle'
            : 'idle in transaction';
    return { state, since: Math.max(counters.activitySinceMs, this.readyAtMs), transactionSince: counters.transactionSinceMs };
  }

  timeoutLimits(): ClientTimeoutLimits {
    const limits = this.ctx.settings().clientTimeouts(this.user, this.key?.user ?? this.user);
    // WAL streaming is one statement for as long as it lasts.
    return this.replication === null ? limits : { ...limits, queryMs: 0, transactionMs: 0 };
  }

  /** A client timeout was reached: the client gets PgBouncer's words, and what it held is given back as when a client leaves. */
  timedOut(reason: string): void {
    this.fatal(new PgError(SqlState.PROTOCOL_VIOLATION, reason));
  }

  /** The configuration was reloaded: the client timeouts are read again. */
  settingsChanged(): void {
    if (this.phase === enum_.ready) this.timeouts?.watch();
  }

  currentServer() {
    const s = this.phase === enum_.ready ? (this.link?.busyServer() ?? null) : null;
    if (s === null) return null;
    return { host: s.host, port: s.port, processId: s.processId, secretKey: s.secretKey };
  }

  private onClientData(chunk: Buffer, borrowed: boolean): void {
    try {
      const link = this.link;
      if (this.phase === enum_.ready && link instanceof DirectLink) {
        // Session pooling forwards the read buffer itself.
        this.counters!.clientSent();
        link.onClientData(chunk, borrowed);
        return;
      }
      // Everything else may keep what it reads: its own copy.
      if (borrowed) chunk = Buffer.from(chunk);
      switch (this.phase) {
        case enum_.ready:
          this.counters?.clientSent();
          link!.onClientData(chunk);
          return;
        case enum_.startup:
          this.onStartupData(this.nextStartupPacket(chunk));
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

  /** The next whole startup packet, with `chunk` added to what was read before. */
  private nextStartupPacket(chunk: Buffer | null): Buffer | null {
    try {
      return chunk === null ? this.startupReader.next() : this.startupReader.push(chunk);
    } catch (err) {
      // A Terminate where a startup packet should be: a client that gave up
      // at once (node-postgres ending a connection it has just opened).
      // PostgreSQL reads it as an impossible length and closes without a
      // word; so does pgmux, since any answer would reach a client that has
      // stopped listening.
      const rest = this.startupReader.takeRest();
      if (rest.length >= 4 && rest.readInt32BE(0) === TERMINATE_AS_STARTUP_LENGTH) {
        this.hangUp(null);
        this.onClientGone('client sent Terminate before its startup packet');
        return null;
      }
      throw err;
    }
  }

  private onStartupData(packet: Buffer | null): void {
    while (packet !== null && this.phase === enum_.startup) {
      const unsupported = unsupportedProtocol(packet);
      if (unsupported !== null) {
        this.refuseProtocol(unsupported.major, unsupported.minor);
        return;
      }
      const req = parseStartupPacket(packet);
      switch (req.kind) {
        case 'ssl':
          if (this.startTls()) return;
          packet = this.nextStartupPacket(null);
          continue;
        case 'gssenc':
          // No GSS encryption: 'N' and the client goes on (it may ask for TLS next).
          this.socket.write('N');
          packet = this.nextStartupPacket(null);
          continue;
        case 'cancel':
          // PostgreSQL answers a CancelRequest with nothing and closes.
          this.ctx.cancels.cancel(req.processId, req.secretKey);
          this.hangUp(null);
          this.onClientGone('cancel request');
          return;
        case 'startup': {
          if (this.ctx.clientTls().required && !(this.socket instanceof tls.TLSSocket) && !this.unixSocket) {
            throw new PgError(SqlState.INVALID_AUTHORIZATION_SPECIFICATION, 'SSL required', {
              hint: 'This pgmux accepts only TLS connections (client_tls_sslmode = require): connect with sslmode=require.',
            });
          }
          const rest = this.startupReader.takeRest();
          if (rest.length > 0) this.early.push(rest);
          if (req.minor > 0 || req.protocolOptions.length > 0) {
            // The newest version pgmux speaks (3.0, as PostgreSQL 15 does),
            // and the protocol options it does not know (all of them).
            this.socket.write(negotiateProtocolVersion(PROTOCOL_3_0, req.protocolOptions));
          }
          this.phase = enum_.auth;
          this.socket.pause();
          this.startAuth(req.params).catch((err) => this.fatal(err));
          return;
        }
      }
    }
  }

  /**
   * A protocol version other than 3.x, refused in PostgreSQL's words: as an
   * old-style error to a client that asked for 2.0 or older (the only kind
   * it reads), else as FATAL 0A000.
   */
  private refuseProtocol(major: number, minor: number): void {
    const message = `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.0`;
    if (major >= 3) throw new PgError(SqlState.FEATURE_NOT_SUPPORTED, message);
    this.hangUp(protocol2Error('FATAL', message));
    this.onClientGone(message);
  }

  private async startAuth(params: Map<string, string>): Promise<void> {
    const user = params.get('user');
    if (!user) throw new PgError(SqlState.INVALID_AUTHORIZATION_SPECIFICATION, 'no PostgreSQL user name specified in startup packet');
    this.user = user;
    this.database = params.get('database') || user;
    const cs = clientSettings(params, this.ctx.settings().ignoredStartupParameters);
    this.settings = cs.settings;
    this.applicationName = cs.settings.get('application_name') ?? '';
    this.replication = replicationOf(params);
    if (ADMIN_DATABASES.has(this.database) && cs.endpoint === undefined) {
      await this.startAdminAuth(user);
      return;
    }
    const choice = await chooseEndpoint(this.ctx.endpoints(), (name) => this.ctx.resolveEndpoint(name), this.ctx.settings().defaultEndpoint, {
      fromServerName: endpointFromServerName(this.serverName, this.ctx.settings().sniDomains),
      fromOptions: cs.endpoint,
      database: this.database,
    });
    if (this.phase !== enum_.auth) return;
    this.endpointName = choice.endpoint.name;
    // The database name it asked for is its [databases] entry: the admin console's name for it.
    this.key = { endpoint: choice.endpoint.name, database: choice.database, user, entry: this.database };
    this.log.debug({ user, database: this.database, endpoint: this.endpointName }, 'startup');
    const refused = this.ctx.loginRefusal(this);
    if (refused !== null) {
      this.log.warn({ ...this.who(), err: refused.message }, 'login refused');
      throw refused;
    }
    const admitted = this.ctx.admitClient(this);
    const limit = admitted instanceof Promise ? await admitted : admitted;
    // Gone while the other workers were asked.
    if (this.phase !== enum_.auth) return;
    if (limit !== null) {
      this.log.warn({ ...this.who(), limit }, `login refused: ${limit} reached`);
      // PgBouncer's words for each limit.
      throw new PgError(SqlState.TOO_MANY_CONNECTIONS, limit === 'max_client_conn' ? 'no more connections allowed (max_client_conn)' : `client connections exceeded (${limit})`);
    }
    // The endpoint's forced user is whom its servers see and whose pool
    // serves the client; the client still authenticates as itself.
    const forced = this.ctx.settings().forcedUserFor(choice.endpoint.name);
    if (forced !== undefined) this.key!.user = forced;

    await this.authenticate(user, choice.endpoint.nodes[0], choice.database);
  }

  /**
   * The admin console: the same authentication, then the user must be in
   * admin_users or stats_users. auth_query runs on the first endpoint.
   */
  private async startAdminAuth(user: string): Promise<void> {
    if (this.replication !== null) throw new PgError(SqlState.FEATURE_NOT_SUPPORTED, 'the admin console takes no replication connections');
    const admin = this.ctx.admin();
    if (!admin.admins.has(user) && !admin.statsUsers.has(user)) {
      throw new PgError(SqlState.INSUFFICIENT_PRIVILEGE, `user "${user}" may not use the admin console`, {
        hint: 'List the user in admin_users or stats_users.',
      });
    }
    this.adminRights = admin.admins.has(user) ? 'admin' : 'stats';
    this.endpointName = ADMIN_ENDPOINT;
    const first = [...this.ctx.endpoints().values()][0];
    await this.authenticate(user, first?.nodes[0] ?? { host: '127.0.0.1', port: 5432 }, this.database);
  }

  private async authenticate(user: string, primary: { host: string; port: number }, database: string): Promise<void> {
    if (this.ctx.authFailures.blocked(this.failureKey())) {
      this.log.warn(this.who(), 'login refused: too many failed logins from this address (auth_failure_limit)');
      // Same answer whoever the user is: it says nothing about accounts.
      throw new PgError(SqlState.INVALID_AUTHORIZATION_SPECIFICATION, 'too many failed logins from this address; try again later');
    }
    const method = this.authMethod(user);
    let credential;
    try {
      // The admin console has no endpoint: the global auth settings apply.
      const place = this.ctx.authQueryPlace(this.adminRights === null ? this.endpointName : undefined, primary, database);
      credential = await this.ctx.credentials.lookup(user, place);
    } catch (err) {
      this.log.warn({ ...this.who(), err: (err as Error).message }, 'credential lookup failed');
      throw new PgError(SqlState.CONNECTION_FAILURE, `could not look up credentials for user "${user}"`, {
        detail: (err as Error).message,
      });
    }
    if (this.phase !== enum_.auth) return;
    this.auth = new ClientAuthExchange(method, user, credential, this.ctx.mockSecret);
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

  /**
   * How this client proves who it is: auth_type, or with auth_type = hba
   * the method of the first auth_hba_file rule that covers its connection
   * (Unix socket or TCP, address, TLS), the database it asked for and its
   * user. No rule, or a reject rule, ends the login as PostgreSQL would.
   */
  private authMethod(user: string): AuthType {
    const settings = this.ctx.settings();
    if (settings.authType !== 'hba') return settings.authType;
    const encrypted = this.socket instanceof tls.TLSSocket;
    const address = this.socket.remoteAddress ?? '';
    // As PostgreSQL: only a physical replication connection is matched by the `replication` keyword alone.
    const physical = this.replication === 'physical';
    const rule = matchHba(settings.hbaRules, { local: this.unixSocket, address, tls: encrypted, database: this.database, user, replication: physical });
    if (rule !== null && rule.method !== 'reject') {
      this.log.debug({ hba: `${rule.file}:${rule.line}`, method: rule.method }, 'HBA rule matched');
      return rule.method;
    }
    // PostgreSQL's words: [local] for the Unix socket, an IPv4 client as IPv4.
    const host = this.unixSocket ? '[local]' : address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
    const what = `host "${host}", user "${user}"${physical ? '' : `, database "${this.database}"`}, ${encrypted ? 'SSL encryption' : 'no encryption'}`;
    const message =
      rule === null
        ? `no pg_hba.conf entry for ${physical ? 'replication connection from ' : ''}${what}`
        : `pg_hba.conf rejects ${physical ? 'replication connection' : 'connection'} for ${what}`;
    this.log.warn({ ...this.who(), hba: rule === null ? 'no rule' : `${rule.file}:${rule.line}` }, `login refused: ${message}`);
    throw new PgError(SqlState.INVALID_AUTHORIZATION_SPECIFICATION, message);
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
            this.log.warn(this.who(), 'password authentication failed');
            this.ctx.credentials.invalidate(this.user);
            this.ctx.stats.authFailures++;
            this.ctx.authFailures.note(this.failureKey());
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
    this.stopLoginTimer();
    this.socket.pause();
    this.ctx.stats.authSuccesses++;
    const keys = this.auth?.keys;
    if (keys) this.ctx.credentials.rememberClientKey(this.user, keys.clientKey, keys.serverKey);
    // Login state is not needed any more; idle clients should weigh little.
    this.auth = null;
    this.authReader = null;
    this.socket.write(authenticationRequest(AUTH_OK));

    if (this.adminRights !== null) {
      this.cancelKey = this.ctx.cancels.register(this);
      this.link = new AdminLink(this.socket, this.ctx.admin().backend, this.adminRights, this.cancelKey, {
        terminated: () => this.onTerminate(),
        fatal: (err) => this.fatal(err),
      });
      this.phase = enum_.ready;
      this.log[this.ctx.settings().logConnections ? 'info' : 'debug']({ user: this.user, database: this.database, rights: this.adminRights }, 'admin console login');
      for (const c of this.early.splice(0)) this.link.onClientData(c);
      this.socket.resume();
      return;
    }
    const key = this.key!;
    // SHOW STATS counts per [databases] entry, as PgBouncer does.
    const counters = new ClientCounters(this.database, this.databaseStats.of(this.database), this.ctx.stats);
    this.counters = counters;
    const settings = this.ctx.settings();
    // A replication connection has a server connection of its own, as in pool_mode = none.
    this.mode = this.replication !== null ? 'none' : settings.poolModeFor(key.endpoint, key.user);
    const router = this.mode === 'none' ? null : this.ctx.routerFor(key.endpoint);
    const useMux = this.mode === 'transaction' || this.mode === 'statement' || (this.mode === 'session' && router!.spreadsReads);
    let parameters: ReadonlyMap<string, string>;
    if (useMux) {
      await loadClassifier();
      const primary = this.ctx.pools.get({ ...key, node: router!.primaryNode() });
      const login = await loginParameters(primary, this.settings, settings.queryTimeoutMs);
      parameters = login.reported;
      if (this.phase !== enum_.connecting) return;
      const link = new MuxLink(this.muxHost(key, router!), login.want, settings.extraTracked);
      for (const [k, v] of parameters) link.params.reported.set(k, v);
      this.link = link;
    } else {
      const server = await this.directServer(key);
      if (server === null) return;
      parameters = server.parameters;
      this.link = new SessionLink(
        {
          socket: this.socket,
          maxPacketSize: settings.maxPacketSize,
          queryTimeoutMs: settings.queryTimeoutMs,
          pool: this.mode === 'none' ? null : (server.pool ?? this.ctx.pools.get(key)),
          terminated: () => this.onTerminate(),
          fatal: (err) => this.fatal(err),
          stats: counters,
        },
        server,
        this,
      );
    }
    this.cancelKey = this.ctx.cancels.register(this);
    const out: Buffer[] = [];
    for (const [k, v] of parameters) out.push(parameterStatus(k, v));
    out.push(backendKeyData(this.cancelKey.processId, this.cancelKey.secretKey));
    out.push(readyForQuery('I'));
    this.socket.write(Buffer.concat(out));
    this.phase = enum_.ready;
    this.log[settings.logConnections ? 'info' : 'debug'](
      { user: this.user, database: this.database, endpoint: this.endpointName, server: this.server?.id, mode: this.mode, replication: this.replication ?? undefined },
      'login',
    );
    this.readyAtMs = performance.now();
    this.timeouts = new ClientTimeouts(this);
    this.timeouts.watch();
    const early = this.early;
    this.early = [];
    if (early.length > 0) counters.clientSent();
    for (const c of early) this.link.onClientData(c);
    this.socket.resume();
  }

  /** A replication connection's server connection: on the primary, with the client's settings and its replication parameter. */
  private openReplication(key: PoolKey, kind: Replication): Promise<ServerConnection> {
    const params = new Map(this.settings).set('replication', replicationParameter(kind));
    return this.ctx.openServer({ ...key, node: this.ctx.routerFor(key.endpoint).primaryNode() }, params);
  }

  /** Session and no-pool modes: the client's own connection, its settings applied. */
  private async directServer(key: PoolKey): Promise<ServerConnection | null> {
    const settings = this.ctx.settings();
    let server: ServerConnection;
    const pool = this.mode === 'none' ? null : this.ctx.pools.get(key);
    if (pool === null) {
      // No pool: the server gets the client's own startup settings, and any
      // refusal is PostgreSQL's own FATAL.
      const since = performance.now();
      server = await (this.replication === null ? this.ctx.openServer(key, this.settings) : this.openReplication(key, this.replication));
      this.counters!.assigned((performance.now() - since) * 1000);
    } else {
      const since = performance.now();
      this.waitingSince = Date.now();
      try {
        server = await pool.acquire();
      } finally {
        this.waitingSince = null;
      }
      this.counters!.assigned((performance.now() - since) * 1000);
    }
    const giveUp = () => {
      if (pool === null) server.close();
      else pool.release(server);
      return null;
    };
    if (this.phase !== enum_.connecting) return giveUp();
    if (pool !== null) {
      const q = applySettingsQuery(this.settings, server.parameters);
      if (q !== null) {
        const r = await server.runQuery(q, settings.queryTimeoutMs);
        if (r.error !== null) {
          pool.release(server);
          // The server refused a startup setting: the client sees PostgreSQL's
          // own words, as it would connecting directly.
          throw new PgError(r.error.code, r.error.message, { detail: r.error.detail, hint: r.error.hint });
        }
        if (this.phase !== enum_.connecting) return giveUp();
      }
    }
    return server;
  }

  private muxHost(key: PoolKey, router: ReturnType<SessionContext['routerFor']>) {
    const settings = this.ctx.settings();
    const counters = this.counters!;
    // Each node's pool, as pools.get() finds it until RECONNECT, KILL or a
    // reload replaces it (a replaced pool is shut down): looked up once, not
    // on every lend and release.
    const known: Pool[] = [];
    const poolOf = (node: number): Pool => {
      const pool = known[node];
      if (pool !== undefined && !pool.closeNeeded) return pool;
      return (known[node] = this.ctx.pools.get({ ...key, node }));
    };
    return {
      log: this.log,
      database: key.database,
      mode: this.mode as 'session' | 'transaction' | 'statement',
      maxPrepared: settings.maxPreparedStatements,
      onSessionState: settings.onSessionState,
      queryTimeoutMs: settings.queryTimeoutMs,
      maxPacketSize: settings.maxPacketSize,
      statementIds: this.ctx.statementIds,
      router,
      acquire: (node: number) => {
        // Only when no connection was at hand: the wait is measured.
        const since = performance.now();
        this.waitingSince = Date.now();
        return poolOf(node).acquire().then(
          (conn) => {
            this.waitingSince = null;
            counters.assigned((performance.now() - since) * 1000);
            return conn;
          },
          (err: unknown) => {
            this.waitingSince = null;
            throw err;
          },
        );
      },
      tryAcquire: (node: number) => {
        const conn = poolOf(node).tryAcquire();
        if (conn !== null) counters.assigned(0);
        return conn;
      },
      release: (conn: ServerConnection, reset: boolean) => (conn.pool ?? poolOf(conn.node)).release(conn, { reset }),
      discard: (conn: ServerConnection) => (conn.pool ?? poolOf(conn.node)).discard(conn),
      writeClient: (chunks: Buffer[]) => {
        if (this.phase === enum_.closed) return;
        let ok = true;
        if (chunks.length === 1) ok = this.socket.write(chunks[0]);
        else {
          // One system call for the slices of one server read (writev).
          this.socket.cork();
          for (const c of chunks) ok = this.socket.write(c);
          this.socket.uncork();
        }
        if (!ok) {
          const server = this.server;
          if (server !== null) {
            server.socket.pause();
            this.socket.once('drain', () => server.socket.resume());
          }
        }
      },
      whenClientWritten: (done: () => void) => afterPendingWrites(this.socket, done),
      pauseClient: () => this.socket.pause(),
      resumeClient: () => {
        if (this.phase === enum_.ready) this.socket.resume();
      },
      fatal: (err: unknown) => this.fatal(err),
      serverFatalForwarded: (message: string) => this.serverFatalForwarded(message),
      terminated: () => this.onTerminate(),
      stats: counters,
      notice: (text: string) => (settings.noticePerNodeStatement ? noticeResponse(text) : null),
    };
  }

  // ------------------------------------------------------------ the end

  /**
   * The server serving this client sent it a FATAL (pg_terminate_backend, a
   * shutdown, idle_in_transaction_session_timeout) and is closing: that is
   * the client's last word, as it would be connected to PostgreSQL directly.
   * Whatever pgmux would add when the server's socket closes is not sent.
   */
  serverFatalForwarded(message: string): void {
    this.serverFatal = message;
  }

  /** The message of the server's FATAL forwarded to this client, if one was. */
  private serverFatal: string | null = null;

  /**
   * Sends an ErrorResponse and ends this client only; after the server's own
   * FATAL, only ends it.
   */
  fatal(err: unknown): void {
    if (this.phase === enum_.closed) return;
    if (this.serverFatal !== null) {
      this.hangUp(null);
      this.onClientGone(`server sent FATAL: ${this.serverFatal}`);
      return;
    }
    const pgErr =
      err instanceof PgError
        ? err
        : new PgError(SqlState.INTERNAL_ERROR, `internal error: ${(err as Error)?.message ?? String(err)}`);
    if (!(err instanceof PgError)) this.log.error({ err }, 'unexpected error');
    else if (this.phase === enum_.ready) {
      // log_pooler_errors: what pgmux itself tells a client it disconnects (a failed login has its own line).
      if (this.ctx.settings().logPoolerErrors) this.log.warn({ user: this.user, database: this.database, code: pgErr.code }, `pooler error: ${pgErr.message}`);
    } else if (this.phase === enum_.connecting) {
      // Authenticated, but no server connection to serve it: the server is
      // unreachable, timed out or refused the login or a startup setting.
      this.log.warn({ ...this.who(), endpoint: this.endpointName, code: pgErr.code, err: pgErr.message }, 'login failed: no server connection');
    }
    const fields = pgErr.fields();
    if (fields.severity === 'ERROR') fields.severity = 'FATAL';
    this.hangUp(errorResponse(fields));
    this.onClientGone(pgErr.message);
  }

  /** The client sent Terminate: it is done, and so is its connection. */
  private onTerminate(): void {
    this.hangUp(null);
    this.onClientGone('client sent Terminate');
  }

  /**
   * Ends the client's connection as a backend that exits would: the last
   * message (if any) goes out, then the descriptor is closed, whether or
   * not the client closes its side (it may never; its socket may be paused).
   */
  private hangUp(last: Buffer | null): void {
    const socket = this.socket;
    if (socket.destroyed) return;
    const destroy = () => socket.destroy();
    // A client that does not read cannot keep the descriptor either.
    const timer = setTimeout(destroy, HANG_UP_GRACE_MS).unref();
    socket.once('close', () => clearTimeout(timer));
    socket.once('finish', destroy);
    if (last === null) socket.end();
    else socket.end(last);
  }

  private onClientGone(reason: string): void {
    if (this.phase === enum_.closed) return;
    const wasLoggedIn = this.phase === enum_.ready;
    this.phase = enum_.closed;
    this.stopLoginTimer();
    this.timeouts?.stop();
    if (this.cancelKey !== null) this.ctx.cancels.unregister(this.cancelKey);
    this.ctx.clientGone(this);
    this.ctx.stats.bytesIn += this.socket.bytesRead;
    this.ctx.stats.bytesOut += this.socket.bytesWritten;
    this.counters?.addBytes(this.socket.bytesRead, this.socket.bytesWritten);
    if (wasLoggedIn) this.log[this.ctx.settings().logDisconnections ? 'info' : 'debug']({ reason, durationMs: Date.now() - this.connectedAt }, 'disconnect');
    else this.log.debug({ reason }, 'disconnect before login');
    const link = this.link;
    if (link instanceof MuxLink) link.close((c) => sendCancel(c.host, c.port, c.processId, c.secretKey));
    else link?.close();
  }
}

/**
 * Session pooling's loop, which also tells the session when the server sent
 * a FATAL: the client has it already, and the session then only closes.
 */
class SessionLink extends DirectLink {
  private readonly session: ClientSession;
  /** From the last ReadyForQuery: 'I', 'T' or 'E'. */
  transactionStatus = IDLE;

  constructor(host: DirectHost, server: ServerConnection, session: ClientSession) {
    super(host, server);
    this.session = session;
  }

  override onMessage(type: number, body: Buffer | null): boolean {
    if (type === 0x5a /* ReadyForQuery */ && body !== null) this.transactionStatus = body[0];
    else if (type === 0x45 /* ErrorResponse */ && body !== null) {
      const fields = parseErrorFields(body);
      const severity = fields.get('V') ?? fields.get('S');
      if (severity === 'FATAL' || severity === 'PANIC') this.session.serverFatalForwarded(fields.get('M') ?? '');
    }
    return super.onMessage(type, body);
  }
}
