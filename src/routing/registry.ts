import { loadPg } from '../lazy.ts';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { EndpointRouter } from '../session/context.ts';
import { FunctionVolatility } from '../sql/volatility.ts';
import { ControlPlane } from './control-plane.ts';
import { parseNodeUrl, type Endpoint } from './endpoint.ts';
import { NodeMonitor } from './node-monitor.ts';
import { ReplicaRouter, type VolatilitySource } from './router.ts';

const s = (seconds: number) => Math.round(seconds * 1000);

/** One node, the primary, for everything. */
const SINGLE_NODE: EndpointRouter = { spreadsReads: false, primaryNode: () => 0, route: () => 0 };

/** Without a user to read pg_proc with, every function counts as VOLATILE. */
const NO_CATALOG: VolatilitySource = { cached: () => false, allReadOnly: async () => false };

interface Known {
  endpoint: Endpoint;
  /** Node URLs and weights, to notice a change on reload. */
  signature: string;
  router: EndpointRouter;
  monitor: NodeMonitor | null;
}

/**
 * Every endpoint pgmux can route to: those configured, those a control
 * plane returned, and those removed by a reload while clients still use
 * them (retired: found for existing clients, refused to new ones). Each
 * endpoint with replicas gets a node monitor and a router.
 */
export class EndpointRegistry {
  private config: Config;
  private readonly log: Logger;
  private readonly configured = new Map<string, Known>();
  private readonly dynamic = new Map<string, Known>();
  private readonly retired = new Map<string, Known>();
  private controlPlane: ControlPlane | null = null;
  private started = false;

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
    if (this.started) await k.monitor?.start();
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
    for (const [name, k] of [...this.configured, ...this.dynamic]) if (k.monitor !== null) out.set(name, k.monitor);
    return out;
  }

  /** Connecting to a node of `name` failed: a control-plane answer may be stale. */
  connectFailed(name: string): void {
    if (this.dynamic.has(name)) this.controlPlane?.invalidate(name);
  }

  async start(): Promise<void> {
    this.started = true;
    await Promise.all([...this.configured.values()].map((k) => k.monitor?.start()));
  }

  stop(): void {
    for (const k of [...this.configured.values(), ...this.dynamic.values(), ...this.retired.values()]) k.monitor?.stop();
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
      await k.monitor?.start();
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

  private make(name: string, urls: string[], weights: number[] | undefined, loadBalanceOverride: Config['load_balance'] | undefined): Known {
    const c = this.config;
    const endpoint: Endpoint = { name, nodes: urls.map(parseNodeUrl) };
    const signature = signatureOf(urls, weights, loadBalanceOverride);
    const loadBalance = loadBalanceOverride ?? c.load_balance;
    if (urls.length < 2 || loadBalance === 'off') return { endpoint, signature, router: SINGLE_NODE, monitor: null };
    const checkUser = c.health_check_user ?? c.auth_user;
    const login = checkUser === undefined ? null : { user: checkUser, password: c.users[checkUser]?.password };
    const log = this.log.child({ endpoint: name });
    const monitor = new NodeMonitor(
      endpoint.nodes.map((n, i) => ({ host: n.host, port: n.port, weight: weights?.[i] ?? 1 })),
      {
        login,
        healthCheckPeriodMs: s(c.health_check_period),
        healthCheckTimeoutMs: s(c.health_check_timeout),
        maxRetries: c.health_check_max_retries,
        replicationCheckPeriodMs: s(c.replication_check_period),
        maxReplicaLagMs: s(c.max_replica_lag),
        log,
      },
    );
    const volatility = new Map<string, VolatilitySource>();
    const volatilityFor = (database: string): VolatilitySource => {
      let v = volatility.get(database);
      if (v === undefined) {
        v = login === null ? NO_CATALOG : new FunctionVolatility((sql, params) => catalogQuery(endpoint, monitor, login, database, sql, params));
        volatility.set(database, v);
      }
      return v;
    };
    const router = new ReplicaRouter(monitor, volatilityFor, {
      loadBalance,
      readYourWrites: c.read_your_writes === 'lsn',
      logPerNodeStatement: c.log_per_node_statement,
      noticePerNodeStatement: c.notice_per_node_statement,
      log,
    });
    return { endpoint, signature, router, monitor };
  }
}

function signatureOf(urls: string[], weights: number[] | undefined, loadBalance: string | undefined): string {
  return JSON.stringify([urls, weights ?? null, loadBalance ?? null]);
}

/** One catalog query on the endpoint's current primary, as the health-check user. */
async function catalogQuery(
  endpoint: Endpoint,
  monitor: NodeMonitor,
  login: { user: string; password?: string },
  database: string,
  sql: string,
  params: unknown[],
): Promise<Record<string, unknown>[]> {
  const node = endpoint.nodes[monitor.primaryIndex()];
  const { Client } = await loadPg();
  const client = new Client({ host: node.host, port: node.port, user: login.user, password: login.password, database });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query(sql, params)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}
