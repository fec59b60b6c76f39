import type { Logger } from 'pino';
import type { AuthType } from '../auth/client-auth.ts';
import type { HbaRule } from '../auth/hba.ts';
import type { AuthQueryPlace, CredentialStore } from '../auth/credential-store.ts';
import type { ServerConnection } from '../pool/server-connection.ts';
import type { PoolKey, Pools } from '../pool/pools.ts';
import type { Endpoint, NodeAddress } from '../routing/endpoint.ts';
import type { CancelRegistry } from './cancel-registry.ts';
import type { ClientSession } from './client-session.ts';
import type { StatementIds } from './statements.ts';
import type { ClientTls } from '../tls/client-tls.ts';
import type { AdminBackend } from '../admin/console.ts';
import type { FailureLimiter } from '../auth/failure-limit.ts';
import type { PgError } from '../protocol/errors.ts';

import type { EndpointRouter } from '../routing/route-types.ts';

export type { EndpointRouter };

export type PoolMode = 'session' | 'transaction' | 'statement' | 'none';

/** The settings a session reads, current at the moment it reads them. */
export interface SessionSettings {
  /** hba: each client's method is its first matching rule's. */
  authType: AuthType | 'hba';
  /** The auth_hba_file rules (auth_type = hba), read at start and on reload. */
  hbaRules: readonly HbaRule[];
  maxPacketSize: number;
  defaultEndpoint?: string;
  /** Limit for pgmux's own queries on a server (reset, settings), in ms. */
  queryTimeoutMs: number;
  poolModeFor(endpoint: string, user: string): PoolMode;
  /** The user an endpoint logs in to its servers as whoever the client is (its `user`), if it has one. */
  forcedUserFor(endpoint: string): string | undefined;
  maxPreparedStatements: number;
  onSessionState: 'pin' | 'error';
  /** Startup parameters dropped instead of applied (ignore_startup_parameters), lower-cased. */
  ignoredStartupParameters: ReadonlySet<string>;
  /** Unreported parameters followed from SET (track_extra_parameters), lower-cased. */
  extraTracked: ReadonlySet<string>;
  noticePerNodeStatement: boolean;
  /** Domains under which a TLS server name's first label names an endpoint. */
  sniDomains: readonly string[];
  /**
   * The client timeouts for a client that logged in as `clientUser` and
   * whose server connections log in as `serverUser` (an endpoint's forced
   * user, else the same), as PgBouncer picks each user's [users] value.
   */
  clientTimeouts(clientUser: string, serverUser: string): ClientTimeoutLimits;
  /** log_connections, log_disconnections, log_pooler_errors: those lines at info (warning) level, else at debug. */
  logConnections: boolean;
  logDisconnections: boolean;
  logPoolerErrors: boolean;
}

/** PgBouncer's client timeouts, in ms; 0 turns one off. */
export interface ClientTimeoutLimits {
  clientIdleMs: number;
  idleTransactionMs: number;
  queryMs: number;
  transactionMs: number;
}

/** Totals for SHOW STATS and /metrics (bytes of live clients are added when shown). */
export interface SessionStats {
  authSuccesses: number;
  authFailures: number;
  /** ReadyForQuery messages clients received, and those that ended a transaction ('I'). */
  queries: number;
  transactions: number;
  bytesIn: number;
  bytesOut: number;
  preparedHits: number;
  preparedMisses: number;
}

/** Everything a client session uses, wired by the server. */
export interface SessionContext {
  settings(): SessionSettings;
  endpoints(): ReadonlyMap<string, Endpoint>;
  pools: Pools;
  credentials: CredentialStore;
  cancels: CancelRegistry;
  /** Secret behind the mock SCRAM salts of unknown users. */
  mockSecret: Buffer;
  log: Logger;
  stats: SessionStats;
  /** A server connection of the client's own, with its startup settings (pool_mode = none). */
  openServer(key: PoolKey, settings: ReadonlyMap<string, string>): Promise<ServerConnection>;
  /** Why this client may not log in to the database it asked for (DISABLE on the admin console), or null. */
  loginRefusal(session: ClientSession): PgError | null;
  /**
   * Where auth_query runs for a client of `endpoint` (undefined: the admin
   * console) whose endpoint primary is `node` and database `database`:
   * the endpoint's own auth_user, auth_query and auth_dbname, else the
   * global ones.
   */
  authQueryPlace(endpoint: string | undefined, node: NodeAddress, database: string): AuthQueryPlace;
  /**
   * Counts the client against max_client_conn and max_user_client_conn;
   * the limit hit, or null. A promise where the count is kept with other
   * workers (workers > 1).
   */
  admitClient(session: ClientSession): string | null | Promise<string | null>;
  /** Failed logins per client address (auth_failure_limit). */
  authFailures: FailureLimiter;
  clientGone(session: ClientSession): void;
  routerFor(endpoint: string): EndpointRouter;
  /** A configured endpoint, or one the control plane knows. */
  resolveEndpoint(name: string): Promise<Endpoint | undefined>;
  clientTls(): ClientTls;
  /** The admin console, and who may use it. */
  admin(): { backend: AdminBackend; admins: ReadonlySet<string>; statsUsers: ReadonlySet<string> };
  statementIds: StatementIds;
}
