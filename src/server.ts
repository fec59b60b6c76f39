import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { configChanges, createLogger } from './logging.ts';
import type { Config } from './config/schema.ts';
import { CredentialStore, type AuthQueryPlace } from './auth/credential-store.ts';
import { loginToServer } from './auth/server-login.ts';
import { ServerConnection } from './pool/server-connection.ts';
import { Pools, type PoolKey } from './pool/pools.ts';
import type { Pool, PoolLimits, PoolSettings } from './pool/pool.ts';
import { SharedLimits } from './pool/shared-limits.ts';
import { parseNodeUrl, type Endpoint, type NodeAddress } from './routing/endpoint.ts';
import { EndpointRegistry } from './routing/registry.ts';
import { ClientTls } from './tls/client-tls.ts';
import { ownReads } from './session/own-reads.ts';
import { readFile } from 'node:fs/promises';
import { adminBackend } from './admin/backend.ts';
import { ADMIN_ENDPOINT } from './admin/session.ts';
import { FailureLimiter } from './auth/failure-limit.ts';
import { loadHba, type HbaRule } from './auth/hba.ts';
import type http from 'node:http';
import type { AdminBackend } from './admin/console.ts';
import { CancelRegistry } from './session/cancel-registry.ts';
import { ClientSession } from './session/client-session.ts';
import type { PoolMode, SessionContext, SessionSettings } from './session/context.ts';
import { PgError, SqlState } from './protocol/errors.ts';
import { loadClassifier } from './sql/classify.ts';
import { StatementIds } from './session/statements.ts';
import { DatabaseStats, statsLine, zeroTotals, type DatabaseTotals } from './metrics/database-stats.ts';
import { Listeners, type Listening } from './listeners.ts';
import { HostChoice, type HostAddress } from './routing/host-list.ts';
import { shownPath } from './unix-socket.ts';
import { SoloLink, type WorkerLink } from './workers/link.ts';

export { parseListen } from './listeners.ts';

/** Clients counted with other workers: a login is admitted once the count of the whole pgmux has room. */
export interface ClientCount {
  /** The limit a new client of `session` would go over in the whole pgmux, or null (then it is counted). */
  admit(session: ClientSession, config: Config): Promise<string | null>;
  /** A client counted by admit() has left. */
  leave(session: ClientSession): void;
}

export function endpointsFromConfig(config: Config): Map<string, Endpoint> {
  const out = new Map<string, Endpoint>();
  for (const [name, ep] of Object.entries(config.endpoints)) {
    out.set(name, { name, nodes: ep.nodes.map(parseNodeUrl) });
  }
  return out;
}

const s = (seconds: number) => Math.round(seconds * 1000);

/** Signals this close together are one request sent twice (see shutdown()). */
const SAME_SIGNAL_MS = 1000;

/** Running servers: the process signals below act on each. */
const running = new Set<PgmuxServer>();
let usrSignalsHeard = false;

const onQuit = () => {
  for (const server of [...running]) server.onSignal('SIGQUIT');
};

/**
 * PgBouncer's signals that the CLI does not handle itself: SIGUSR1 pauses
 * every pool, SIGUSR2 resumes them, SIGQUIT stops at once. SIGUSR1 is
 * Node's signal to open its inspector, a debugging port anyone on the host
 * could attach to: a listener of ours keeps it closed, so the SIGUSR
 * listeners stay for the life of the process (with no server running they
 * do nothing, where the defaults would open the inspector or kill).
 * SIGQUIT's listener goes with the last server, leaving its default.
 */
function listenForSignals(server: PgmuxServer): void {
  if (!usrSignalsHeard) {
    usrSignalsHeard = true;
    for (const sig of ['SIGUSR1', 'SIGUSR2'] as const) process.on(sig, () => running.forEach((x) => x.onSignal(sig)));
  }
  if (running.size === 0) process.on('SIGQUIT', onQuit);
  running.add(server);
}

