/**
 * The admin console's SHOW commands: PgBouncer's column names, order and
 * types where PgBouncer has the same command (its exporters and scripts
 * read pgmux), then pgmux's own columns, and pgmux's SHOW ENDPOINTS and
 * SHOW NODES. A database is a `[databases]` entry: the name clients log in
 * with, which for an endpoint chosen by name is the endpoint's name.
 */
import tls from 'node:tls';
import { ConfigSchema } from '../config/schema.ts';
import { zeroTotals, type DatabaseAverages, type DatabaseTotals } from '../metrics/database-stats.ts';
import type { Pool } from '../pool/pool.ts';
import type { ServerConnection } from '../pool/server-connection.ts';
import type { PgmuxServer } from '../server.ts';
import type { ClientSession } from '../session/client-session.ts';
import { VERSION } from '../version.ts';
import { showPeerPools, showPeers } from '../cancel/show-peers.ts';
import type { Cell, Column, ResultSet } from './console.ts';
import { changeableOnline } from './set-setting.ts';

const time = (ms: number) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19);

/** PgBouncer's columns of SHOW CLIENTS, SERVERS and SOCKETS. */
const SOCKET_COLUMNS: Column[] = [
  ['type', 'text'], ['user', 'text'], ['database', 'text'], ['replication', 'text'], ['state', 'text'], ['addr', 'text'], ['port', 'int4'],
  ['local_addr', 'text'], ['local_port', 'int4'], ['connect_time', 'text'], ['request_time', 'text'], ['wait', 'int4'], ['wait_us', 'int4'],
  ['close_needed', 'int4'], ['ptr', 'text'], ['link', 'text'], ['remote_pid', 'int4'], ['tls', 'text'], ['application_name', 'text'],
  ['prepared_statements', 'int4'], ['id', 'int4'],
];

/**
 * SHOW SOCKETS adds PgBouncer's buffer positions. pgmux has no buffer of
 * that shape: the positions are 0, and pkt_avail and send_avail are the
 * bytes read but not yet handled and written but not yet sent.
 */
const BUFFER_COLUMNS: Column[] = [
  ['recv_pos', 'int4'], ['pkt_pos', 'int4'], ['pkt_remain', 'int4'], ['send_pos', 'int4'], ['send_remain', 'int4'], ['pkt_avail', 'int4'], ['send_avail', 'int4'],
];

/** A TLS connection as PgBouncer describes it (protocol/cipher), or ''. */
function tlsInfo(socket: unknown): string {
  if (!(socket instanceof tls.TLSSocket)) return '';
  return `${socket.getProtocol() ?? 'TLS'}/${socket.getCipher()?.standardName ?? ''}`;
}

interface SocketRow {
  state: string;
  row: Cell[];
  socket: { writableLength: number; readableLength: number };
}

/**
 * A connection's id as the console shows it, unique across workers: the
 * worker's own id × workers + the worker's index (the same id with one
 * worker). KILL_CLIENT reads the worker back from it.
 */
type Ids = (own: number) => number;

export const shownId = (server: PgmuxServer): Ids => (own) => own * server.link.count + server.link.id;

function clientRow(s: ClientSession, state: string, id: Ids): SocketRow {
  const conn = s.server;
  const waited = s.waitingSince === null ? 0 : Date.now() - s.waitingSince;
  const sock = s.socket;
  return {
    state,
    socket: sock,
    row: [
      'C', s.user || '(nouser)', s.database || '(nodb)', s.replication ?? 'none', state, sock.remoteAddress ?? null, sock.remotePort ?? null, sock.localAddress ?? null,
      sock.localPort ?? null, time(s.connectedAt), time(s.connectedAt), Math.floor(waited / 1000), (waited % 1000) * 1000, 0, `c${id(s.id)}`,
      conn ? `s${id(conn.id)}` : '', 0, tlsInfo(sock), s.applicationName, 0, id(s.id),
    ],
  };
}

