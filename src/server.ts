import net from 'node:net';
import { randomBytes } from 'node:crypto';
import pino, { type Logger } from 'pino';
import type { Config } from './config/schema.ts';
import { CredentialStore } from './auth/credential-store.ts';
import { loginToServer } from './auth/server-login.ts';
import { ServerConnection } from './pool/server-connection.ts';
import { Pools, type PoolKey } from './pool/pools.ts';
import type { PoolSettings } from './pool/pool.ts';
import { parseNodeUrl, type Endpoint } from './routing/endpoint.ts';
import { CancelRegistry } from './session/cancel-registry.ts';
import { ClientSession } from './session/client-session.ts';
import type { PoolMode, SessionContext, SessionSettings } from './session/context.ts';
import { PgError, SqlState } from './protocol/errors.ts';
import { loadClassifier } from './sql/classify.ts';
import { StatementIds } from './session/statements.ts';
import { NodeMonitor } from './routing/node-monitor.ts';
import { ReplicaRouter, type VolatilitySource } from './routing/router.ts';
import { FunctionVolatility } from './sql/volatility.ts';
import pg from 'pg';
import type { EndpointRouter } from './session/context.ts';

/** Without a user to read pg_proc with, every function counts as VOLATILE. */
const NO_CATALOG: VolatilitySource = { cached: () => false, allReadOnly: async () => false };

/** One node, the primary, for everything. */
const SINGLE_NODE: EndpointRouter = { spreadsReads: false, primaryNode: () => 0, route: () => 0 };

/** Parses "host:port" or "[v6]:port". */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen.trim());
  if (m === null) throw new Error(`listen: expected host:port, got "${listen}"`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port: Number(m[3]) };
}

export function endpointsFromConfig(config: Config): Map<string, Endpoint> {
  const out = new Map<string, Endpoint>();
  for (const [name, ep] of Object.entries(config.endpoints)) {
    out.set(name, { name, nodes: ep.nodes.map(parseNodeUrl) });
  }
  return out;
}

const s = (seconds: number) => Math.round(seconds * 1000);

/**
 * One running pgmux: the listener and everything a client session needs.
 */
export class PgmuxServer {
  private config: Config;
  readonly log: Logger;
  private readonly listener: net.Server;
  private endpointMap: Map<string, Endpoint>;
  readonly pools: Pools;
  readonly credentials: CredentialStore;
  readonly sessions = new Set<ClientSession>();
  /** Clients counted against max_client_conn. */
  private readonly admitted = new Set<ClientSession>();
  private sessionSettings: SessionSettings;
  readonly ctx: SessionContext;
  /** Routers of endpoints with replicas, and the monitors behind them. */
  private readonly routers = new Map<string, EndpointRouter>();
  readonly monitors = new Map<string, NodeMonitor>();

  constructor(config: Config, opts: { logger?: Logger } = {}) {
    this.config = config;
    this.log = opts.logger ?? pino({ level: config.log_level });
    this.endpointMap = endpointsFromConfig(config);
    this.sessionSettings = this.makeSessionSettings();
    this.credentials = new CredentialStore({
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
    });
    this.pools = new Pools(
      (key) => this.poolSettings(key),
      (key) => this.openServer(key, new Map()),
    );
    const cancels = new CancelRegistry();
    this.ctx = {
      settings: () => this.sessionSettings,
      endpoints: () => this.endpointMap,
      pools: this.pools,
      credentials: this.credentials,
      cancels,
      mockSecret: randomBytes(32),
      log: this.log,
      stats: { authSuccesses: 0, authFailures: 0 },
      openServer: (key, settings) => this.openServer(key, settings),
      admitClient: (session) => {
        if (this.admitted.size >= this.config.max_client_conn) return false;
        this.admitted.add(session);
        return true;
      },
      clientGone: (session) => {
        this.sessions.delete(session);
        this.admitted.delete(session);
      },
      routerFor: (endpoint) => this.routers.get(endpoint) ?? SINGLE_NODE,
      statementIds: new StatementIds(),
    };
    this.makeRouters();
    this.listener = net.createServer({ noDelay: true }, (socket) => {
      const session = new ClientSession(socket, this.ctx);
      this.sessions.add(session);
    });
  }

  /** A monitor and router per endpoint that has replicas and balances reads. */
  private makeRouters(): void {
    const c = this.config;
    const checkUser = c.health_check_user ?? c.auth_user;
    const login = checkUser === undefined ? null : { user: checkUser, password: c.users[checkUser]?.password };
    for (const [name, ep] of Object.entries(c.endpoints)) {
      const loadBalance = ep.load_balance ?? c.load_balance;
      if (ep.nodes.length < 2 || loadBalance === 'off') continue;
      const nodes = this.endpointMap.get(name)!.nodes;
      const monitor = new NodeMonitor(
        nodes.map((n, i) => ({ host: n.host, port: n.port, weight: ep.weights?.[i] ?? 1 })),
        {
          login,
          healthCheckPeriodMs: s(c.health_check_period),
          healthCheckTimeoutMs: s(c.health_check_timeout),
          maxRetries: c.health_check_max_retries,
          replicationCheckPeriodMs: s(c.replication_check_period),
          maxReplicaLagMs: s(c.max_replica_lag),
          log: this.log.child({ endpoint: name }),
        },
      );
      const volatility = new Map<string, VolatilitySource>();
      const volatilityFor = (database: string): VolatilitySource => {
        let v = volatility.get(database);
        if (v === undefined) {
          v = login === null ? NO_CATALOG : new FunctionVolatility((sql, params) => this.catalogQuery(monitor, nodes, login, database, sql, params));
          volatility.set(database, v);
        }
        return v;
      };
      this.monitors.set(name, monitor);
      this.routers.set(
        name,
        new ReplicaRouter(monitor, volatilityFor, {
          loadBalance,
          readYourWrites: c.read_your_writes === 'lsn',
          logPerNodeStatement: c.log_per_node_statement,
          noticePerNodeStatement: c.notice_per_node_statement,
          log: this.log.child({ endpoint: name }),
        }),
      );
    }
  }

