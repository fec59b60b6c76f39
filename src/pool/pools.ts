import { PgError } from '../protocol/errors.ts';
import { Pool, fullKey, poolId, type PoolKey, type PoolSettings } from './pool.ts';
import type { ServerConnection } from './server-connection.ts';
import { checkSession, type CheckSession } from './server-query.ts';

export type { PoolKey } from './pool.ts';

/** PAUSE or SUSPEND of every pool (SIGUSR1 is PAUSE), or neither. */
export type PauseMode = 'none' | 'pause' | 'suspend';

export type ServerOpener = (key: PoolKey) => Promise<ServerConnection>;

/** What the pools ask about an endpoint's nodes when one cannot be reached (the endpoint registry). */
export interface NodeFailover {
  /** Connecting to `node` failed as it does when the server is down. */
  unreachable(endpoint: string, node: number, err: Error): void;
  /** The node whose pool serves a client of `node` instead (the primary), or null: none may. */
  insteadOf(endpoint: string, node: number): number | null;
}

/**
 * Errors that say the server cannot be reached or is not accepting
 * sessions (class 08, and 57P01-57P03: shutting down, crashed, starting
 * up), as opposed to one that refused this login (a password, a database).
 */
export function cannotReach(err: unknown): boolean {
  if (!(err instanceof PgError)) return false;
  return err.code.startsWith('08') || err.code === '57P01' || err.code === '57P02' || err.code === '57P03';
}

/**
 * Every pool, keyed by (endpoint, database, user, node, entry). A connection
 * logged in as one user for one database of one endpoint can only be found
 * under that key, which is what keeps clients from ever sharing across them.
 *
 * The admin console names pools by `[databases]` entry: a name matches the
 * pools of the endpoint of that name and those of clients that logged in
 * with that database name (matches()).
 */
export class Pools {
  private readonly pools = new Map<string, Pool>();
  /** The current pools of each endpoint's node, for busy(). */
  private readonly byNode = new Map<string, Set<Pool>>();
  private readonly settingsFor: (key: PoolKey) => PoolSettings;
  private readonly opener: ServerOpener;
  private readonly reaper: NodeJS.Timeout;
  /** Told how long each client waited for a server connection, in seconds (metrics). */
  onWait: ((seconds: number) => void) | null = null;
  /** Where a client goes when its node cannot be reached; null: it gets the error. */
  failover: NodeFailover | null = null;

  constructor(settingsFor: (key: PoolKey) => PoolSettings, opener: ServerOpener) {
    this.settingsFor = settingsFor;
    this.opener = opener;
    this.reaper = setInterval(() => this.reap(), 1000);
    this.reaper.unref();
  }

  get(key: PoolKey): Pool {
    const k = fullKey(key);
    const id = poolId(k);
    let pool = this.pools.get(id);
    if (pool === undefined) {
      pool = new Pool(
        k,
        this.settingsFor(k),
        () => this.opener(k),
        (s) => this.onWait?.(s),
        (err) => this.fallbackFor(k, err),
      );
      if (this.isPaused(k)) pool.pause();
      this.pools.set(id, pool);
      const at = `${k.endpoint}\0${k.node}`;
      let set = this.byNode.get(at);
      if (set === undefined) this.byNode.set(at, (set = new Set()));
      set.add(pool);
    }
    return pool;
  }

  /**
   * How busy one node of an endpoint is for pgmux: server connections lent
   * to clients plus clients waiting for one, over all its pools. A node
   * that answers slowly keeps its connections longer, so this grows there
   * first: the read balancer steers away from it.
   */
  busy(endpoint: string, node: number): number {
    const set = this.byNode.get(`${endpoint}\0${node}`);
    if (set === undefined) return 0;
    let n = 0;
    for (const p of set) n += p.activeCount + p.waitingCount;
    return n;
  }

  /** Whether a pool is one of those the admin console's `name` (an entry or endpoint name; every pool when absent) means. */
  static matches(pool: Pool, name: string | undefined): boolean {
    return name === undefined || pool.where.entry === name || pool.where.endpoint === name;
  }

  /**
   * Connecting to a node for a waiting client failed. A node that cannot be
   * reached is reported (it leaves rotation at once), and the client is
   * served from the pool of the node the endpoint names instead, before it
   * has seen anything.
   */
  private fallbackFor(key: Required<PoolKey>, err: Error): Pool | null {
    if (this.failover === null || !cannotReach(err)) return null;
    this.failover.unreachable(key.endpoint, key.node, err);
    const other = this.failover.insteadOf(key.endpoint, key.node);
    return other === null || other === key.node ? null : this.get({ ...key, node: other });
  }

  /**
   * A session of pgmux's own on one node, logged in as pgmux logs in for
   * clients of the key's user (the same credentials, TLS and settings),
   * outside every pool's limits: for node health checks and catalog
   * look-ups.
   */
  async open(key: PoolKey & { node: number }): Promise<CheckSession> {
    return checkSession(await this.opener(fullKey(key)));
  }

