import { PgError } from '../protocol/errors.ts';
import { Pool, type PoolSettings } from './pool.ts';
import type { ServerConnection } from './server-connection.ts';
import { checkSession, type CheckSession } from './server-query.ts';

/** Identifies a pool: server connections are only ever shared within one key. */
export interface PoolKey {
  endpoint: string;
  database: string;
  user: string;
  /** Which of the endpoint's nodes (index in its list); 0 when absent. */
  node?: number;
}

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
 * Every pool, keyed by (endpoint, database, user). A connection logged in as
 * one user for one database of one endpoint can only be found under that
 * key, which is what keeps clients from ever sharing across them.
 */
export class Pools {
  private readonly pools = new Map<string, Pool>();
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
    // NUL cannot appear in a startup parameter, so the joined key is unambiguous.
    const node = key.node ?? 0;
    const id = `${key.endpoint}\0${key.database}\0${key.user}\0${node}`;
    let pool = this.pools.get(id);
    if (pool === undefined) {
      const k: Required<PoolKey> = { endpoint: key.endpoint, database: key.database, user: key.user, node };
      pool = new Pool(
        id,
        this.settingsFor(k),
        () => this.opener(k),
        (s) => this.onWait?.(s),
        (err) => this.fallbackFor(k, err),
      );
      if (this.isPaused(key.database)) pool.pause();
      this.pools.set(id, pool);
    }
    return pool;
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
  async open(key: Required<PoolKey>): Promise<CheckSession> {
    return checkSession(await this.opener(key));
  }

  /**
   * The databases and users whose server logins to an endpoint have
   * succeeded, most recent pool first: whom pgmux can log in as there.
   */
  logins(endpoint: string): { database: string; user: string }[] {
    const out: { database: string; user: string }[] = [];
    const seen = new Set<string>();
    for (const pool of [...this.pools.values()].reverse()) {
      const [ep, database, user] = pool.key.split('\0');
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
    for (const [id, pool] of [...this.pools]) {
      if (!id.startsWith(`${endpoint}\0`)) continue;
      pool.shutdown();
      this.pools.delete(id);
    }
  }

  /** Databases paused by the admin console ('' pauses all). */
  private readonly paused = new Set<string>();

  private isPaused(database: string): boolean {
    return this.paused.has('') || this.paused.has(database);
  }

  /** PAUSE [db]: resolves once no pool of the database has a connection in use. */
  async pause(database: string | undefined, timeoutMs: number): Promise<void> {
    this.paused.add(database ?? '');
    const mine = () => this.all().filter((p) => database === undefined || p.key.split('\0')[1] === database);
    for (const p of mine()) p.pause();
    const deadline = Date.now() + timeoutMs;
    while (mine().some((p) => p.activeCount > 0)) {
      if (Date.now() > deadline) throw new Error('connections still in use after the wait');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** RESUME [db]. */
  resume(database?: string): void {
    if (database === undefined) this.paused.clear();
    else this.paused.delete(database);
    for (const p of this.all()) if (!this.isPaused(p.key.split('\0')[1])) p.resume();
  }

  /** Replaces one pool: its idle connections close now, busy ones when given back. */
  drainPool(pool: Pool): void {
    pool.shutdown();
    if (this.pools.get(pool.key) === pool) this.pools.delete(pool.key);
  }

  /** New settings (reload) for the pools that stay. */
  reconfigure(): void {
    for (const pool of this.pools.values()) {
      const [endpoint, database, user, node] = pool.key.split('\0');
      pool.settings = this.settingsFor({ endpoint, database, user, node: Number(node) });
    }
  }

  all(): Pool[] {
    return [...this.pools.values()];
  }

  reap(): void {
    for (const p of this.pools.values()) p.reap();
  }

  close(err: Error): void {
    clearInterval(this.reaper);
    for (const p of this.pools.values()) {
      p.rejectWaiters(err);
      p.shutdown();
    }
  }
}