/** Whether any client may be served by the message-level loop. */
function needsClassifier(c: Config): boolean {
  const muxMode = (m: string | undefined) => m === 'transaction' || m === 'statement';
  if (muxMode(c.pool_mode) || c.control_plane_url !== undefined) return true;
  if (Object.values(c.users).some((u) => muxMode(u.pool_mode))) return true;
  return Object.values(c.endpoints).some((e) => muxMode(e.pool_mode) || (e.nodes.length > 1 && (e.load_balance ?? c.load_balance) !== 'off'));
}

const listOf = (s: string) => new Set(s.split(',').map((x) => x.trim()).filter((x) => x !== ''));

function credentialOptions(config: Config) {
  return {
    authFile: config.auth_file,
    authUser: config.auth_user,
    authQuery: config.auth_query,
    cacheTtlMs: s(config.auth_cache_ttl),
    negativeCacheTtlMs: s(config.auth_negative_cache_ttl),
    connectTimeoutMs: s(config.server_connect_timeout),
    serverPasswords: new Map(
      Object.entries(config.users)
        .filter(([, u]) => u.password !== undefined)
        .map(([name, u]) => [name, u.password!]),
    ),
  };
}

/**
 * One running pgmux: its listeners and everything a client session needs.
 */
export class PgmuxServer {
  private config: Config;
  readonly log: Logger;
  private readonly listeners: Listeners;
  readonly registry: EndpointRegistry;
  private clientTls: ClientTls | null = null;
  /** Where new server connections of nodes with a host list go. */
  private readonly hostChoice: HostChoice;
  private serverCa: Buffer | undefined;
  readonly pools: Pools;
  readonly credentials: CredentialStore;
  readonly sessions = new Set<ClientSession>();
  /**
   * Database names clients have logged in with (`[databases]` entries)
   * since pgmux started: the admin console knows them by name even while
   * no pool or client of theirs is left.
   */
  readonly servedDatabases = new Set<string>();
  /** Entries (or endpoints) DISABLE refuses new logins to, until ENABLE. */
  readonly disabled = new Set<string>();
  /** Clients counted against max_client_conn. */
  private readonly admitted = new Set<ClientSession>();
  /** auth_hba_file's rules, when auth_type = hba. */
  private hbaRules: HbaRule[] = [];
  private sessionSettings: SessionSettings;
  readonly ctx: SessionContext;
  /** Where RELOAD (admin console) reads the configuration; the CLI sets it to re-read files and flags. */
  reloadSource: () => Promise<Config> = async () => this.config;
  /** What SHUTDOWN (admin console) does; the CLI sets it to stop the process. */
  onShutdown: (mode: string) => void = (mode) =>
    void (mode === 'now' ? this.stop() : this.shutdown(mode === 'wait_for_clients' ? 'clients' : 'transactions'));
  private readonly adminBackend: AdminBackend;
  /** Accepting clients (false before start and once stopping). */
  ready = false;
  private metricsServer: http.Server | null = null;

  /** SHOW STATS: per database, with averages over each stats period. */
  readonly databaseStats: DatabaseStats;
  /** How this worker reaches the others (a SoloLink when pgmux runs one process). */
  readonly link: WorkerLink;