function serverRow(conn: ServerConnection, state: string, user: string, database: string, client: ClientSession | null, id: Ids): SocketRow {
  const sock = conn.socket;
  return {
    state,
    socket: sock,
    row: [
      'S', user, database, client?.replication ?? 'none', state, conn.host, conn.port, sock.localAddress ?? null, sock.localPort ?? null, time(conn.createdAt),
      time(conn.lastUsedAt), 0, 0, conn.pool?.closeNeeded === true ? 1 : 0, `s${id(conn.id)}`, client ? `c${id(client.id)}` : '', conn.processId,
      tlsInfo(sock), client?.applicationName ?? '', 0, id(conn.id),
    ],
  };
}

/**
 * Every client and server connection, with PgBouncer's SHOW SOCKETS state
 * (cl_active, cl_waiting, cl_login, sv_active, sv_idle); SHOW CLIENTS and
 * SERVERS show the state without its prefix.
 */
function sockets(server: PgmuxServer): { clients: SocketRow[]; servers: SocketRow[] } {
  const clients: SocketRow[] = [];
  const servers: SocketRow[] = [];
  const id = shownId(server);
  for (const s of server.sessions) {
    if (!s.loggedIn) {
      clients.push(clientRow(s, 'cl_login', id));
      continue;
    }
    const conn = s.server;
    clients.push(clientRow(s, conn !== null ? 'cl_active' : s.waitingSince !== null ? 'cl_waiting' : 'cl_idle', id));
    if (conn !== null) servers.push(serverRow(conn, 'sv_active', conn.pool?.where.user ?? s.user, conn.pool?.where.entry ?? s.database, s, id));
  }
  for (const p of server.pools.all()) for (const conn of p.idleConnections()) servers.push(serverRow(conn, 'sv_idle', p.where.user, p.where.entry, null, id));
  return { clients, servers };
}

/** SHOW CLIENTS and SHOW SERVERS: PgBouncer's states (active, waiting, idle). */
function clientsOrServers(server: PgmuxServer, what: 'CLIENTS' | 'SERVERS'): ResultSet {
  const all = sockets(server);
  const rows = (what === 'CLIENTS' ? all.clients.filter((c) => c.state !== 'cl_login') : all.servers).map((r) => {
    const row = [...r.row];
    row[4] = r.state.slice(3);
    return row;
  });
  return { columns: SOCKET_COLUMNS, rows };
}

function socketList(server: PgmuxServer, activeOnly: boolean): ResultSet {
  const all = sockets(server);
  const rows: Cell[][] = [];
  for (const r of [...all.clients, ...all.servers]) {
    const pending = r.socket.readableLength;
    const unsent = r.socket.writableLength;
    // ACTIVE_SOCKETS: those with bytes in a buffer.
    if (activeOnly && pending === 0 && unsent === 0) continue;
    rows.push([...r.row, 0, 0, 0, 0, 0, pending, unsent]);
  }
  return { columns: [...SOCKET_COLUMNS, ...BUFFER_COLUMNS], rows };
}

/** The pools of each [databases] entry. */
function poolsByEntry(server: PgmuxServer): Map<string, Pool[]> {
  const out = new Map<string, Pool[]>();
  for (const p of server.pools.all()) {
    const list = out.get(p.where.entry);
    if (list === undefined) out.set(p.where.entry, [p]);
    else list.push(p);
  }
  return out;
}

/** A node's load_balance_hosts when it has several hosts (PgBouncer shows it only then), else null. */
function loadBalanceHosts(server: PgmuxServer, endpoint: string, node: number): string | null {
  const n = server.registry.find(endpoint)?.nodes[node];
  return n?.hosts !== undefined && n.hosts.length > 1 ? (n.loadBalanceHosts ?? 'round-robin') : null;
}

