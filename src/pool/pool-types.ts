/** What pools are keyed by, configured with, and ask of the limits they share. */
import type { Pool } from './pool.ts';
import type { ServerConnection } from './server-connection.ts';

/** Identifies a pool: server connections are only ever shared within one key. */
export interface PoolKey {
  endpoint: string;
  database: string;
  user: string;
  /** Which of the endpoint's nodes (index in its list); 0 when absent. */
  node?: number;
  /**
   * The database name the client logged in with: the `[databases]` entry
   * it asked for, which the admin console's PAUSE, KILL and SHOW STATS go
   * by. Two entries that map to one database never share connections, as
   * in PgBouncer. The database, when absent.
   */
  entry?: string;
}

/** The key with every part filled in. */
export function fullKey(key: PoolKey): Required<PoolKey> {
  return { endpoint: key.endpoint, database: key.database, user: key.user, node: key.node ?? 0, entry: key.entry ?? key.database };
}

/** A pool's key as one string; NUL cannot appear in a startup parameter, so it is unambiguous. */
export function poolId(k: Required<PoolKey>): string {
  return `${k.endpoint}\0${k.database}\0${k.user}\0${k.node}\0${k.entry}`;
}

export interface PoolSettings {
  /** Most server connections this pool may have open (in use, idle or opening). */
  size: number;
  /** How long a client may wait for a server connection, in ms (0: forever). */
  queryWaitTimeoutMs: number;
  serverIdleTimeoutMs: number;
  serverLifetimeMs: number;
  /** Query that returns a server connection to a clean state (empty: none). */
  resetQuery: string;
  /** How long pgmux's own queries (reset) may take, in ms. */
  queryTimeoutMs: number;
  /**
   * A connection idle longer than this (ms) runs `checkQuery` before it is
   * lent (server_check_delay); 0: before every lend.
   */
  checkDelayMs: number;
  /** Query that proves an idle connection still works (server_check_query); empty: none. */
  checkQuery: string;
  /** Connections kept open while the pool is in use (min_pool_size); absent or 0: none. */
  minSize?: number;
  /** Connections beyond `size` for a client that waited reserveTimeoutMs (reserve_pool_size). */
  reserveSize?: number;
  /** reserve_pool_timeout in ms; absent or 0: the reserve is never used. */
  reserveTimeoutMs?: number;
  /** max_db_connections of the pool's database; absent or 0: no limit. */
  maxDbConnections?: number;
  /** max_user_connections of the pool's user; absent or 0: no limit. */
  maxUserConnections?: number;
  /** The limits the pool shares with other pools; absent: only its own. */
  limits?: PoolLimits;
}

/**
 * What a pool asks about the other pools: limits no pool can keep alone
 * (max_db_connections over every user's pool of a database,
 * max_user_connections over every database's pool of a user), and whether
 * min_pool_size applies to it now.
 */
export interface PoolLimits {
  /**
   * Room for one more connection of `pool`; with `evict`, an idle
   * connection of another pool of the same database or user may be closed
   * to make it.
   */
  roomFor(pool: Pool, evict: boolean): boolean;
  /** min_pool_size applies: a client uses the pool, or its endpoint has a forced user. */
  keepsMinimum(pool: Pool): boolean;
  /**
   * One connection of `pool` that roomFor() let open has closed, or
   * failed to open: limits kept elsewhere (a worker's grants from the
   * supervisor) give its room back.
   */
  released?(pool: Pool): void;
  /**
   * A connection of `pool` comes free and no local client has waited
   * longer than `since` (the first waiter's, or null): whether another
   * worker whose clients wait for this pool takes it (handed over, its
   * grant going with it) rather than it being kept here.
   */
  passOn?(pool: Pool, conn: ServerConnection, since: number | null): boolean;
}
