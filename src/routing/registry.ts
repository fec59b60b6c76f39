import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { EndpointRouter } from './route-types.ts';
import { FunctionVolatility } from '../sql/volatility.ts';
import { ControlPlane } from './control-plane.ts';
import { parseNodeUrl, type Endpoint } from './endpoint.ts';
import { NodeMonitor, type CheckSession } from './node-monitor.ts';
import { PrimaryRouter } from './primary-router.ts';
import { ReplicaRouter } from './router.ts';
import { inlineParams } from './sql-literal.ts';

const s = (seconds: number) => Math.round(seconds * 1000);

/** One node, the primary, for everything (an endpoint that is not known). */
const SINGLE_NODE: EndpointRouter = { spreadsReads: false, primaryNode: () => 0, route: () => 0 };

/**
 * How pgmux logs in to servers for clients (the pools): the health checks
 * and catalog look-ups log in the same way, and the pools ask where a
 * client goes when its node cannot be reached.
 */
export interface ServerSessions {
  open(key: { endpoint: string; database: string; user: string; node: number }): Promise<CheckSession>;
  /** Databases and users whose server logins to the endpoint succeeded, most recent first. */
  logins(endpoint: string): { database: string; user: string }[];
  /** Statements in flight on a node of an endpoint (the read balancer's measure of load). */
  busy(endpoint: string, node: number): number;
  failover: {
    unreachable(endpoint: string, node: number, err: Error): void;
    insteadOf(endpoint: string, node: number): number | null;
  } | null;
}

interface Known {
  endpoint: Endpoint;
  /** Node URLs and weights, to notice a change on reload. */
  signature: string;
  router: EndpointRouter;
  monitor: NodeMonitor;
}

/**
 * Every endpoint pgmux can route to: those configured, those a control
 * plane returned, and those removed by a reload while clients still use
 * them (retired: found for existing clients, refused to new ones). Each
 * endpoint gets a node monitor (which checks the nodes of those with
 * replicas) and a router.
 */
export class EndpointRegistry {
  private config: Config;
  private readonly log: Logger;
  private readonly configured = new Map<string, Known>();
  private readonly dynamic = new Map<string, Known>();
  private readonly retired = new Map<string, Known>();
  private controlPlane: ControlPlane | null = null;
  private started = false;
  private servers: ServerSessions | null = null;

  constructor(config: Config, log: Logger) {
    this.config = config;
    this.log = log;
    this.controlPlane = this.makeControlPlane();
    for (const [name, ep] of Object.entries(config.endpoints)) this.configured.set(name, this.make(name, ep.nodes, ep.weights, ep.load_balance));
  }

  /** Configured endpoints by name (what clients may name without the control plane). */
  endpoints(): ReadonlyMap<string, Endpoint> {
    const out = new Map<string, Endpoint>();
    for (const [name, k] of this.configured) out.set(name, k.endpoint);
    return out;
  }

  /** For new clients: a configured endpoint, else the control plane's answer. */
  async resolve(name: string): Promise<Endpoint | undefined> {
    const known = this.configured.get(name);
    if (known !== undefined) return known.endpoint;
    if (this.controlPlane === null) return undefined;
    const answer = await this.controlPlane.resolve(name);
    if (answer === null) return undefined;
    const signature = JSON.stringify([answer.nodes, answer.weights ?? null]);
    const had = this.dynamic.get(name);
    if (had !== undefined && had.signature === signature) return had.endpoint;
    if (had !== undefined) this.retire(name, had);
    const k = this.make(name, answer.nodes, answer.weights, undefined);
    this.dynamic.set(name, k);
    if (this.started) await k.monitor.start();
    return k.endpoint;
  }

  /** For clients already routed: the endpoint even if retired. */
  find(name: string): Endpoint | undefined {
    return (this.configured.get(name) ?? this.dynamic.get(name) ?? this.retired.get(name))?.endpoint;
  }

