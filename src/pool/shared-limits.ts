import type { Pool, PoolLimits } from './pool.ts';

/**
 * The database and user a pool's connections count against. The database
 * is the one clients asked for (the `[databases]` entry, as PgBouncer counts
 * max_db_connections) when the pool's key carries it, else the pool's
 * database, within its endpoint; the user is the one pgmux logs in as.
 */
export function poolGroups(pool: Pool): { database: string; user: string } {
  // endpoint, database, user, node[, entry]: see Pools.get().
  const [endpoint, database, user, , entry] = pool.key.split('\0');
  return { database: `${endpoint}\0${entry ?? database}`, user };
}

/**
 * max_db_connections and max_user_connections: limits on server
 * connections that several pools share, which none can keep alone. A pool
 * at its group's limit may close an idle connection of another pool of the
 * group to make room (PgBouncer evicts the same way); otherwise its clients
 * wait until a connection of the group closes.
 *
 * Pools that were replaced (reload, RECONNECT) and still have connections
 * out are not counted: their connections close as they come back.
 */
export class SharedLimits implements PoolLimits {
  private readonly pools: () => Iterable<Pool>;
  private readonly inUse: (pool: Pool) => boolean;

  /**
   * @param pools every current pool
   * @param inUse whether min_pool_size applies to a pool (clients use it, or a forced user)
   */
  constructor(pools: () => Iterable<Pool>, inUse: (pool: Pool) => boolean) {
    this.pools = pools;
    this.inUse = inUse;
  }

  keepsMinimum(pool: Pool): boolean {
    return this.inUse(pool);
  }

  roomFor(pool: Pool, evict: boolean): boolean {
    const { maxDbConnections = 0, maxUserConnections = 0 } = pool.settings;
    if (maxDbConnections <= 0 && maxUserConnections <= 0) return true;
    const mine = poolGroups(pool);
    return (
      this.fits(pool, maxDbConnections, (p) => poolGroups(p).database === mine.database, evict) &&
      this.fits(pool, maxUserConnections, (p) => poolGroups(p).user === mine.user, evict)
    );
  }

  private fits(pool: Pool, max: number, sameGroup: (p: Pool) => boolean, evict: boolean): boolean {
    if (max <= 0) return true;
    const group = [...this.pools()].filter(sameGroup);
    let open = 0;
    for (const p of group) open += p.total;
    while (open >= max && evict) {
      // The connection idle longest in the group, as the one least missed.
      let victim: Pool | null = null;
      for (const p of group) {
        const since = p === pool ? null : p.oldestIdleSince;
        if (since !== null && (victim === null || since < victim.oldestIdleSince!)) victim = p;
      }
      if (victim === null || !victim.evictIdle()) break;
      open--;
    }
    return open < max;
  }
}