  /**
   * The databases and users whose server logins to an endpoint have
   * succeeded, most recent pool first: whom pgmux can log in as there.
   */
  logins(endpoint: string): { database: string; user: string }[] {
    const out: { database: string; user: string }[] = [];
    const seen = new Set<string>();
    for (const pool of [...this.pools.values()].reverse()) {
      const { endpoint: ep, database, user } = pool.where;
      if (ep !== endpoint || pool.stats.opened === 0 || seen.has(`${database}\0${user}`)) continue;
      seen.add(`${database}\0${user}`);
      out.push({ database, user });
    }
    return out;
  }

  /**
   * Stops lending the pools of an endpoint whose nodes changed or that was
   * removed: idle connections close now, busy ones when given back, and the
   * next client gets a fresh pool.
   */
  drain(endpoint: string): void {
    for (const pool of [...this.pools.values()]) if (pool.where.endpoint === endpoint) this.drainPool(pool);
  }

  /** PAUSE or SUSPEND of everything; 'none' otherwise. */
  pauseMode: PauseMode = 'none';
  /** Names paused by PAUSE db or KILL db (entry or endpoint names). */
  private readonly pausedNames = new Set<string>();

  private isPaused(k: Required<PoolKey>): boolean {
    return this.pauseMode !== 'none' || this.pausedNames.has(k.entry) || this.pausedNames.has(k.endpoint);
  }

  /** Whether PAUSE name (or KILL name) holds that name now. */
  isNamePaused(name: string): boolean {
    return this.pausedNames.has(name);
  }

  /** The names paused one by one. */
  pausedDatabases(): string[] {
    return [...this.pausedNames];
  }

  /**
   * PAUSE [name] (or SUSPEND): no connection of those pools is lent until
   * resume(); resolves once none is in use.
   */
  async pause(name: string | undefined, timeoutMs: number, mode: Exclude<PauseMode, 'none'> = 'pause'): Promise<void> {
    this.hold(name, mode);
    const deadline = Date.now() + timeoutMs;
    while (this.inUse(name) > 0) {
      if (Date.now() > deadline) throw new Error('connections still in use after the wait');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Pauses at once, without waiting for connections in use (KILL). */
  hold(name: string | undefined, mode: Exclude<PauseMode, 'none'> = 'pause'): void {
    if (name === undefined) this.pauseMode = mode;
    else this.pausedNames.add(name);
    for (const p of this.all()) if (Pools.matches(p, name)) p.pause();
  }

  /** Server connections lent out, or being reset, in the pools `name` means. */
  inUse(name: string | undefined): number {
    let n = 0;
    for (const p of this.all()) if (Pools.matches(p, name)) n += p.activeCount;
    return n;
  }

  /** RESUME [name]; without a name, everything paused, one by one or all at once. */
  resume(name?: string): void {
    if (name === undefined) {
      this.pauseMode = 'none';
      this.pausedNames.clear();
    } else this.pausedNames.delete(name);
    for (const p of this.all()) if (p.paused && !this.isPaused(p.where)) p.resume();
  }

  /**
   * Replaced pools whose connections are still out: they close as they are
   * given back (WAIT_CLOSE waits for them).
   */
  private readonly closing = new Set<Pool>();

  /** Replaces one pool: its idle connections close now, busy ones when given back. */
  drainPool(pool: Pool): void {
    pool.shutdown();
    if (this.pools.get(pool.key) === pool) this.pools.delete(pool.key);
    this.byNode.get(`${pool.where.endpoint}\0${pool.where.node}`)?.delete(pool);
    if (pool.activeCount > 0 || pool.openingCount > 0) this.closing.add(pool);
  }

  /** Connections of replaced pools (of `name`, or all) not yet closed: RECONNECT's, KILL's and a reload's. */
  closeNeeded(name: string | undefined): number {
    let n = 0;
    for (const p of [...this.closing]) {
      if (p.activeCount === 0 && p.openingCount === 0) this.closing.delete(p);
      else if (Pools.matches(p, name)) n += p.activeCount + p.openingCount;
    }
    return n;
  }

  /** New settings (reload) for the pools that stay. */
  reconfigure(): void {
    for (const pool of this.pools.values()) pool.settings = this.settingsFor(pool.where);
  }

  all(): Pool[] {
    return [...this.pools.values()];
  }

  reap(): void {
    for (const p of this.pools.values()) p.reap();
    // Replaced pools leave once their last connection has.
    for (const p of this.closing) if (p.activeCount === 0 && p.openingCount === 0) this.closing.delete(p);
  }

  close(err: Error): void {
    clearInterval(this.reaper);
    this.closing.clear();
    for (const p of this.pools.values()) {
      p.rejectWaiters(err);
      p.shutdown();
    }
  }
}