  router(name: string): EndpointRouter {
    return (this.configured.get(name) ?? this.dynamic.get(name) ?? this.retired.get(name))?.router ?? SINGLE_NODE;
  }

  monitors(): Map<string, NodeMonitor> {
    const out = new Map<string, NodeMonitor>();
    for (const [name, k] of [...this.configured, ...this.dynamic]) out.set(name, k.monitor);
    return out;
  }

  /** Connecting to a node of `name` failed: a control-plane answer may be stale. */
  connectFailed(name: string): void {
    if (this.dynamic.has(name)) this.controlPlane?.invalidate(name);
  }

  /**
   * Health checks and catalog look-ups log in through `servers` (as pgmux
   * logs in for clients), and clients of a node that cannot be reached are
   * sent to the primary. Before start().
   */
  useServers(servers: ServerSessions): void {
    this.servers = servers;
    servers.failover = {
      unreachable: (endpoint, node, err) => this.known(endpoint)?.monitor.unreachable(node, err),
      insteadOf: (endpoint, node) => {
        const primary = this.known(endpoint)?.monitor.primaryIndex() ?? 0;
        return node === primary ? null : primary;
      },
    };
  }

  private known(name: string): Known | undefined {
    return this.configured.get(name) ?? this.dynamic.get(name) ?? this.retired.get(name);
  }

  async start(): Promise<void> {
    this.started = true;
    await Promise.all([...this.configured.values()].map((k) => k.monitor.start()));
    for (const [name, k] of this.configured) {
      if (!k.monitor.checking) continue;
      if (this.servers === null) {
        this.log.warn({ endpoint: name }, 'endpoint has several nodes but no way to check them: a node that goes down stays in rotation, and roles and lag are not known');
      } else if (this.checkLogin(name) === null) {
        this.log.info({ endpoint: name }, 'health checks of the nodes start when the first client logs in, as that client\'s user');
      }
    }
  }

  stop(): void {
    for (const k of [...this.configured.values(), ...this.dynamic.values(), ...this.retired.values()]) k.monitor.stop();
  }

  /**
   * Applies a new configuration: new endpoints appear, changed ones get new
   * nodes (their old pools are drained by the caller), removed ones are
   * retired. Returns the names whose pools must drain.
   */
  async reload(config: Config): Promise<{ added: string[]; changed: string[]; removed: string[] }> {
    this.config = config;
    this.controlPlane = this.makeControlPlane();
    const added: string[] = [];
    const changed: string[] = [];
    const removed: string[] = [];
    for (const [name, ep] of Object.entries(config.endpoints)) {
      const had = this.configured.get(name);
      const next = signatureOf(ep.nodes, ep.weights, ep.load_balance);
      if (had !== undefined && had.signature === next) continue;
      if (had !== undefined) {
        this.retire(name, had);
        changed.push(name);
      } else added.push(name);
      const k = this.make(name, ep.nodes, ep.weights, ep.load_balance);
      this.configured.set(name, k);
      this.retired.delete(name);
      await k.monitor.start();
    }
    for (const [name, k] of [...this.configured]) {
      if (Object.hasOwn(config.endpoints, name)) continue;
      this.configured.delete(name);
      this.retire(name, k);
      removed.push(name);
    }
    return { added, changed, removed };
  }

  private retire(name: string, k: Known): void {
    this.retired.set(name, k);
  }

  private makeControlPlane(): ControlPlane | null {
    const c = this.config;
    if (c.control_plane_url === undefined) return null;
    return new ControlPlane({
      url: c.control_plane_url,
      cacheTtlMs: s(c.control_plane_cache_ttl),
      cacheSize: c.control_plane_cache_size,
      timeoutMs: s(c.control_plane_timeout),
      retries: c.control_plane_retries,
      log: this.log,
    });
  }

