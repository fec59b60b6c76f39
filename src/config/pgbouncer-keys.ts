/**
 * Every setting PgBouncer knows, and what pgmux does with each when it
 * reads a pgbouncer.ini:
 *
 * - `map`: the same meaning in pgmux, under `to` (default: the same name);
 * - `ignore`: no effect on who may log in or how safely; named once in a
 *   start-up warning. Once pgmux has a setting of the same name, it maps
 *   to it instead (pgbouncer-ini.ts asks the schema);
 * - `refuse`: would weaken security or change who logs in if dropped, and
 *   pgmux cannot honour it (yet), so pgmux will not start with it. `unless`
 *   lists the values that are safe to drop (PgBouncer's defaults, or values
 *   pgmux already is at least as strict as).
 *
 * A key PgBouncer does not know is a typo; PgBouncer refuses those too.
 */

export type ValueKind = 'string' | 'integer' | 'seconds';

export type KeyRule =
  // `value` is only given where no pgmux setting says how to read it (entries of [databases] and [users]).
  // `zeroUnset`: 0 is PgBouncer's "not set" for the key (the global value applies).
  | { kind: 'map'; value?: ValueKind; to?: string; zeroUnset?: boolean }
  | { kind: 'ignore' }
  | { kind: 'refuse'; why: string; unless?: (value: string) => boolean };

/** A [pgbouncer] key for the pgmux setting of the same name, read as that setting is typed. */
const same: KeyRule = { kind: 'map' };
/** The same, for a pgmux setting of another name. */
const renamed = (to: string): KeyRule => ({ kind: 'map', to });
const map = (value: ValueKind, to?: string): KeyRule => ({ kind: 'map', value, to });
/** A [users] timeout: PgBouncer lets a user's value win only when it is above 0. */
const userTimeout: KeyRule = { kind: 'map', value: 'seconds', zeroUnset: true };
const ignore: KeyRule = { kind: 'ignore' };
const refuse = (why: string, unless?: (value: string) => boolean): KeyRule => ({ kind: 'refuse', why, unless });

const empty = (v: string) => v.trim() === '';
const oneOf = (...values: string[]) => (v: string) => values.includes(v.trim().toLowerCase());

/**
 * TLS versions pgmux (Node.js) offers: 1.2 and 1.3. Dropping a
 * `*_tls_protocols` value is safe when it allows at least those.
 */
function allowsTls12And13(value: string): boolean {
  const v = value.trim().toLowerCase();
  if (['secure', 'all', 'legacy', 'default'].includes(v)) return true;
  const list = v.split(/[\s,:]+/);
  return list.includes('tlsv1.2') && list.includes('tlsv1.3');
}

const TLS_TUNING = 'pgmux uses Node.js TLS defaults (TLS 1.2 and 1.3, its default cipher suites and curves) and cannot narrow them yet';

