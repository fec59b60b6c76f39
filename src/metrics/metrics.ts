import http from 'node:http';
import client from 'prom-client';
import type { PgmuxServer } from '../server.ts';
import { parseListen } from '../server.ts';

/**
 * Prometheus metrics. Gauges are read from the running pgmux when scraped
 * (nothing on the hot path); counters the hot path already keeps are
 * exposed as they are.
 */
export function makeRegistry(server: PgmuxServer): client.Registry {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'pgmux_' });
  const st = server.ctx.stats;
  const gauge = (name: string, help: string, labelNames: string[], fill: (g: client.Gauge) => void) =>
    new client.Gauge({
      name,
      help,
      labelNames,
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
  gauge('pgmux_node_up', 'Whether a node is in rotation (1) or not (0)', ['endpoint', 'node', 'role'], (g) => {
    for (const [name, m] of server.registry.monitors()) for (const n of m.nodes()) g.set({ endpoint: name, node: String(n.index), role: n.role }, n.up ? 1 : 0);
  });
  gauge('pgmux_node_lag_seconds', 'Replication lag of a replica, in seconds', ['endpoint', 'node'], (g) => {
    for (const [name, m] of server.registry.monitors()) for (const n of m.nodes()) if (n.role === 'replica' && Number.isFinite(n.lagSeconds)) g.set({ endpoint: name, node: String(n.index) }, n.lagSeconds);
  });
  gauge('pgmux_node_lag_bytes', 'Replication lag of a replica, in bytes of WAL', ['endpoint', 'node'], (g) => {
    for (const [name, m] of server.registry.monitors()) for (const n of m.nodes()) if (n.role === 'replica') g.set({ endpoint: name, node: String(n.index) }, n.lagBytes);
  });
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
  return registry;
}

/** /metrics, /healthz (the process answers) and /readyz (it accepts clients). */
export async function startMetricsServer(listen: string, server: PgmuxServer): Promise<http.Server> {
  const registry = makeRegistry(server);
  const http_ = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(err.message),
      );
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
    http_.listen({ host, port }, () => resolve());
  });
  return http_;
}