  /**
   * Whom checks and look-ups log in as: health_check_user (else auth_user)
   * to the database `postgres`, or else a user clients of the endpoint have
   * logged in as, to their database, with the credentials pgmux uses for
   * them. Null until one is known.
   */
  private checkLogin(name: string, database?: string): { user: string; database: string } | null {
    const c = this.config;
    const user = c.health_check_user ?? c.auth_user;
    if (user !== undefined) return { user, database: database ?? 'postgres' };
    const logins = this.servers?.logins(name) ?? [];
    return (database === undefined ? logins[0] : logins.find((l) => l.database === database)) ?? null;
  }

  private make(name: string, urls: string[], weights: number[] | undefined, loadBalanceOverride: Config['load_balance'] | undefined): Known {
    const c = this.config;
    const endpoint: Endpoint = { name, nodes: urls.map(parseNodeUrl) };
    const signature = signatureOf(urls, weights, loadBalanceOverride);
    const loadBalance = loadBalanceOverride ?? c.load_balance;
    const spreads = urls.length >= 2 && loadBalance !== 'off';
    const log = this.log.child({ endpoint: name });
    const nodes = endpoint.nodes.map((n, i) => ({ host: n.host, port: n.port, weight: weights?.[i] ?? 1 }));
    const traces = { logPerNodeStatement: c.log_per_node_statement, noticePerNodeStatement: c.notice_per_node_statement, log };
    // One node, or everything to the primary: nothing to check, but the
    // node's statements are still counted and traced.
    const monitor = new NodeMonitor(nodes, {
      connect: spreads ? (node) => this.openCheck(name, node) : null,
      checkUser: () => this.checkLogin(name)?.user ?? null,
      healthCheckPeriodMs: s(c.health_check_period),
      healthCheckTimeoutMs: s(c.health_check_timeout),
      maxRetries: c.health_check_max_retries,
      replicationCheckPeriodMs: s(c.replication_check_period),
      maxReplicaLagMs: s(c.max_replica_lag),
      log,
      busy: (node) => this.servers?.busy(name, node) ?? 0,
    });
    if (!spreads) return { endpoint, signature, router: new PrimaryRouter(monitor, traces), monitor };
    const volatility = new Map<string, FunctionVolatility>();
    const volatilityFor = (database: string): FunctionVolatility => {
      let v = volatility.get(database);
      if (v === undefined) {
        v = new FunctionVolatility((sql, params) => this.catalogQuery(name, monitor.primaryIndex(), database, sql, params));
        volatility.set(database, v);
      }
      return v;
    };
    const router = new ReplicaRouter(monitor, volatilityFor, { loadBalance, readYourWrites: c.read_your_writes === 'lsn', ...traces });
    return { endpoint, signature, router, monitor };
  }

  /** A health-check session on one node of `name`, or null while nobody to log in as is known. */
  private openCheck(name: string, node: number): Promise<CheckSession> | null {
    const login = this.checkLogin(name);
    if (login === null || this.servers === null) return null;
    return this.servers.open({ endpoint: name, node, ...login });
  }

  /**
   * One catalog query (function volatility) on the endpoint's primary, in
   * `database`. Without anyone to log in as, it fails and the statement
   * goes to the primary.
   */
  private async catalogQuery(name: string, primary: number, database: string, sql: string, params: unknown[]): Promise<Record<string, unknown>[]> {
    const login = this.checkLogin(name, database);
    if (login === null || this.servers === null) throw new Error(`nobody to read pg_proc as in database "${database}" yet`);
    const session = await this.servers.open({ endpoint: name, node: primary, ...login });
    try {
      // The simple query protocol has no parameters: they go in as literals.
      return await session.rows(inlineParams(sql, params), s(this.config.health_check_timeout));
    } finally {
      session.close();
    }
  }
}

function signatureOf(urls: string[], weights: number[] | undefined, loadBalance: string | undefined): string {
  return JSON.stringify([urls, weights ?? null, loadBalance ?? null]);
}