/** [pgbouncer] keys, as in PgBouncer's own table of settings. */
export const PGBOUNCER_KEYS: Record<string, KeyRule> = {
  admin_users: same,
  application_name_add_host: ignore,
  auth_dbname: same,
  auth_file: same,
  auth_hba_file: same,
  auth_ident_file: refuse('pgmux has no ident maps yet', empty),
  auth_ldap_options: ignore,
  auth_query: same,
  // auth_type has a rule of its own (pgbouncer-ini.ts).
  auth_type: same,
  auth_user: same,
  autodb_idle_timeout: ignore,
  cancel_wait_timeout: ignore,
  client_idle_timeout: same,
  client_login_timeout: same,
  client_tls13_ciphers: refuse(TLS_TUNING, empty),
  client_tls_ca_file: ignore,
  client_tls_cert_file: same,
  client_tls_ciphers: refuse(TLS_TUNING, oneOf('', 'default')),
  client_tls_dheparams: refuse(TLS_TUNING, oneOf('', 'auto')),
  client_tls_ecdhcurve: refuse(TLS_TUNING, oneOf('', 'auto')),
  client_tls_key_file: same,
  client_tls_protocols: refuse(TLS_TUNING, allowsTls12And13),
  // client_tls_sslmode has a rule of its own.
  client_tls_sslmode: same,
  conffile: ignore,
  default_pool_size: same,
  disable_pqexec: refuse('pgmux cannot refuse the simple query protocol yet', oneOf('0')),
  dns_max_ttl: ignore,
  dns_nxdomain_ttl: ignore,
  dns_zone_check_period: ignore,
  idle_transaction_timeout: same,
  ignore_startup_parameters: same,
  job_name: ignore,
  // listen_addr and listen_port have rules of their own.
  listen_addr: same,
  listen_backlog: ignore,
  listen_port: same,
  log_connections: same,
  log_disconnections: same,
  log_pooler_errors: same,
  log_stats: same,
  logfile: renamed('log_file'),
  max_client_conn: same,
  max_db_client_connections: same,
  max_db_connections: same,
  max_packet_size: same,
  max_prepared_statements: same,
  max_user_client_connections: renamed('max_user_client_conn'),
  max_user_connections: same,
  min_pool_size: same,
  peer_id: same,
  pidfile: renamed('pid_file'),
  pkt_buf: ignore,
  pool_mode: same,
  query_timeout: same,
  query_wait_notify: ignore,
  query_wait_timeout: same,
  reserve_pool_size: same,
  reserve_pool_timeout: same,
  resolv_conf: ignore,
  sbuf_loopcnt: ignore,
  scram_iterations: ignore,
  server_check_delay: ignore,
  server_check_query: ignore,
  server_connect_timeout: same,
  server_fast_close: ignore,
  server_idle_timeout: same,
  server_lifetime: same,
  server_login_retry: ignore,
  server_reset_query: same,
  server_reset_query_always: ignore,
  server_round_robin: ignore,
  server_tls13_ciphers: refuse(TLS_TUNING, empty),
  server_tls_ca_file: same,
  server_tls_cert_file: refuse('pgmux cannot present a client certificate to servers yet', empty),
  server_tls_ciphers: refuse(TLS_TUNING, oneOf('', 'default')),
  server_tls_key_file: refuse('pgmux cannot present a client certificate to servers yet', empty),
  server_tls_protocols: refuse(TLS_TUNING, allowsTls12And13),
  server_tls_sslmode: same,
  service_name: ignore,
  shutdown_wait_timeout: renamed('shutdown_timeout'),
  // so_reuseport has a rule of its own (0 or 1).
  so_reuseport: same,
  stats_period: same,
  stats_users: same,
  suspend_timeout: ignore,
  syslog: ignore,
  syslog_facility: ignore,
  syslog_ident: ignore,
  tcp_defer_accept: ignore,
  tcp_keepalive: ignore,
  tcp_keepcnt: ignore,
  tcp_keepidle: ignore,
  tcp_keepintvl: ignore,
  tcp_socket_buffer: ignore,
  tcp_user_timeout: ignore,
  track_extra_parameters: same,
  transaction_timeout: same,
  unix_socket_dir: same,
  // unix_socket_group and user have a rule of their own (empty is not set).
  unix_socket_group: same,
  unix_socket_mode: same,
  user: same,
  verbose: same,
};

/** Keys of a [databases] entry's connection string. */
export const DATABASE_KEYS: Record<string, KeyRule> = {
  dbname: map('string'),
  host: map('string'),
  port: map('integer'),
  pool_mode: map('string'),
  pool_size: map('integer', 'default_pool_size'),
  user: map('string'),
  password: map('string'),
  auth_user: map('string'),
  auth_dbname: map('string'),
  auth_query: map('string'),
  application_name: ignore,
  client_encoding: ignore,
  connect_query: map('string'),
  datestyle: ignore,
  load_balance_hosts: map('string'),
  max_db_client_connections: map('integer'),
  max_db_connections: map('integer'),
  min_pool_size: map('integer'),
  // reserve_pool is the older name.
  reserve_pool: map('integer', 'reserve_pool_size'),
  reserve_pool_size: map('integer'),
  server_lifetime: map('seconds'),
  query_wait_timeout: map('seconds'),
  target_session_attrs: ignore,
  timezone: ignore,
};

/** Keys of a [users] entry. */
export const USER_KEYS: Record<string, KeyRule> = {
  pool_mode: map('string'),
  pool_size: map('integer', 'default_pool_size'),
  client_idle_timeout: userTimeout,
  idle_transaction_timeout: userTimeout,
  max_user_client_connections: map('integer', 'max_user_client_conn'),
  max_user_connections: map('integer'),
  query_timeout: userTimeout,
  query_wait_timeout: map('seconds'),
  reserve_pool_size: map('integer'),
  transaction_timeout: userTimeout,
};

/** Keys of a [peers] entry: where a CancelRequest for that peer_id is forwarded. */
export const PEER_KEYS: Record<string, KeyRule> = {
  host: map('string'),
  port: map('integer'),
  pool_size: map('integer'),
};

/** Sections of a pgbouncer.ini. */
export const SECTIONS = ['pgbouncer', 'databases', 'users', 'peers'];