  constructor(config: Config, opts: { logger?: Logger; link?: WorkerLink } = {}) {
    this.config = config;
    this.link = opts.link ?? new SoloLink();
    this.hostChoice = new HostChoice(this.link.id);
    this.log = opts.logger ?? createLogger({ level: config.log_level, format: config.log_format });
    this.databaseStats = new DatabaseStats(
      s(config.stats_period),
      (counters) => this.databaseTotals(counters),
      () => this.logStats(),
    );
    this.registry = new EndpointRegistry(config, this.log);
    this.sessionSettings = this.makeSessionSettings();
    this.credentials = new CredentialStore(credentialOptions(config));
    this.pools = new Pools(
      (key) => this.poolSettings(key),
      (key) => this.openServer(key, new Map()),
    );
    // Health checks log in as pgmux does for clients; a node that cannot be reached sends its clients to the primary.
    this.registry.useServers(this.pools);
    const cancels = new CancelRegistry({ config: () => this.config, log: this.log, link: this.link });
    this.ctx = {
      settings: () => this.sessionSettings,
      endpoints: () => this.registry.endpoints(),
      pools: this.pools,
      credentials: this.credentials,
      cancels,
      mockSecret: randomBytes(32),
      log: this.log,
      stats: { authSuccesses: 0, authFailures: 0, queries: 0, transactions: 0, bytesIn: 0, bytesOut: 0, preparedHits: 0, preparedMisses: 0 },
      openServer: (key, settings) => this.openServer(key, settings),
      authQueryPlace: (endpoint, node, database) => this.authQueryPlace(endpoint, node, database),
      loginRefusal: (session) => {
        const name = [session.database, session.endpointName].find((n) => this.disabled.has(n));
        // PgBouncer's words; PostgreSQL's code for a database not accepting connections.
        return name === undefined ? null : new PgError(SqlState.OBJECT_NOT_IN_PREREQUISITE_STATE, `database "${name}" is disabled`);
      },
      admitClient: (session) => {
        const limit = this.clientLimitReached(session);
        if (limit !== null || this.clientCount === null) {
          if (limit === null) this.admitted.add(session);
          return limit;
        }
        // Workers > 1: the supervisor counts every worker's clients.
        const count = this.clientCount;
        return count.admit(session, this.config).then((global) => {
          if (global !== null) return global;
          if (this.sessions.has(session)) this.admitted.add(session);
          else count.leave(session);
          return null;
        });
      },
      authFailures: this.failureLimiter(config.auth_failure_limit),
      clientGone: (session) => {
        this.sessions.delete(session);
        if (this.admitted.delete(session)) this.clientCount?.leave(session);
      },
      routerFor: (endpoint) => this.registry.router(endpoint),
      resolveEndpoint: (name) => this.registry.resolve(name),
      clientTls: () => this.clientTls!,
      admin: () => ({ backend: this.adminBackend, admins: listOf(this.config.admin_users), statsUsers: listOf(this.config.stats_users) }),
      statementIds: new StatementIds(),
    };
    this.adminBackend = adminBackend(this, () => this.reloadSource(), (mode) => this.onShutdown(mode));
    // Accepted paused, so each connection's reads can move to a buffer of its own.
    this.listeners = new Listeners((accepted, unixSocket) => {
      const session = new ClientSession(ownReads(accepted), this.ctx, {
        loginTimeoutMs: s(this.config.client_login_timeout),
        databaseStats: this.databaseStats,
        unixSocket,
      });
      this.sessions.add(session);
    });
  }

  /** log_stats: each stats_period, the averages of every database together, in PgBouncer's words. */
  private logStats(): void {
    if (!this.config.log_stats) return;
    const a = this.databaseStats.overall();
    this.log.info({ xacts: a.xacts, queries: a.queries, received: a.received, sent: a.sent, xactUs: a.xactTimeUs, queryUs: a.queryTimeUs, waitUs: a.waitTimeUs }, statsLine(a));
  }

  /** Each database's counters, with what its connected clients have sent and received so far. */
  private databaseTotals(counters: ReadonlyMap<string, DatabaseTotals>): Map<string, DatabaseTotals> {
    const out = new Map<string, DatabaseTotals>();
    for (const [db, c] of counters) out.set(db, { ...c });
    for (const session of this.sessions) {
      const c = session.counters;
      if (c === null) continue;
      let t = out.get(c.database);
      if (t === undefined) out.set(c.database, (t = zeroTotals()));
      t.received += session.socket.bytesRead;
      t.sent += session.socket.bytesWritten;
    }
    return out;
  }