function pools(server: PgmuxServer): ResultSet {
  const columns: Column[] = [
    ['database', 'text'], ['user', 'text'], ['cl_active', 'int4'], ['cl_waiting', 'int4'], ['cl_active_cancel_req', 'int4'], ['cl_waiting_cancel_req', 'int4'],
    ['sv_active', 'int4'], ['sv_active_cancel', 'int4'], ['sv_being_canceled', 'int4'], ['sv_idle', 'int4'], ['sv_used', 'int4'], ['sv_tested', 'int4'],
    ['sv_login', 'int4'], ['maxwait', 'int4'], ['maxwait_us', 'int4'], ['pool_mode', 'text'], ['load_balance_hosts', 'text'],
    ['endpoint', 'text'], ['node', 'int4'], ['paused', 'int4'],
  ];
  const clients = server.clientsOf();
  const rows: Cell[][] = server.pools.all().map((p) => {
    const { endpoint, entry, user, node } = p.where;
    // An endpoint's forced user is the pool's user whoever its clients are.
    const poolUser = (s: ClientSession) => server.currentConfig.endpoints[s.endpointName]?.user ?? s.user;
    const mine = clients.filter((s) => s.endpointName === endpoint && poolUser(s) === user && s.database === entry);
    const waits = mine.filter((s) => s.waitingSince !== null).map((s) => Date.now() - s.waitingSince!);
    const maxWait = waits.length === 0 ? 0 : Math.max(...waits);
    return [
      entry, user, mine.length - waits.length, p.waitingCount, 0, 0, p.activeCount, 0, 0, p.idleCount, 0, 0, p.openingCount, Math.floor(maxWait / 1000),
      (maxWait % 1000) * 1000, server.ctx.settings().poolModeFor(endpoint, user), loadBalanceHosts(server, endpoint, node), endpoint, node, p.paused ? 1 : 0,
    ];
  });
  return { columns, rows };
}

/**
 * SHOW DATABASES: a row per endpoint (a `[databases]` entry of a
 * pgbouncer.ini is an endpoint of the same name) and per other database
 * name clients have logged in with; each counts its own clients and server
 * connections, so rows add up without counting one twice.
 */
function databases(server: PgmuxServer): ResultSet {
  const c = server.currentConfig;
  const columns: Column[] = [
    ['name', 'text'], ['host', 'text'], ['port', 'int4'], ['database', 'text'], ['force_user', 'text'], ['pool_size', 'int4'], ['min_pool_size', 'int4'],
    ['reserve_pool_size', 'int4'], ['server_lifetime', 'int4'], ['pool_mode', 'text'], ['load_balance_hosts', 'text'], ['max_connections', 'int4'],
    ['current_connections', 'int4'], ['max_client_connections', 'int4'], ['current_client_connections', 'int4'], ['paused', 'int4'], ['disabled', 'int4'],
  ];
  const byEntry = poolsByEntry(server);
  const clients = server.clientsOf();
  const endpoints = server.registry.endpoints();
  const row = (name: string, endpoint: string, database: string | null): Cell[] => {
    const ep = endpoints.get(endpoint) ?? server.registry.find(endpoint);
    const n = ep?.nodes[0];
    const own = c.endpoints[endpoint];
    const paused = server.pools.isNamePaused(name) || server.pools.isNamePaused(endpoint);
    // As PgBouncer: the hosts comma-separated, and their load_balance_hosts only when there are several.
    const hosts = n?.hosts !== undefined && n.hosts.length > 1 ? n.hosts : undefined;
    const lbh = loadBalanceHosts(server, endpoint, 0);
    return [
      name, hosts?.map((h) => h.host).join(',') ?? n?.host ?? null, n?.port ?? null, database, own?.user ?? null, own?.default_pool_size ?? c.default_pool_size,
      own?.min_pool_size ?? c.min_pool_size, own?.reserve_pool_size ?? c.reserve_pool_size, Math.round(own?.server_lifetime ?? c.server_lifetime),
      own?.pool_mode ?? null, lbh, own?.max_db_connections ?? c.max_db_connections,
      (byEntry.get(name) ?? []).reduce((a, p) => a + p.total, 0), own?.max_db_client_connections ?? c.max_db_client_connections,
      clients.filter((s) => s.database === name).length, paused ? 1 : 0, server.disabled.has(name) ? 1 : 0,
    ];
  };
  const rows: Cell[][] = [];
  for (const [name, ep] of endpoints) rows.push(row(name, name, ep.nodes[0].database ?? name));
  // Other names clients use, with the endpoint that served them.
  const others = new Map<string, { endpoint: string; database: string }>();
  for (const s of clients) if (!endpoints.has(s.database) && !others.has(s.database)) others.set(s.database, { endpoint: s.endpointName, database: s.database });
  for (const [entry, list] of byEntry) if (!endpoints.has(entry) && !others.has(entry)) others.set(entry, { endpoint: list[0].where.endpoint, database: list[0].where.database });
  for (const name of [...others.keys()].sort()) rows.push(row(name, others.get(name)!.endpoint, others.get(name)!.database));
  return { columns, rows };
}

