/**
 * The configuration: every setting, its type, limits and default. Defaults
 * live here and nowhere else; the loader, --help and the environment
 * variables are all derived from this schema.
 */
import { z } from 'zod';
import { ENDPOINT_NAME, nodeUrlProblem } from './endpoint-spec.ts';
import { redactSecrets } from './redact.ts';

export const POOL_MODES = ['session', 'transaction', 'statement', 'none'] as const;
export const AUTH_TYPES = ['scram-sha-256', 'md5', 'password', 'trust', 'hba'] as const;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export const CLIENT_SSLMODES = ['disable', 'allow', 'prefer', 'require'] as const;
export const SERVER_SSLMODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export const LOAD_BALANCE = ['off', 'session', 'transaction', 'statement'] as const;
export const ON_SESSION_STATE = ['pin', 'error'] as const;

export const PoolModeSchema = z.enum(POOL_MODES);
export type PoolMode = z.infer<typeof PoolModeSchema>;
export type AuthType = (typeof AUTH_TYPES)[number];
export type LogLevel = (typeof LOG_LEVELS)[number];

/** What --help says about a top-level setting; `arg` names its value there. */
export interface SettingInfo {
  description: string;
  arg?: string;
}

export const settingInfo = z.registry<SettingInfo>();

function setting<T extends z.ZodType>(schema: T, description: string, arg?: string): T {
  settingInfo.add(schema, { description, arg });
  return schema;
}

/** Whole or fractional seconds; what 0 means is said per setting. */
const seconds = () => z.number().min(0);

/** host:port or [v6]:port; port 0 asks the system for a free port. */
const LISTEN = /^(?:\[[^\]]+\]|[^:[\]\s]*):([0-9]{1,5})$/;

const listen = z.string().refine(
  (s) => {
    const m = LISTEN.exec(s);
    return m !== null && Number(m[1]) <= 65535;
  },
  { error: (issue) => `expected host:port (IPv6 as [::1]:6432), got ${JSON.stringify(issue.input)}` },
);

const isListen = (s: string) => {
  const m = LISTEN.exec(s.trim());
  return m !== null && Number(m[1]) <= 65535;
};

/** Several addresses, comma-separated, as PgBouncer's listen_addr; `*` is every address. */
const listenList = z.string().refine(
  (s) => s.split(',').every(isListen),
  { error: (issue) => `expected host:port (IPv6 as [::1]:6432), got ${JSON.stringify(issue.input)}; several addresses are comma-separated, and * is every address` },
);

/** unix_socket_mode: octal, as chmod takes it. */
const FILE_MODE = /^(?:0o?)?[0-7]{1,4}$/i;

const nodeUrl = z.string().superRefine((url, ctx) => {
  const problem = nodeUrlProblem(url);
  if (problem !== null) ctx.addIssue({ code: 'custom', input: url, message: `${JSON.stringify(redactSecrets(url))}: ${problem}` });
});

const endpointName = z.string().regex(ENDPOINT_NAME, {
  error: (issue) =>
    `invalid endpoint name ${JSON.stringify(issue.input)}: expected letters, digits, "_", "." and "-", not starting with "." or "-"`,
});

export const EndpointSchema = z.strictObject({
  /** postgresql:// URLs, one per server; the first is the primary. */
  nodes: z.array(nodeUrl).min(1),
  /** Read weights, one per node in the order of `nodes` (default 1 each; 0: no reads). */
  weights: z.array(z.number().min(0)).optional(),
  pool_mode: PoolModeSchema.optional(),
  default_pool_size: z.int().min(1).optional(),
  load_balance: z.enum(LOAD_BALANCE).optional(),
  server_tls_sslmode: z.enum(SERVER_SSLMODES).optional(),
  /**
   * Log in to the servers as this user whoever the client is (PgBouncer's
   * forced user=): one pool per database for all of them.
   */
  user: z.string().min(1).optional(),
  /** `user`'s password; without it, its [users.NAME] password or auth_file secret. */
  password: z.string().optional(),
  min_pool_size: z.int().min(0).optional(),
  reserve_pool_size: z.int().min(0).optional(),
  max_db_connections: z.int().min(0).optional(),
  max_db_client_connections: z.int().min(0).optional(),
  /** Run once on each new server connection before a client gets it. */
  connect_query: z.string().optional(),
  server_lifetime: seconds().optional(),
  query_wait_timeout: seconds().optional(),
  /** This endpoint's clients' auth_user, auth_query and auth_dbname. */
  auth_user: z.string().min(1).optional(),
  auth_query: z.string().min(1).optional(),
  auth_dbname: z.string().min(1).optional(),
});