  private makeSessionSettings(): SessionSettings {
    const c = this.config;
    return {
      authType: c.auth_type,
      hbaRules: this.hbaRules,
      maxPacketSize: c.max_packet_size,
      defaultEndpoint: c.default_endpoint,
      queryTimeoutMs: Math.max(s(c.server_connect_timeout), 5000),
      poolModeFor: (endpoint, user) =>
        (c.users[user]?.pool_mode ?? c.endpoints[endpoint]?.pool_mode ?? c.pool_mode) as PoolMode,
      forcedUserFor: (endpoint) => c.endpoints[endpoint]?.user,
      maxPreparedStatements: c.max_prepared_statements,
      onSessionState: c.on_session_state,
      ignoredStartupParameters: new Set(
        c.ignore_startup_parameters
          .split(',')
          .map((n) => n.trim().toLowerCase())
          .filter((n) => n !== ''),
      ),
      extraTracked: new Set(
        c.track_extra_parameters
          .split(',')
          .map((n) => n.trim().toLowerCase())
          .filter((n) => n !== ''),
      ),
      noticePerNodeStatement: c.notice_per_node_statement,
      // As PgBouncer: client_idle_timeout is that of the user the client logs in as, the others that of the user its server connections log in as.
      clientTimeouts: (clientUser, serverUser) => {
        const client = c.users[clientUser];
        const server = c.users[serverUser];
        return {
          clientIdleMs: s(client?.client_idle_timeout ?? c.client_idle_timeout),
          idleTransactionMs: s(server?.idle_transaction_timeout ?? c.idle_transaction_timeout),
          queryMs: s(server?.query_timeout ?? c.query_timeout),
          transactionMs: s(server?.transaction_timeout ?? c.transaction_timeout),
        };
      },
      logConnections: c.log_connections,
      logDisconnections: c.log_disconnections,
      logPoolerErrors: c.log_pooler_errors,
      sniDomains: c.sni_domain
        .split(',')
        .map((d) => d.trim().toLowerCase())
        .filter((d) => d !== ''),
    };
  }

  /**
   * The client-side limit a new client would go over, in PgBouncer's order:
   * max_client_conn, max_db_client_connections (the database it asked
   * for), max_user_client_connections (the user it logs in as); or null.
   */
  private clientLimitReached(session: ClientSession): string | null {
    const c = this.config;
    if (this.admitted.size >= c.max_client_conn) return 'max_client_conn';
    const count = (same: (s: ClientSession) => boolean) => {
      let n = 0;
      for (const s of this.admitted) if (same(s)) n++;
      return n;
    };
    const perDb = c.endpoints[session.endpointName]?.max_db_client_connections ?? c.max_db_client_connections;
    if (perDb > 0 && count((s) => s.endpointName === session.endpointName && s.database === session.database) >= perDb) return 'max_db_client_connections';
    const perUser = c.users[session.user]?.max_user_client_conn ?? c.max_user_client_conn;
    if (perUser > 0 && count((s) => s.user === session.user) >= perUser) return 'max_user_client_connections';
    return null;
  }

  /** Limits pools share (max_db_connections, max_user_connections), and who keeps min_pool_size. */
  readonly sharedLimits = new SharedLimits(
    () => this.pools.all(),
    (pool) => this.poolInUse(pool),
  );
  /** What a pool asks before it opens a connection: a worker of several also asks the supervisor (set before start). */
  poolLimits: PoolLimits = this.sharedLimits;
  /** Workers > 1: the count of clients kept with the other workers (max_client_conn, max_user_client_conn); set before start. */
  clientCount: ClientCount | null = null;
  /** Where failed logins are counted (auth_failure_limit); a worker of several tells the others too. */
  failureLimiter: (limit: number) => FailureLimiter = (limit) => new FailureLimiter(limit);

  /** min_pool_size applies to a pool of an endpoint with a forced user, and to one a logged-in client uses. */
  private poolInUse(pool: Pool): boolean {
    const [endpoint, database, user] = pool.key.split('\0');
    if (this.config.endpoints[endpoint]?.user === user) return true;
    for (const s of this.admitted) {
      const k = s.poolKey;
      if (k !== null && k.endpoint === endpoint && k.database === database && k.user === user) return true;
    }
    return false;
  }

