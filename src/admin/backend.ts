import { ConfigSchema, type Config } from '../config/schema.ts';
import { PgError, SqlState } from '../protocol/errors.ts';
import type { PgmuxServer } from '../server.ts';
import type { AdminBackend, Cell, Column, ResultSet } from './console.ts';
import { VERSION } from '../version.ts';
import { zeroTotals, type DatabaseAverages, type DatabaseTotals } from '../metrics/database-stats.ts';


/** Settings SET may change on a running pgmux (the rest need a restart or RELOAD). */
const CHANGEABLE = new Set([
  'default_pool_size', 'max_client_conn', 'client_login_timeout', 'query_wait_timeout', 'server_idle_timeout', 'server_lifetime', 'server_connect_timeout',
  'server_reset_query', 'log_level', 'auth_cache_ttl', 'auth_negative_cache_ttl', 'max_prepared_statements', 'on_session_state',
  'load_balance', 'max_replica_lag', 'read_your_writes', 'log_per_node_statement', 'notice_per_node_statement', 'admin_users', 'stats_users',
]);

const s = (seconds: number) => Math.round(seconds * 1000);

/** What admin console clients have as their endpoint. */
const ADMIN_ENDPOINT = '(admin)';
const time = (ms: number) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19);

/**
 * The admin console's view of a running pgmux, with PgBouncer's column
 * names and order where PgBouncer has the same command (so its exporters
 * read pgmux), and pgmux's own SHOW ENDPOINTS and SHOW NODES.
 */