export const UserSchema = z.strictObject({
  /** Plaintext password pgmux logs in to servers with as this user. */
  password: z.string().optional(),
  pool_mode: PoolModeSchema.optional(),
  default_pool_size: z.int().min(1).optional(),
  reserve_pool_size: z.int().min(0).optional(),
  max_user_connections: z.int().min(0).optional(),
  max_user_client_conn: z.int().min(0).optional(),
  query_wait_timeout: seconds().optional(),
  // PgBouncer's [users] timeouts: this user's, winning over the global ones (0: none for this user).
  client_idle_timeout: seconds().optional(),
  idle_transaction_timeout: seconds().optional(),
  query_timeout: seconds().optional(),
  transaction_timeout: seconds().optional(),
});

/** A [peers] entry's name: its peer_id. */
const peerId = z.string().refine((s) => /^[0-9]{1,5}$/.test(s) && Number(s) >= 1 && Number(s) <= 16383, {
  error: (issue) => `invalid peer_id ${JSON.stringify(issue.input)}: expected a number 1-16383`,
});

/** Where a peer takes CancelRequests: PgBouncer's [peers] entry. */
export const PeerSchema = z.strictObject({
  /** Host name, address, or a Unix-socket directory (starting with / or @). */
  host: z.string().min(1),
  port: z.int().min(1).max(65535).default(6432),
  /** Cancels in flight to the peer at once; default default_pool_size. */
  pool_size: z.int().min(1).optional(),
});