  /**
   * The pools min_pool_size fills before any client comes: those of
   * endpoints with a forced user, on their primary, keyed as a client that
   * names the endpoint as its database is.
   */
  private openForcedUserPools(): void {
    const c = this.config;
    for (const [name, ep] of Object.entries(c.endpoints)) {
      if (ep.user === undefined || (ep.min_pool_size ?? c.min_pool_size) <= 0) continue;
      const endpoint = this.registry.find(name);
      if (endpoint === undefined) continue;
      const key = { endpoint: name, database: endpoint.nodes[0].database ?? name, user: ep.user, node: this.registry.router(name).primaryNode(), entry: name };
      this.pools.get(key);
    }
  }

  /**
   * Where auth_query runs for a login to `endpoint` (undefined: the admin
   * console): the endpoint's auth_user and auth_query, else the global
   * ones; on the primary `node` in `database`, unless auth_dbname names
   * an endpoint (its primary and database) or, with default_endpoint, a
   * database of that endpoint, as PgBouncer's `*` entry would serve it.
   */
  private authQueryPlace(endpoint: string | undefined, node: NodeAddress, database: string): AuthQueryPlace {
    const c = this.config;
    const ep = endpoint === undefined ? undefined : c.endpoints[endpoint];
    const place: AuthQueryPlace = { node, database, authUser: ep?.auth_user ?? c.auth_user, authQuery: ep?.auth_query ?? c.auth_query };
    const dbname = ep?.auth_dbname ?? c.auth_dbname;
    if (dbname === undefined) return place;
    const named = this.registry.find(dbname);
    if (named !== undefined) return { ...place, node: named.nodes[0], database: named.nodes[0].database ?? dbname };
    const fallback = c.default_endpoint === undefined ? undefined : this.registry.find(c.default_endpoint);
    if (fallback !== undefined) return { ...place, node: fallback.nodes[0], database: dbname };
    throw new PgError(SqlState.INVALID_CATALOG_NAME, `authentication database "${dbname}" is not configured`);
  }

  private poolSettings(key: PoolKey): PoolSettings {
    const c = this.config;
    const ep = c.endpoints[key.endpoint];
    const user = c.users[key.user];
    return {
      minSize: ep?.min_pool_size ?? c.min_pool_size,
      reserveSize: user?.reserve_pool_size ?? ep?.reserve_pool_size ?? c.reserve_pool_size,
      reserveTimeoutMs: s(c.reserve_pool_timeout),
      maxDbConnections: ep?.max_db_connections ?? c.max_db_connections,
      maxUserConnections: user?.max_user_connections ?? c.max_user_connections,
      limits: this.poolLimits,
      size: c.users[key.user]?.default_pool_size ?? c.endpoints[key.endpoint]?.default_pool_size ?? c.default_pool_size,
      queryWaitTimeoutMs: s(user?.query_wait_timeout ?? ep?.query_wait_timeout ?? c.query_wait_timeout),
      serverIdleTimeoutMs: s(c.server_idle_timeout),
      serverLifetimeMs: s(ep?.server_lifetime ?? c.server_lifetime),
      resetQuery: c.server_reset_query,
      checkDelayMs: s(c.server_check_delay),
      checkQuery: c.server_check_query,
      queryTimeoutMs: Math.max(s(c.server_connect_timeout), 5000),
    };
  }