/** SHOW USERS: the configured users and those with clients or pools, PgBouncer's columns. */
function users(server: PgmuxServer): ResultSet {
  const c = server.currentConfig;
  const clients = server.clientsOf();
  const names = new Set([...Object.keys(c.users), ...clients.map((s) => s.user), ...server.pools.all().map((p) => p.where.user)]);
  const rows: Cell[][] = [...names].sort().map((name) => {
    const u = c.users[name];
    const text = (n: number | undefined) => (n === undefined ? '' : String(n));
    return [
      // PgBouncer shows a pool size the user does not set as ''.
      name, text(u?.default_pool_size), text(u?.reserve_pool_size), u?.pool_mode ?? null, u?.max_user_connections ?? c.max_user_connections,
      server.pools.all().filter((p) => p.where.user === name).reduce((a, p) => a + p.total, 0), u?.max_user_client_conn ?? c.max_user_client_conn,
      clients.filter((s) => s.user === name).length,
    ];
  });
  return {
    columns: [
      ['name', 'text'], ['pool_size', 'text'], ['reserve_pool_size', 'text'], ['pool_mode', 'text'], ['max_user_connections', 'int4'],
      ['current_connections', 'int4'], ['max_user_client_connections', 'int4'], ['current_client_connections', 'int4'],
    ],
    rows,
  };
}

/**
 * SHOW STATS (totals and averages), STATS_TOTALS and STATS_AVERAGES, per
 * database entry, in PgBouncer's columns; times in microseconds. Averages
 * are those of the last stats period: per second for counts and bytes,
 * per transaction, query and server assignment for times.
 */
function stats(server: PgmuxServer, what: 'STATS' | 'STATS_TOTALS' | 'STATS_AVERAGES'): ResultSet {
  const totals = server.databaseStats.totals();
  const averages = server.databaseStats.averages();
  const names = [...totals.keys()].sort();
  const fields = (t: DatabaseTotals | DatabaseAverages): Cell[] => [t.assignments, t.xacts, t.queries, t.received, t.sent, t.xactTimeUs, t.queryTimeUs, t.waitTimeUs];
  const averagesOf = (db: string): DatabaseAverages => averages.get(db) ?? zeroTotals();
  const quantities = ['server_assignment_count', 'xact_count', 'query_count', 'received', 'sent', 'xact_time', 'query_time', 'wait_time'];
  if (what === 'STATS') {
    const avgNames = ['server_assignment_count', 'xact_count', 'query_count', 'recv', 'sent', 'xact_time', 'query_time', 'wait_time'];
    return {
      columns: [['database', 'text'], ...quantities.map((n): Column => [`total_${n}`, 'int8']), ...avgNames.map((n): Column => [`avg_${n}`, 'int8'])],
      rows: names.map((db) => [db, ...fields(totals.get(db)!), ...fields(averagesOf(db))]),
    };
  }
  const bare = ['server_assignment_count', 'xact_count', 'query_count', 'bytes_received', 'bytes_sent', 'xact_time', 'query_time', 'wait_time'];
  return {
    columns: [['database', 'text'], ...bare.map((n): Column => [n, 'int8'])],
    rows: names.map((db) => [db, ...fields(what === 'STATS_TOTALS' ? totals.get(db)! : averagesOf(db))]),
  };
}

function config(server: PgmuxServer): ResultSet {
  const defaults = ConfigSchema.parse({}) as Record<string, unknown>;
  const rows: Cell[][] = Object.entries(server.currentConfig)
    .filter(([, v]) => typeof v !== 'object')
    .map(([k, v]) => [k, String(v), defaults[k] === undefined ? null : String(defaults[k]), changeableOnline(k) ? 'yes' : 'no']);
  return { columns: [['key', 'text'], ['value', 'text'], ['default', 'text'], ['changeable', 'text']], rows };
}