export function adminBackend(server: PgmuxServer, reloadSource: () => Promise<Config>, shutdown: (mode: string) => void): AdminBackend {
  const pools = () =>
    server.pools.all().map((p) => {
      const [endpoint, database, user, node] = p.key.split('\0');
      return { p, endpoint, database, user, node: Number(node) };
    });
  /**
   * SHOW STATS (totals and averages), STATS_TOTALS and STATS_AVERAGES, per
   * database, in PgBouncer's columns; times in microseconds. Averages are
   * those of the last stats period: per second for counts and bytes, per
   * transaction, query and server assignment for times.
   */
  const stats = (what: 'STATS' | 'STATS_TOTALS' | 'STATS_AVERAGES'): ResultSet => {
    const totals = server.databaseStats.totals();
    const averages = server.databaseStats.averages();
    const databases = [...totals.keys()].sort();
    const fields = (t: DatabaseTotals | DatabaseAverages): Cell[] => [t.assignments, t.xacts, t.queries, t.received, t.sent, t.xactTimeUs, t.queryTimeUs, t.waitTimeUs];
    const averagesOf = (db: string): DatabaseAverages => averages.get(db) ?? zeroTotals();
    const names = ['server_assignment_count', 'xact_count', 'query_count', 'received', 'sent', 'xact_time', 'query_time', 'wait_time'];
    if (what === 'STATS') {
      const avgNames = ['server_assignment_count', 'xact_count', 'query_count', 'recv', 'sent', 'xact_time', 'query_time', 'wait_time'];
      return {
        columns: [['database', 'text'], ...names.map((n): Column => [`total_${n}`, 'int8']), ...avgNames.map((n): Column => [`avg_${n}`, 'int8'])],
        rows: databases.map((db) => [db, ...fields(totals.get(db)!), ...fields(averagesOf(db))]),
      };
    }
    const bare = ['server_assignment_count', 'xact_count', 'query_count', 'bytes_received', 'bytes_sent', 'xact_time', 'query_time', 'wait_time'];
    return {
      columns: [['database', 'text'], ...bare.map((n): Column => [n, 'int8'])],
      rows: databases.map((db) => [db, ...fields(what === 'STATS_TOTALS' ? totals.get(db)! : averagesOf(db))]),
    };
  };
  const show = (what: string): ResultSet | null => {
    const c = server.currentConfig;
    switch (what) {
      case 'POOLS': {
        const columns: Column[] = [
          ['database', 'text'], ['user', 'text'], ['cl_active', 'int4'], ['cl_waiting', 'int4'], ['cl_active_cancel_req', 'int4'], ['cl_waiting_cancel_req', 'int4'],
          ['sv_active', 'int4'], ['sv_active_cancel', 'int4'], ['sv_being_canceled', 'int4'], ['sv_idle', 'int4'], ['sv_used', 'int4'], ['sv_tested', 'int4'],
          ['sv_login', 'int4'], ['maxwait', 'int4'], ['maxwait_us', 'int4'], ['pool_mode', 'text'], ['endpoint', 'text'], ['node', 'int4'], ['paused', 'int4'],
        ];
        const rows: Cell[][] = pools().map(({ p, endpoint, database, user, node }) => {
          const clients = [...server.sessions].filter((s) => s.endpointName === endpoint && s.user === user && s.database === database).length;
          return [database, user, clients, p.waitingCount, 0, 0, p.activeCount, 0, 0, p.idleCount, 0, 0, 0, 0, 0, server.ctx.settings().poolModeFor(endpoint, user), endpoint, node, p.paused ? 1 : 0];
        });
        return { columns, rows };
      }
      case 'CLIENTS':
      case 'SERVERS': {
        const columns: Column[] = [
          ['type', 'text'], ['user', 'text'], ['database', 'text'], ['state', 'text'], ['addr', 'text'], ['port', 'int4'], ['local_addr', 'text'], ['local_port', 'int4'],
          ['connect_time', 'text'], ['request_time', 'text'], ['wait', 'int4'], ['wait_us', 'int4'], ['close_needed', 'int4'], ['ptr', 'text'], ['link', 'text'],
          ['remote_pid', 'int4'], ['tls', 'text'], ['application_name', 'text'],
        ];
        const rows: Cell[][] = [];
        for (const s of server.sessions) {
          const conn = s.server;
          if (what === 'CLIENTS') {
            rows.push(['C', s.user, s.database, conn !== null ? 'active' : 'idle', s.socket.remoteAddress ?? null, s.socket.remotePort ?? null, s.socket.localAddress ?? null, s.socket.localPort ?? null, time(s.connectedAt), time(s.connectedAt), 0, 0, 0, `c${s.id}`, conn ? `s${conn.id}` : '', 0, 'encrypted' in s.socket ? 'TLS' : '', s.applicationName]);
          } else if (conn !== null) {
            rows.push(['S', s.user, s.database, 'active', conn.host, conn.port, conn.socket.localAddress ?? null, conn.socket.localPort ?? null, time(conn.createdAt), time(conn.lastUsedAt), 0, 0, 0, `s${conn.id}`, `c${s.id}`, conn.processId, '', s.applicationName]);
          }
        }
        return { columns, rows };
      }
      case 'STATS':
      case 'STATS_TOTALS':
      case 'STATS_AVERAGES':
        return stats(what);
      case 'DATABASES': {
        const columns: Column[] = [
          ['name', 'text'], ['host', 'text'], ['port', 'int4'], ['database', 'text'], ['force_user', 'text'], ['pool_size', 'int4'], ['min_pool_size', 'int4'],
          ['reserve_pool', 'int4'], ['pool_mode', 'text'], ['max_connections', 'int4'], ['current_connections', 'int4'], ['paused', 'int4'], ['disabled', 'int4'],
        ];
        const rows: Cell[][] = [];
        for (const [name, ep] of server.registry.endpoints()) {
          const n = ep.nodes[0];
          const current = pools().filter((x) => x.endpoint === name).reduce((a, x) => a + x.p.total, 0);
          rows.push([name, n.host, n.port, n.database ?? null, null, c.endpoints[name]?.default_pool_size ?? c.default_pool_size, 0, 0, c.endpoints[name]?.pool_mode ?? c.pool_mode, 0, current, 0, 0]);
        }
        return { columns, rows };
      }
      case 'USERS':
        return { columns: [['name', 'text'], ['pool_mode', 'text']], rows: Object.entries(c.users).map(([name, u]) => [name, u.pool_mode ?? null]) };
      case 'CONFIG': {
        const defaults = ConfigSchema.parse({}) as Record<string, unknown>;
        const rows: Cell[][] = Object.entries(c)
          .filter(([, v]) => typeof v !== 'object')
          .map(([k, v]) => [k, String(v), defaults[k] === undefined ? null : String(defaults[k]), CHANGEABLE.has(k) ? 'yes' : 'no']);
        return { columns: [['key', 'text'], ['value', 'text'], ['default', 'text'], ['changeable', 'text']], rows };
      }
      case 'VERSION':
        return { columns: [['version', 'text']], rows: [[`pgmux ${VERSION}`]] };
      case 'LISTS': {
        const all = pools();
        const rows: Cell[][] = [
          ['databases', server.registry.endpoints().size], ['users', Object.keys(c.users).length], ['pools', all.length],
          ['used_clients', server.sessions.size], ['used_servers', all.reduce((a, x) => a + x.p.total, 0)],
          ['free_servers', all.reduce((a, x) => a + x.p.idleCount, 0)],
        ];
        return { columns: [['list', 'text'], ['items', 'int4']], rows };
      }
      case 'ENDPOINTS': {
        const rows: Cell[][] = [...server.registry.endpoints()].map(([name, ep]) => [
          name, ep.nodes.map((n) => `${n.host}:${n.port}`).join(','), c.endpoints[name]?.pool_mode ?? c.pool_mode, server.registry.router(name).spreadsReads ? (c.endpoints[name]?.load_balance ?? c.load_balance) : 'off',
          pools().filter((x) => x.endpoint === name).reduce((a, x) => a + x.p.total, 0),
        ]);
        return { columns: [['endpoint', 'text'], ['nodes', 'text'], ['pool_mode', 'text'], ['load_balance', 'text'], ['server_connections', 'int4']], rows };
      }
      case 'NODES': {
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
      default:
        return null;
    }
  };
  /**
   * Database names the console's commands may name: those pgmux has logged
   * in to, those of the pools and of the clients, and those the endpoints'
   * node URLs name; with
   * `endpoints`, endpoint names too (KILL and RECONNECT act on either).
   */
  const knownDatabase = (name: string, endpoints: boolean): boolean => {
    if (endpoints && server.registry.endpoints().has(name)) return true;
    if (server.servedDatabases.has(name) || pools().some((x) => x.database === name)) return true;
    for (const s of server.sessions) if (s.database === name && s.endpointName !== ADMIN_ENDPOINT) return true;
    for (const ep of server.registry.endpoints().values()) if (ep.nodes.some((n) => n.database === name)) return true;
    return false;
  };
  /** An unknown name is an error the console goes on after, in PgBouncer's words. */
  const mustKnow = (name: string | undefined, endpoints: boolean) => {
    if (name !== undefined && !knownDatabase(name, endpoints)) throw new PgError(SqlState.INVALID_CATALOG_NAME, `no such database: ${name}`, { severity: 'ERROR' });
  };
  return {
    show,
    reload: async () => server.reload(await reloadSource()),
    set: async (key, value) => {
      if (!Object.hasOwn(ConfigSchema.shape, key)) throw new PgError(SqlState.UNDEFINED_OBJECT, `unrecognized configuration parameter "${key}"`, { severity: 'ERROR', hint: 'SHOW CONFIG lists the settings.' });
      if (!CHANGEABLE.has(key)) throw new PgError(SqlState.FEATURE_NOT_SUPPORTED, `"${key}" cannot be changed with SET`, { severity: 'ERROR', hint: 'Change it in the configuration and RELOAD, or restart.' });
      const current = server.currentConfig as Record<string, unknown>;
      const raw = typeof current[key] === 'number' ? Number(value) : typeof current[key] === 'boolean' ? ['on', 'true', '1', 'yes'].includes(value.toLowerCase()) : value;
      const parsed = ConfigSchema.safeParse({ ...current, [key]: raw });
      if (!parsed.success) throw new PgError(SqlState.INVALID_PARAMETER_VALUE, `invalid value for ${key}: ${parsed.error.issues[0]?.message ?? value}`);
      await server.reload(parsed.data);
    },
    kill: (database) => {
      mustKnow(database, true);
      server.kill(database);
    },
    reconnect: (database) => {
      mustKnow(database, true);
      server.reconnect(database);
    },
    pause: async (database) => {
      mustKnow(database, false);
      try {
        await server.pools.pause(database, s(server.currentConfig.shutdown_timeout));
      } catch (err) {
        throw new PgError(SqlState.QUERY_CANCELED, `PAUSE did not complete: ${(err as Error).message}`, { hint: 'Clients keep waiting; RESUME releases them.' });
      }
    },
    resume: (database) => {
      mustKnow(database, false);
      server.pools.resume(database);
    },
    shutdown: (mode) => shutdown(mode),
  };
}
