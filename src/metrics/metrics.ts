import http from 'node:http';
import client from 'prom-client';
import type { PgmuxServer } from '../server.ts';
import { parseListen } from '../server.ts';

/** The link topic each worker answers with its own metrics (getMetricsAsJSON). */
export const METRICS_TOPIC = 'metrics:json';

/** One worker's metrics, as getMetricsAsJSON gives them and the link carries them. */
type MetricsJson = Awaited<ReturnType<client.Registry['getMetricsAsJSON']>>;

/**
 * Prometheus metrics. Gauges are read from the running pgmux when scraped
 * (nothing on the hot path); counters the hot path already keeps are
 * exposed as they are.
 */
export function makeRegistry(server: PgmuxServer): client.Registry {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'pgmux_' });
  // What a scrape shows once per worker: the process's own CPU, memory, event loop, ...
  const perProcess = new Set(registry.getMetricsAsArray().map((m) => (m as unknown as { name: string }).name));
  const st = server.ctx.stats;
  const gauge = (name: string, help: string, labelNames: string[], fill: (g: client.Gauge) => void, aggregator: client.Aggregator = 'sum') =>
    new client.Gauge({
      name,
      help,
      labelNames,
      aggregator,
      registers: [registry],
      collect() {
        this.reset();
        fill(this);
      },
    });
  const counter = (name: string, help: string, read: () => number) =>
    new client.Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  gauge('pgmux_clients', 'Logged-in clients, by endpoint and whether they hold a server connection', ['endpoint', 'state'], (g) => {
    for (const s of server.sessions) g.inc({ endpoint: s.endpointName || '(login)', state: s.server !== null ? 'active' : 'idle' });
  });
  gauge('pgmux_clients_waiting', 'Clients waiting for a server connection, by endpoint', ['endpoint'], (g) => {
    for (const p of server.pools.all()) g.inc({ endpoint: p.where.endpoint }, p.waitingCount);
  });
  gauge('pgmux_server_connections', 'Server connections, by endpoint, node and state', ['endpoint', 'node', 'state'], (g) => {
    for (const p of server.pools.all()) {
      const { endpoint } = p.where;
      const node = String(p.where.node);
      g.inc({ endpoint, node, state: 'active' }, p.activeCount);
      g.inc({ endpoint, node, state: 'idle' }, p.idleCount);
    }
  });
  // Each worker checks the nodes' health itself: a node is in rotation when every worker has it, its lag the largest any worker saw.
  gauge(
    'pgmux_node_up',
    'Whether a node is in rotation (1) or not (0)',
    ['endpoint', 'node', 'role'],
    (g) => {
      for (const [name, m] of server.registry.monitors()) for (const n of m.nodes()) g.set({ endpoint: name, node: String(n.index), role: n.role }, n.up ? 1 : 0);
    },
    'min',
  );
  gauge(
    'pgmux_node_lag_seconds',
    'Replication lag of a replica, in seconds',
    ['endpoint', 'node'],
    (g) => {
      for (const [name, m] of server.registry.monitors()) for (const n of m.nodes()) if (n.role === 'replica' && Number.isFinite(n.lagSeconds)) g.set({ endpoint: name, node: String(n.index) }, n.lagSeconds);
    },
    'max',
  );
  gauge(
    'pgmux_node_lag_bytes',
    'Replication lag of a replica, in bytes of WAL',
    ['endpoint', 'node'],
    (g) => {
      for (const [name, m] of server.registry.monitors()) for (const n of m.nodes()) if (n.role === 'replica') g.set({ endpoint: name, node: String(n.index) }, n.lagBytes);
    },
    'max',
  );
  gauge('pgmux_routed_statements', 'Batches routed to each node since start, by kind (read or write)', ['endpoint', 'node', 'kind'], (g) => {
    for (const [name, m] of server.registry.monitors()) {
      for (const n of m.nodes()) {
        g.set({ endpoint: name, node: String(n.index), kind: 'read' }, n.reads);
        g.set({ endpoint: name, node: String(n.index), kind: 'write' }, n.writes);
      }
    }
  });
  counter('pgmux_auth_successes_total', 'Client logins that succeeded', () => st.authSuccesses);
  counter('pgmux_auth_failures_total', 'Client logins refused for a wrong password or unknown user', () => st.authFailures);
  counter('pgmux_queries_total', 'ReadyForQuery messages clients received', () => st.queries);
  counter('pgmux_transactions_total', 'Transactions that ended (ReadyForQuery idle)', () => st.transactions);
  counter('pgmux_received_bytes_total', 'Bytes received from clients that have left', () => st.bytesIn);
  counter('pgmux_sent_bytes_total', 'Bytes sent to clients that have left', () => st.bytesOut);
  counter('pgmux_prepared_cache_hits_total', 'Prepared statements a server connection already had', () => st.preparedHits);
  counter('pgmux_prepared_cache_misses_total', 'Prepared statements pgmux had to prepare on a server connection', () => st.preparedMisses);
  counter('pgmux_pool_wait_timeouts_total', 'Clients that gave up waiting for a server connection', () => server.pools.all().reduce((a, p) => a + p.stats.waitTimeouts, 0));
  const waits = new client.Histogram({
    name: 'pgmux_pool_wait_seconds',
    help: 'How long clients waited for a server connection',
    buckets: [0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [registry],
  });
  server.pools.onWait = (seconds) => waits.observe(seconds);
  server.link.handle(METRICS_TOPIC, async () => ownMetrics(await registry.getMetricsAsJSON(), perProcess, server.link.id));
  return registry;
}

/**
 * This worker's metrics as the scrape merges them: a metric of the
 * process (CPU, memory, event loop, heap, ...) carries the worker's index
 * as a `worker` label, one series per worker, where summing would hide
 * the busy one; pgmux's own keep their labels and are summed.
 */
function ownMetrics(metrics: MetricsJson, perProcess: Set<string>, worker: number): MetricsJson {
  return metrics.map((m) => {
    if (!perProcess.has(m.name)) return m;
    const values = m.values.map((v) => ({ ...v, labels: { ...v.labels, worker: String(worker) } }));
    return { ...m, values, aggregator: 'first' } as typeof m;
  });
}

/** Every worker's metrics (those that answer), merged: what /metrics shows for the whole pgmux. */
async function wholeMetrics(server: PgmuxServer): Promise<client.Registry> {
  const answers = await server.link.askAll<MetricsJson>(METRICS_TOPIC);
  return client.AggregatorRegistry.aggregate(answers.map((a) => a.answer));
}

/**
 * /metrics (every worker's, merged, whichever worker the request reaches),
 * /healthz (this process answers) and /readyz (this process accepts
 * clients): health is each worker's own, as a connection the kernel hands
 * to that worker is served by it alone.
 */
export async function startMetricsServer(listen: string, server: PgmuxServer): Promise<http.Server> {
  const registry = makeRegistry(server);
  const http_ = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      wholeMetrics(server)
        .then(async (whole) => res.writeHead(200, { 'content-type': registry.contentType }).end(await whole.metrics()))
        .catch((err: Error) => res.writeHead(500).end(err.message));
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const ready = server.ready;
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ready\n' : 'not ready\n');
    } else {
      res.writeHead(404).end();
    }
  });
  const { host, port } = parseListen(listen);
  await new Promise<void>((resolve, reject) => {
    http_.once('error', reject);
    // Every worker listens on the same address (any answers for all); separate pgmux instances do not share one.
    http_.listen({ host, port, reusePort: server.link.count > 1 }, () => resolve());
  });
  return http_;
}