  /** Logs in to the endpoint's primary as the key's user. */
  private async openServer(key: PoolKey, settings: ReadonlyMap<string, string>): Promise<ServerConnection> {
    const endpoint = this.registry.find(key.endpoint);
    if (endpoint === undefined) throw new PgError(SqlState.INVALID_CATALOG_NAME, `endpoint "${key.endpoint}" does not exist`);
    const node = endpoint.nodes[key.node ?? 0];
    if (node === undefined) throw new PgError(SqlState.CONNECTION_FAILURE, `endpoint "${key.endpoint}" has no node ${key.node}`);
    // A forced user's password is the whole truth; otherwise whatever pgmux knows of the user.
    const ep = this.config.endpoints[key.endpoint];
    const secret =
      ep?.user === key.user && ep.password !== undefined
        ? { password: ep.password }
        : this.credentials.serverSecret(key.user, await this.credentials.lookup(key.user, this.authQueryPlace(key.endpoint, endpoint.nodes[0], key.database)));
    let login;
    let at: HostAddress;
    try {
      // A node with a host list: its load_balance_hosts chooses the host.
      ({ value: login, at } = await this.hostChoice.connect(node, (h) =>
        loginToServer({
          host: h.host,
          port: h.port,
          user: key.user,
          database: key.database,
          params: settings,
          secret,
          connectTimeoutMs: s(this.config.server_connect_timeout),
          tls: { sslmode: this.config.endpoints[key.endpoint]?.server_tls_sslmode ?? this.config.server_tls_sslmode, ca: this.serverCa },
        }),
      ));
    } catch (err) {
      if (err instanceof PgError && err.code.startsWith('08')) this.registry.connectFailed(key.endpoint);
      throw err;
    }
    this.servedDatabases.add(key.entry ?? key.database);
    // `serverPid`: the line already carries pgmux's own `pid`.
    this.log.debug({ endpoint: key.endpoint, database: key.database, user: key.user, serverPid: login.processId }, 'server connection opened');
    const conn = new ServerConnection(login, at.host, at.port);
    conn.node = key.node ?? 0;
    const connectQuery = this.config.endpoints[key.endpoint]?.connect_query;
    if (connectQuery !== undefined && connectQuery !== '') await this.runConnectQuery(conn, key, connectQuery);
    return conn;
  }

  /**
   * connect_query, once on each new server connection before any client
   * gets it. Its errors are logged and otherwise ignored, as PgBouncer
   * does; a connection it leaves inside a transaction block is closed
   * instead of lent.
   */
  private async runConnectQuery(conn: ServerConnection, key: PoolKey, sql: string): Promise<void> {
    const r = await conn.runQuery(sql, Math.max(s(this.config.server_connect_timeout), 5000));
    if (r.error !== null) this.log.warn({ endpoint: key.endpoint, database: key.database, user: key.user, err: r.error.message }, 'connect_query failed');
    if (r.status !== 0x49 /* I */) {
      conn.close();
      throw new PgError(SqlState.CONNECTION_FAILURE, `connect_query of endpoint "${key.endpoint}" left the server connection inside a transaction block`);
    }
  }