export const ConfigSchema = z
  .strictObject({
    listen: setting(
      listenList.default('127.0.0.1:6432'),
      'Addresses clients connect to: host:port, several comma-separated (IPv6 as [::1]:6432; * is every IPv4 and IPv6 address)',
      'host:port',
    ),
    unix_socket_dir: setting(
      z.string().default('/tmp'),
      'Directory of the Unix-domain socket .s.PGSQL.PORT (PORT: the first listen port; @name: abstract namespace); empty for none',
      'dir',
    ),
    unix_socket_mode: setting(
      z.string().regex(FILE_MODE, { error: (issue) => `expected an octal file mode such as 0777, got ${JSON.stringify(issue.input)}` }).default('0777'),
      'File mode of the Unix-domain socket, octal',
      'mode',
    ),
    unix_socket_group: setting(z.string().min(1).optional(), 'Group the Unix-domain socket belongs to', 'group'),
    so_reuseport: setting(
      z.boolean().default(false),
      'Listen with SO_REUSEPORT: pgmux processes that all set it share their TCP ports (each needs its own unix_socket_dir and pid_file), for a restart without a moment nobody listens',
      'bool',
    ),
    workers: setting(
      z.union([z.int().min(1).max(255), z.literal('auto')]).default('auto'),
      'Worker processes that all accept on the listen addresses (SO_REUSEPORT) under one supervising process; auto: one per core; 1: a single process',
      'n|auto',
    ),
    user: setting(
      z.string().min(1).optional(),
      'OS user pgmux switches to once its listeners are open (pgmux must be started as root, or as that user)',
      'user',
    ),
    endpoints: setting(z.record(endpointName, EndpointSchema).default({}), 'Servers to route to, by endpoint name'),
    default_endpoint: setting(endpointName.optional(), 'Endpoint for clients whose database names none', 'name'),
    pool_mode: setting(PoolModeSchema.default('session'), 'How long a client keeps its server connection', 'mode'),
    default_pool_size: setting(z.int().min(1).default(20), 'Server connections per (endpoint, database, user) at most', 'n'),
    max_client_conn: setting(z.int().min(1).default(100), 'Logged-in clients at most', 'n'),
    max_user_client_conn: setting(z.int().min(0).default(0), 'Logged-in clients of one user at most; 0: no limit but max_client_conn', 'n'),
    max_db_client_connections: setting(z.int().min(0).default(0), 'Logged-in clients of one database at most, all users together; 0: no limit but max_client_conn', 'n'),
    max_db_connections: setting(z.int().min(0).default(0), 'Server connections per database at most, all users together; 0: no limit', 'n'),
    max_user_connections: setting(z.int().min(0).default(0), 'Server connections per user at most, all databases together; 0: no limit', 'n'),
    min_pool_size: setting(
      z.int().min(0).default(0),
      'Server connections kept open per pool while clients use it (always, for an endpoint with a forced user); 0: none',
      'n',
    ),
    reserve_pool_size: setting(z.int().min(0).default(0), 'Server connections a pool may open beyond its size for clients that waited reserve_pool_timeout', 'n'),
    reserve_pool_timeout: setting(seconds().default(5), 'Seconds a client waits before its pool may use reserve_pool_size; 0: never', 'seconds'),
    auth_failure_limit: setting(
      z.int().min(0).default(20),
      'Failed logins from one client address per minute before its further attempts are refused; 0: no limit',
      'n',
    ),
    client_login_timeout: setting(
      seconds().default(60),
      'Seconds a client may take from connecting until it has authenticated before it is disconnected; 0: no limit',
      'seconds',
    ),
    query_wait_timeout: setting(
      seconds().default(120),
      'Seconds a client waits for a server connection before it is disconnected; 0 waits forever',
      'seconds',
    ),
    client_idle_timeout: setting(
      seconds().default(0),
      'Seconds a logged-in client may stay idle outside a transaction before it is disconnected; 0: no limit',
      'seconds',
    ),
    idle_transaction_timeout: setting(
      seconds().default(0),
      'Seconds a client may stay idle inside a transaction block before it is disconnected and its transaction rolled back; 0: no limit',
      'seconds',
    ),
    query_timeout: setting(
      seconds().default(0),
      'Seconds a statement may run (or a transaction block stay idle) before its client is disconnected and the statement cancelled; 0: no limit',
      'seconds',
    ),
    transaction_timeout: setting(
      seconds().default(0),
      'Seconds a transaction may last before its client is disconnected and the transaction rolled back; 0: no limit',
      'seconds',
    ),
    server_idle_timeout: setting(seconds().default(600), 'Seconds an unused server connection is kept open', 'seconds'),
    server_lifetime: setting(
      seconds().default(3600),
      'Seconds after which a server connection is closed once it is free',
      'seconds',
    ),
    // 0 would fail every login at once, so it is refused rather than given a meaning.
    server_connect_timeout: setting(z.number().positive().default(15), 'Seconds a login to a server may take', 'seconds'),
    server_reset_query: setting(
      z.string().default('DISCARD ALL'),
      'Query that cleans a server connection after its session-mode client leaves; empty for none',
      'sql',
    ),
    server_check_delay: setting(seconds().default(30), 'Seconds a server connection may be idle and still be lent without server_check_query; 0: always check', 'seconds'),
    server_check_query: setting(z.string().default('select 1'), 'Query that proves an idle server connection still works before it is lent; empty for none', 'sql'),
    // A message's length field is a signed 32-bit integer; under 1 KiB even
    // login messages (passwords, SCRAM exchanges) could be refused.
    max_packet_size: setting(
      z.int().min(1024).max(2147483647).default(1073741823),
      'Largest message a client may send, in bytes; larger ones get an error',
      'bytes',
    ),
    auth_type: setting(z.enum(AUTH_TYPES).default('scram-sha-256'), 'How clients prove who they are; hba: as the first rule of auth_hba_file that covers them says', 'method'),
    auth_hba_file: setting(
      z.string().min(1).optional(),
      'pg_hba.conf-style rules choosing each client\'s method from its address, TLS, database and user (auth_type = hba); re-read on reload',
      'file',
    ),
    auth_file: setting(z.string().min(1).optional(), 'File of "user" "secret" lines (PgBouncer userlist.txt format)', 'file'),
    auth_user: setting(z.string().min(1).optional(), 'User that runs auth_query for users not in auth_file', 'user'),
    auth_dbname: setting(
      z.string().min(1).optional(),
      "Endpoint (or, with default_endpoint, database) whose primary and database auth_query runs in, instead of the client's",
      'name',
    ),
    auth_query: setting(
      z.string().min(1).default('SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1'),
      "Query returning a user's name and secret, given the name as $1",
      'sql',
    ),
    auth_cache_ttl: setting(seconds().default(60), 'Seconds an auth_query answer is reused', 'seconds'),
    auth_negative_cache_ttl: setting(seconds().default(5), 'Seconds a user auth_query did not find stays unknown', 'seconds'),
    users: setting(z.record(z.string().min(1), UserSchema).default({}), 'Per-user settings, by user name'),
    log_level: setting(z.enum(LOG_LEVELS).default('info'), 'Least severe log messages written', 'level'),
    log_format: setting(z.enum(LOG_FORMATS).default('auto'), 'Log lines as JSON, readable text, or text only when stdout is a terminal', 'format'),
    log_file: setting(z.string().min(1).optional(), 'File log lines are appended to instead of standard output; reopened on SIGHUP', 'file'),
    pid_file: setting(z.string().min(1).optional(), 'File pgmux writes its process id to once listening, and removes when it stops', 'file'),
    log_connections: setting(z.boolean().default(true), 'Log each client login at info level (else at debug)', 'bool'),
    log_disconnections: setting(z.boolean().default(true), 'Log each client disconnection, with its reason, at info level (else at debug)', 'bool'),
    log_pooler_errors: setting(z.boolean().default(true), 'Log, as a warning, the error pgmux itself sends a logged-in client it disconnects', 'bool'),
    log_stats: setting(z.boolean().default(true), 'Log the averages of every stats_period', 'bool'),
    stats_period: setting(
      z.number().positive().default(60),
      'Seconds between the averages of SHOW STATS_AVERAGES and of the stats log line',
      'seconds',
    ),

    // Transaction pooling
    max_prepared_statements: setting(
      z.int().min(0).default(200),
      'Protocol-level prepared statements kept per server connection in transaction mode; 0 turns the mapping off',
      'n',
    ),
    on_session_state: setting(
      z.enum(ON_SESSION_STATE).default('pin'),
      'In transaction mode, what a statement that leaves session state does: pin the server connection, or fail',
      'pin|error',
    ),
    ignore_startup_parameters: setting(
      z.string().default(''),
      'Comma-separated startup parameters dropped instead of passed to the server (options: words of options that would be refused)',
      'names',
    ),
    track_extra_parameters: setting(
      z.string().default('search_path,statement_timeout,lock_timeout,idle_in_transaction_session_timeout,default_transaction_isolation,default_transaction_read_only,work_mem'),
      'Comma-separated parameters PostgreSQL does not report, tracked from SET per client in transaction mode',
      'names',
    ),

    // TLS and endpoint selection
    client_tls_sslmode: setting(z.enum(CLIENT_SSLMODES).default('disable'), 'TLS with clients: disable, allow, prefer or require', 'mode'),
    client_tls_cert_file: setting(z.string().min(1).optional(), 'Certificate chain (PEM) pgmux shows clients', 'file'),
    client_tls_key_file: setting(z.string().min(1).optional(), 'Private key (PEM) of client_tls_cert_file', 'file'),
    server_tls_sslmode: setting(z.enum(SERVER_SSLMODES).default('disable'), 'TLS with servers: disable, allow, prefer, require, verify-ca or verify-full', 'mode'),
    server_tls_ca_file: setting(z.string().min(1).optional(), 'CA certificates (PEM) that server certificates are checked against', 'file'),
    sni_domain: setting(
      z.string().default(''),
      'Comma-separated domains whose TLS server names choose an endpoint by their first label (ep-a.db.example.com)',
      'domains',
    ),
    control_plane_url: setting(z.string().url().optional(), 'HTTP URL asked for the nodes of endpoints not configured here', 'url'),
    control_plane_cache_ttl: setting(seconds().default(60), 'Seconds an endpoint the control plane returned is reused', 'seconds'),
    control_plane_cache_size: setting(z.int().min(1).default(10000), 'Endpoints from the control plane kept at most', 'n'),
    control_plane_timeout: setting(z.number().positive().default(5), 'Seconds one control-plane request may take', 'seconds'),
    control_plane_retries: setting(z.int().min(0).default(3), 'Retries, with backoff, of a failed control-plane request', 'n'),

    // Load balancing
    load_balance: setting(
      z.enum(LOAD_BALANCE).default('session'),
      'Spread reads over replicas once per session, transaction or statement; off sends everything to the primary',
      'mode',
    ),
    max_replica_lag: setting(seconds().default(10), 'Seconds a replica may lag behind the primary and still get reads', 'seconds'),
    read_your_writes: setting(
      z.enum(['lsn', 'off']).default('lsn'),
      "After a client's write, read only from replicas that have replayed it",
      'lsn|off',
    ),
    health_check_user: setting(
      z.string().min(1).optional(),
      'User that checks node health, roles, lag and function volatility (with the credentials pgmux logs in to servers with); default auth_user, else a user whose clients have logged in',
      'user',
    ),
    health_check_period: setting(z.number().positive().default(2), 'Seconds between health checks of each node', 'seconds'),
    health_check_timeout: setting(z.number().positive().default(3), 'Seconds a health check may take', 'seconds'),
    health_check_max_retries: setting(z.int().min(0).default(1), 'Failed checks in a row tolerated before a node leaves rotation', 'n'),
    replication_check_period: setting(
      z.number().positive().default(0.1),
      'Seconds between reads of WAL positions for lag and read-your-writes',
      'seconds',
    ),
    log_per_node_statement: setting(z.boolean().default(false), 'Log each statement with the node it was sent to', 'bool'),
    notice_per_node_statement: setting(z.boolean().default(false), 'Also send that line to the client as a NOTICE', 'bool'),

    // Operating
    admin_users: setting(z.string().default(''), 'Comma-separated users allowed every admin console command', 'users'),
    stats_users: setting(z.string().default(''), 'Comma-separated users allowed the admin console SHOW commands', 'users'),
    metrics_listen: setting(listen.optional(), 'Address of the HTTP listener for /metrics, /healthz and /readyz; unset: none', 'host:port'),
    shutdown_timeout: setting(seconds().default(30), 'Seconds SIGTERM waits for clients to finish before closing them', 'seconds'),

    // Cancels across instances (docs/scaling.md)
    peer_id: setting(
      z.int().min(0).max(16383).default(0),
      "This pgmux's number in a group of peered pgmux and PgBouncer processes, written into each client's cancel key so a CancelRequest that lands on a peer is forwarded here; 0: no peering",
      'n',
    ),
    peers: setting(
      z.record(peerId, PeerSchema).default({}),
      'Peers a CancelRequest carrying their peer_id is forwarded to, by peer_id (PgBouncer\'s [peers])',
    ),
    cancel_store: setting(
      z
        .string()
        .regex(/^rediss?:\/\//, { error: 'expected a redis:// or rediss:// URL' })
        .optional(),
      "Redis server (redis://[:password@]host:port[/db]) where every instance registers its clients' cancel keys, so a CancelRequest that lands on another instance reaches the right one",
      'url',
    ),
  })
  .superRefine((config, ctx) => {
    for (const [name, ep] of Object.entries(config.endpoints)) {
      // Only the forced user logs in with it; alone it would be a secret that does nothing.
      if (ep.password !== undefined && ep.user === undefined) {
        ctx.addIssue({ code: 'custom', path: ['endpoints', name, 'password'], input: undefined, message: 'password is the password of user: set user too, or leave password out' });
      }
    }
    if (config.auth_type === 'hba' && config.auth_hba_file === undefined) {
      ctx.addIssue({ code: 'custom', path: ['auth_hba_file'], input: undefined, message: 'auth_type = hba needs auth_hba_file, the file of rules' });
    }
    // As PgBouncer, auth_dbname names a [databases] entry (an endpoint), or
    // a database of the default endpoint; the admin console is none.
    const authDbnames: [(string | number)[], string | undefined][] = [
      [['auth_dbname'], config.auth_dbname],
      ...Object.entries(config.endpoints).map(([n, ep]): [(string | number)[], string | undefined] => [['endpoints', n, 'auth_dbname'], ep.auth_dbname]),
    ];
    for (const [path, dbname] of authDbnames) {
      if (dbname === undefined) continue;
      const message =
        dbname === 'pgbouncer' || dbname === 'pgmux'
          ? `cannot use the admin console's database "${dbname}" as auth_dbname`
          : !Object.hasOwn(config.endpoints, dbname) && config.default_endpoint === undefined
            ? `authentication database "${dbname}" is not configured: name an endpoint, or set default_endpoint to serve it`
            : null;
      if (message !== null) ctx.addIssue({ code: 'custom', path, input: dbname, message });
    }
    const name = config.default_endpoint;
    if (name !== undefined && !Object.hasOwn(config.endpoints, name)) {
      const known = Object.keys(config.endpoints);
      ctx.addIssue({
        code: 'custom',
        path: ['default_endpoint'],
        input: name,
        message: `no endpoint named "${name}" (${known.length === 0 ? 'no endpoints are configured' : `endpoints: ${known.join(', ')}`})`,
      });
    }
  });

export type Config = z.infer<typeof ConfigSchema>;
export type EndpointConfig = z.infer<typeof EndpointSchema>;
export type UserConfig = z.infer<typeof UserSchema>;