  /** One catalog query on the endpoint's current primary, as the health-check user. */
  private async catalogQuery(
    monitor: NodeMonitor,
    nodes: readonly { host: string; port: number }[],
    login: { user: string; password?: string },
    database: string,
    sql: string,
    params: unknown[],
  ): Promise<Record<string, unknown>[]> {
    const node = nodes[monitor.primaryIndex()];
    const client = new pg.Client({ host: node.host, port: node.port, user: login.user, password: login.password, database });
    client.on('error', () => {});
    await client.connect();
    try {
      return (await client.query(sql, params)).rows;
    } finally {
      await client.end().catch(() => {});
    }
  }

  private makeSessionSettings(): SessionSettings {
    const c = this.config;
    return {
      authType: c.auth_type,
      maxPacketSize: c.max_packet_size,
      defaultEndpoint: c.default_endpoint,
      queryTimeoutMs: Math.max(s(c.server_connect_timeout), 5000),
      poolModeFor: (endpoint, user) =>
        (c.users[user]?.pool_mode ?? c.endpoints[endpoint]?.pool_mode ?? c.pool_mode) as PoolMode,
      maxPreparedStatements: c.max_prepared_statements,
      onSessionState: c.on_session_state,
      extraTracked: new Set(
        c.track_extra_parameters
          .split(',')
          .map((n) => n.trim().toLowerCase())
          .filter((n) => n !== ''),
      ),
      noticePerNodeStatement: c.notice_per_node_statement,
    };
  }

  private poolSettings(key: PoolKey): PoolSettings {
    const c = this.config;
    return {
      size: c.users[key.user]?.default_pool_size ?? c.endpoints[key.endpoint]?.default_pool_size ?? c.default_pool_size,
      queryWaitTimeoutMs: s(c.query_wait_timeout),
      serverIdleTimeoutMs: s(c.server_idle_timeout),
      serverLifetimeMs: s(c.server_lifetime),
      resetQuery: c.server_reset_query,
      queryTimeoutMs: Math.max(s(c.server_connect_timeout), 5000),
    };
  }

  /** Logs in to the endpoint's primary as the key's user. */
  private async openServer(key: PoolKey, settings: ReadonlyMap<string, string>): Promise<ServerConnection> {
    const endpoint = this.endpointMap.get(key.endpoint);
    if (endpoint === undefined) throw new PgError(SqlState.INVALID_CATALOG_NAME, `endpoint "${key.endpoint}" does not exist`);
    const node = endpoint.nodes[key.node ?? 0];
    if (node === undefined) throw new PgError(SqlState.CONNECTION_FAILURE, `endpoint "${key.endpoint}" has no node ${key.node}`);
    const credential = await this.credentials.lookup(key.user, node, key.database);
    const login = await loginToServer({
      host: node.host,
      port: node.port,
      user: key.user,
      database: key.database,
      params: settings,
      secret: this.credentials.serverSecret(key.user, credential),
      connectTimeoutMs: s(this.config.server_connect_timeout),
    });
    this.log.debug({ endpoint: key.endpoint, database: key.database, user: key.user, pid: login.processId }, 'server connection opened');
    const conn = new ServerConnection(login, node.host, node.port);
    conn.node = key.node ?? 0;
    return conn;
  }

  async start(): Promise<{ host: string; port: number }> {
    await Promise.all([this.credentials.load(), loadClassifier()]);
    await Promise.all([...this.monitors.values()].map((m) => m.start()));
    const { host, port } = parseListen(this.config.listen);
    await new Promise<void>((resolve, reject) => {
      this.listener.once('error', reject);
      this.listener.listen({ host, port }, () => {
        this.listener.off('error', reject);
        resolve();
      });
    });
    const addr = this.listener.address() as net.AddressInfo;
    this.log.info({ host: addr.address, port: addr.port, endpoints: [...this.endpointMap.keys()] }, 'listening');
    return { host: addr.address, port: addr.port };
  }

  /** Stops accepting, ends every client and closes every server connection. */
  async stop(): Promise<void> {
    // close() stops accepting at once but calls back only when every
    // connection has ended, which the sessions below see to.
    const closed = new Promise<void>((resolve) => this.listener.close(() => resolve()));
    const err = new PgError(SqlState.ADMIN_SHUTDOWN, 'pgmux is shutting down');
    for (const session of this.sessions) session.fatal(err);
    await closed;
    for (const m of this.monitors.values()) m.stop();
    this.pools.close(err);
    // Server connections released by the sessions above are reset first;
    // give them a moment, then close what is left.
    await new Promise((r) => setTimeout(r, 50));
    this.pools.close(err);
  }
}