  async start(): Promise<{ host: string; port: number }> {
    const c = this.config;
    this.hbaRules = c.auth_type === 'hba' ? loadHba(c.auth_hba_file!) : [];
    this.sessionSettings = this.makeSessionSettings();
    const [clientTls, serverCa] = await Promise.all([
      ClientTls.load(c.client_tls_sslmode, c.client_tls_cert_file, c.client_tls_key_file),
      c.server_tls_ca_file === undefined ? undefined : readFile(c.server_tls_ca_file),
      this.credentials.load(),
      // The parser is only needed by the message-level loop; session pooling
      // on single nodes never loads it (it costs memory).
      needsClassifier(c) ? loadClassifier() : undefined,
    ]);
    this.clientTls = clientTls;
    this.serverCa = serverCa;
    await this.registry.start();
    this.openForcedUserPools();
    const listening = await this.listeners.open({
      listen: c.listen,
      unixSocketDir: c.unix_socket_dir,
      unixSocketMode: c.unix_socket_mode,
      unixSocketGroup: c.unix_socket_group,
      reusePort: c.so_reuseport,
    });
    if (c.metrics_listen !== undefined) {
      // prom-client is loaded only when metrics are served.
      const { startMetricsServer } = await import('./metrics/metrics.ts');
      this.metricsServer = await startMetricsServer(c.metrics_listen, this);
    }
    this.databaseStats.start();
    listenForSignals(this);
    this.ready = true;
    const addr = listening.tcp[0];
    const metrics = this.metricsAddress();
    this.log.info(
      {
        host: addr.host,
        port: addr.port,
        addresses: listening.tcp.length > 1 ? listening.tcp.map((a) => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`)) : undefined,
        unixSocket: listening.unixSocket === null ? undefined : shownPath(listening.unixSocket),
        endpoints: [...this.registry.endpoints().keys()],
        metrics: metrics === null ? undefined : `${metrics.host}:${metrics.port}`,
      },
      'listening',
    );
    return { host: addr.host, port: addr.port };
  }

  /** Every address and the Unix-domain socket pgmux listens on, once started. */
  listening(): Listening {
    return this.listeners.listening();
  }

  get currentConfig(): Config {
    return this.config;
  }

  /**
   * Takes a new configuration (SIGHUP, admin RELOAD). Everything that can
   * fail (files) is read first, so a bad configuration leaves the old one in
   * place. Endpoints: new ones appear, changed ones drain their old pools,
   * removed ones refuse new clients while current clients finish. Clients of
   * unchanged endpoints keep their connections. The listen address is not
   * changed by a reload.
   */
  async reload(config: Config): Promise<void> {
    // Read before anything changes: a bad file leaves the running rules in place.
    const hbaRules = config.auth_type === 'hba' ? loadHba(config.auth_hba_file!) : [];
    const [clientTls, serverCa] = await Promise.all([
      ClientTls.load(config.client_tls_sslmode, config.client_tls_cert_file, config.client_tls_key_file),
      config.server_tls_ca_file === undefined ? undefined : readFile(config.server_tls_ca_file),
      this.credentials.reconfigure(credentialOptions(config)),
    ]);
    const settings = configChanges(this.config, config);
    this.config = config;
    this.clientTls = clientTls;
    this.serverCa = serverCa;
    this.log.level = config.log_level;
    this.hbaRules = hbaRules;
    // A new limit starts counting afresh.
    if (Object.hasOwn(settings, 'auth_failure_limit')) this.ctx.authFailures = this.failureLimiter(config.auth_failure_limit);
    this.sessionSettings = this.makeSessionSettings();
    for (const session of this.sessions) session.settingsChanged();
    this.databaseStats.setPeriod(s(config.stats_period));
    const { added, changed, removed } = await this.registry.reload(config);
    for (const name of [...changed, ...removed]) this.pools.drain(name);
    this.pools.reconfigure();
    this.openForcedUserPools();
    this.log.info({ settings, added, changed, removed }, 'configuration reloaded');
  }

  /** SIGUSR1: PAUSE; SIGUSR2: RESUME; SIGQUIT: stop now (the CLI is told, so the process ends). */
  onSignal(signal: 'SIGUSR1' | 'SIGUSR2' | 'SIGQUIT'): void {
    switch (signal) {
      case 'SIGUSR1':
        this.log.info({ signal }, 'pausing every pool');
        this.pools.pause(undefined, s(this.config.shutdown_timeout)).then(
          () => this.log.info({ signal }, 'paused: no server connection in use'),
          (err: Error) => this.log.warn({ signal, err: err.message }, 'paused, with server connections still in use'),
        );
        return;
      case 'SIGUSR2':
        this.log.info({ signal }, 'resuming every pool');
        this.pools.resume();
        return;
      case 'SIGQUIT':
        this.log.info({ signal }, 'stopping now');
        this.onShutdown('now');
        // Also when a shutdown is already waiting, which the CLI would not cut short.
        void this.stop();
        return;
    }
  }

  /** Where /metrics is served, once started with metrics_listen. */
  metricsAddress(): { host: string; port: number } | null {
    const a = this.metricsServer?.address();
    return a && typeof a === 'object' ? { host: a.address, port: a.port } : null;
  }

  /**
   * The clients the admin console's `name` means: those that logged in
   * with that database name (`[databases]` entry) or to the endpoint of
   * that name; without a name, every client but the console's own.
   */
  clientsOf(name?: string): ClientSession[] {
    return [...this.sessions].filter((s) => s.endpointName !== ADMIN_ENDPOINT && s.endpointName !== '' && (name === undefined || s.database === name || s.endpointName === name));
  }

  /**
   * KILL [name]: ends every client of the database (or of all) at once and
   * closes its server connections; as in PgBouncer, the database stays
   * paused, so new clients wait, until RESUME.
   */
  kill(name?: string): void {
    // Each database, as PgBouncer's KILL marks each paused: not a PAUSE of everything.
    const names = name !== undefined ? [name] : new Set([...this.registry.endpoints().keys(), ...this.servedDatabases, ...this.clientsOf().map((c) => c.database), ...this.pools.all().map((p) => p.where.entry)]);
    for (const n of names) this.pools.hold(n);
    const err = new PgError(SqlState.ADMIN_SHUTDOWN, name === undefined ? 'terminating connection: killed by the admin console' : `terminating connection: database "${name}" killed by the admin console`);
    for (const s of this.clientsOf(name)) s.fatal(err);
    this.reconnect(name);
  }

  /** RECONNECT [name]: server connections of the database (or all) are replaced as they come free. */
  reconnect(name?: string): void {
    for (const p of this.pools.all()) if (Pools.matches(p, name)) this.pools.drainPool(p);
  }

  /**
   * Graceful stop: no new clients, then wait — for every client to leave
   * (`clients`: SIGTERM, SHUTDOWN WAIT_FOR_CLIENTS) or only for the
   * transactions and statements under way (`transactions`: SIGINT,
   * SHUTDOWN WAIT_FOR_SERVERS; a client idle in a transaction is waited
   * for) — at most shutdown_timeout, then stop(). A SIGTERM meanwhile
   * stops at once, as a second SIGTERM does PgBouncer; one that comes
   * within a second of the start is the same request told twice (systemd
   * signals every process of a service, and bin/pgmux.js passes its own on).
   */
  async shutdown(wait: 'clients' | 'transactions'): Promise<void> {
    this.ready = false;
    void this.listeners.close();
    const deadline = Date.now() + s(this.config.shutdown_timeout);
    const busy = () => (wait === 'clients' ? this.sessions.size > 0 : [...this.sessions].some((x) => x.inTransaction()));
    const now = () => {
      this.log.info({ signal: 'SIGTERM' }, 'stopping now');
      void this.stop();
    };
    const arm = setTimeout(() => process.once('SIGTERM', now), SAME_SIGNAL_MS);
    try {
      while (busy() && Date.now() < deadline && this.stopped === null) await new Promise((r) => setTimeout(r, 100));
    } finally {
      clearTimeout(arm);
      process.off('SIGTERM', now);
    }
    await this.stop();
  }

  /** The stop under way, once stop() has been called: later calls wait for the same. */
  private stopped: Promise<void> | null = null;

  /** Stops accepting, ends every client and closes every server connection. */
  stop(): Promise<void> {
    this.stopped ??= this.stopNow();
    return this.stopped;
  }

  private async stopNow(): Promise<void> {
    running.delete(this);
    if (running.size === 0) process.off('SIGQUIT', onQuit);
    // close() stops accepting at once but calls back only when every
    // connection has ended, which the sessions below see to.
    this.ready = false;
    this.metricsServer?.close();
    this.databaseStats.stop();
    const closed = this.listeners.close();
    const err = new PgError(SqlState.ADMIN_SHUTDOWN, 'pgmux is shutting down');
    for (const session of this.sessions) session.fatal(err);
    await closed;
    this.registry.stop();
    await this.ctx.cancels.close();
    this.pools.close(err);
    // Server connections released by the sessions above are reset first;
    // give them a moment, then close what is left.
    await new Promise((r) => setTimeout(r, 50));
    this.pools.close(err);
  }
}