function lists(server: PgmuxServer): ResultSet {
  const all = server.pools.all();
  const rows: Cell[][] = [
    ['databases', server.registry.endpoints().size], ['users', Object.keys(server.currentConfig.users).length], ['pools', all.length],
    ['used_clients', server.sessions.size], ['used_servers', all.reduce((a, p) => a + p.total, 0)], ['free_servers', all.reduce((a, p) => a + p.idleCount, 0)],
  ];
  return { columns: [['list', 'text'], ['items', 'int4']], rows };
}

function endpointsView(server: PgmuxServer): ResultSet {
  const c = server.currentConfig;
  const connections = (name: string) => server.pools.all().filter((p) => p.where.endpoint === name).reduce((a, p) => a + p.total, 0);
  const rows: Cell[][] = [...server.registry.endpoints()].map(([name, ep]) => [
    name, ep.nodes.map((n) => `${n.host}:${n.port}`).join(','), c.endpoints[name]?.pool_mode ?? c.pool_mode,
    server.registry.router(name).spreadsReads ? (c.endpoints[name]?.load_balance ?? c.load_balance) : 'off', connections(name),
  ]);
  return { columns: [['endpoint', 'text'], ['nodes', 'text'], ['pool_mode', 'text'], ['load_balance', 'text'], ['server_connections', 'int4']], rows };
}

/** Like pgpool's SHOW POOL_NODES. */
function nodes(server: PgmuxServer): ResultSet {
  const c = server.currentConfig;
  const rows: Cell[][] = [];
  for (const [name, ep] of server.registry.endpoints()) {
    const monitor = server.registry.monitors().get(name);
    if (monitor === undefined) {
      ep.nodes.forEach((n, i) => rows.push([i, name, n.host, n.port, i === 0 ? 'primary' : 'replica', c.endpoints[name]?.weights?.[i] ?? 1, 'up', 0, 0, null, null]));
      continue;
    }
    for (const n of monitor.nodes()) rows.push([n.index, name, n.host, n.port, n.role, n.weight, n.up ? 'up' : 'down', n.lagBytes, Number.isFinite(n.lagSeconds) ? n.lagSeconds : null, n.reads, n.writes]);
  }
  return {
    columns: [['node_id', 'int4'], ['endpoint', 'text'], ['hostname', 'text'], ['port', 'int4'], ['role', 'text'], ['weight', 'float8'], ['status', 'text'], ['lag_bytes', 'int8'], ['lag_seconds', 'float8'], ['select_cnt', 'int8'], ['write_cnt', 'int8']],
    rows,
  };
}

/** SHOW STATE: whether pgmux is running, paused (PAUSE) or suspended (SUSPEND). */
function state(server: PgmuxServer): ResultSet {
  const mode = server.pools.pauseMode;
  return {
    columns: [['key', 'text'], ['value', 'text']],
    rows: [['active', mode === 'none' ? 'yes' : 'no'], ['paused', mode === 'pause' ? 'yes' : 'no'], ['suspended', mode === 'suspend' ? 'yes' : 'no']],
  };
}

/** One SHOW command's result; null for a name parseCommand does not pass. */
export function showCommand(server: PgmuxServer, what: string): ResultSet | null {
  switch (what) {
    case 'POOLS':
      return pools(server);
    case 'CLIENTS':
    case 'SERVERS':
      return clientsOrServers(server, what);
    case 'SOCKETS':
      return socketList(server, false);
    case 'ACTIVE_SOCKETS':
      return socketList(server, true);
    case 'STATS':
    case 'STATS_TOTALS':
    case 'STATS_AVERAGES':
      return stats(server, what);
    case 'DATABASES':
      return databases(server);
    case 'USERS':
      return users(server);
    case 'CONFIG':
      return config(server);
    case 'VERSION':
      return { columns: [['version', 'text']], rows: [[`pgmux ${VERSION}`]] };
    case 'LISTS':
      return lists(server);
    case 'ENDPOINTS':
      return endpointsView(server);
    case 'NODES':
      return nodes(server);
    case 'STATE':
      return state(server);
    case 'PEERS':
      return showPeers(server.currentConfig);
    case 'PEER_POOLS':
      return showPeerPools(server.ctx.cancels);
    default:
      return null;
  }
}
