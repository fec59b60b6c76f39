import { PgError, SqlState } from '../protocol/errors.ts';
import type { ServerConnection } from './server-connection.ts';
import { type PoolKey, type PoolSettings, poolId } from './pool-types.ts';

// The types stay importable from here, where they were first.
export { fullKey, poolId, type PoolKey, type PoolLimits, type PoolSettings } from './pool-types.ts';

const DISCARD_ALL = /^\s*discard\s+all\s*;?\s*$/i;

interface Waiter {
  resolve: (c: ServerConnection) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | null;
  /** When the client started waiting (Date.now()): reserve_pool_timeout counts from it. */
  since: number;
}

/**
 * The server connections of one (endpoint, database, user) key.
 *
 * Idle connections are reused last-in first-out, so a quiet pool keeps few
 * warm connections and the rest age out on server_idle_timeout. Clients wait
 * in a FIFO queue; a released connection goes straight to the first waiter.
 */
export class Pool {
  /** poolId() of `where`. */
  readonly key: string;
  /** Whose connections these are. */
  readonly where: Required<PoolKey>;
  settings: PoolSettings;
  private readonly open: () => Promise<ServerConnection>;
  private readonly idle: ServerConnection[] = [];
  private readonly waiters: Waiter[] = [];
  /** Connections lent to clients or being reset. */
  private busy = 0;
  private opening = 0;
  /**
   * ParameterStatus sets of earlier logins, by their startup settings: a
   * transaction-mode client with known settings logs in without waiting
   * for a server connection.
   */
  readonly startupParameters = new Map<string, ReadonlyMap<string, string>>();

  rememberStartupParameters(key: string, parameters: ReadonlyMap<string, string>): void {
    if (this.startupParameters.size >= 100) this.startupParameters.delete(this.startupParameters.keys().next().value!);
    this.startupParameters.set(key, parameters);
  }

  /** Statistics for the admin console and metrics. */
  stats = { opened: 0, closed: 0, lent: 0, waitTimeouts: 0 };

  private readonly onWait: (seconds: number) => void;
  /**
   * Opening a connection failed with `err`: the pool of another node that
   * serves the waiting client instead, or null (the client gets the error).
   */
  private readonly fallback: (err: Error) => Pool | null;

  constructor(
    where: Required<PoolKey>,
    settings: PoolSettings,
    open: () => Promise<ServerConnection>,
    onWait: (seconds: number) => void = () => {},
    fallback: (err: Error) => Pool | null = () => null,
  ) {
    this.onWait = onWait;
    this.where = where;
    this.key = poolId(where);
    this.settings = settings;
    this.open = open;
    this.fallback = fallback;
  }

  get total(): number {
    return this.idle.length + this.busy + this.opening;
  }
  get idleCount(): number {
    return this.idle.length;
  }
  get activeCount(): number {
    return this.busy;
  }
  get waitingCount(): number {
    return this.waiters.length;
  }
  /** Connections being opened (SHOW POOLS sv_login). */
  get openingCount(): number {
    return this.opening;
  }
  /** The idle connections, for SHOW SERVERS and SHOW SOCKETS. */
  idleConnections(): readonly ServerConnection[] {
    return this.idle;
  }
  /**
   * Replaced (RECONNECT, KILL, a reload that changed the endpoint): its
   * connections close as they come free (SHOW SERVERS close_needed).
   */
  get closeNeeded(): boolean {
    return this.closing;
  }

  /** A logged-in server connection for one client, now or when one frees up. */
  acquire(): Promise<ServerConnection> {
    const conn = this.paused ? null : this.takeIdle();
    if (conn !== null) {
      if (this.needsCheck(conn)) return this.checked(conn);
      conn.lastUsedAt = Date.now();
      return Promise.resolve(conn);
    }
    return new Promise((resolve, reject) => {
      const since = performance.now();
      const waiter: Waiter = {
        resolve: (c) => {
          this.onWait((performance.now() - since) / 1000);
          resolve(c);
        },
        reject,
        timer: null,
        since: Date.now(),
      };
      const ms = this.settings.queryWaitTimeoutMs;
      if (ms > 0) {
        waiter.timer = setTimeout(() => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          this.stats.waitTimeouts++;
          reject(new PgError(SqlState.PROTOCOL_VIOLATION, 'query_wait_timeout', {
            detail: `No server connection became free within ${ms / 1000} s.`,
            hint: 'Raise default_pool_size or query_wait_timeout, or look for clients holding connections.',
          }));
        }, ms);
      }
      this.waiters.push(waiter);
      this.grow();
    });
  }

  /** An idle connection at once, or null (none idle, paused, or clients waiting first). */
  tryAcquire(): ServerConnection | null {
    if (this.paused || this.waiters.length > 0) return null;
    // One that must be checked first is lent by acquire(), which can wait.
    const next = this.nextIdle();
    if (next === null || this.needsCheck(next)) return null;
    const conn = this.takeIdle()!;
    conn.lastUsedAt = Date.now();
    return conn;
  }

  /** Whether an idle connection has been idle long enough to be checked before it is lent. */
  private needsCheck(conn: ServerConnection): boolean {
    const s = this.settings;
    return s.checkQuery !== '' && (s.checkDelayMs === 0 || Date.now() - conn.lastUsedAt > s.checkDelayMs);
  }

  /**
   * Runs server_check_query on a connection taken from the idle list; one
   * that fails it is closed and the client is served by the next one (or a
   * new one), never given the broken one.
   */
  private checked(conn: ServerConnection): Promise<ServerConnection> {
    return conn.runQuery(this.settings.checkQuery, this.settings.queryTimeoutMs).then(
      (r) => {
        if (r.error === null && r.status === 0x49 /* I */) {
          conn.lastUsedAt = Date.now();
          return conn;
        }
        this.discard(conn);
        return this.acquire();
      },
      () => {
        this.discard(conn);
        return this.acquire();
      },
    );
  }

  /** Takes back a connection whose client is done with it: reset, then reuse or close. */
  release(conn: ServerConnection, opts: { reset: boolean } = { reset: true }): void {
    conn.setOwner(null);
    if (conn.closed || Date.now() - conn.createdAt > this.settings.serverLifetimeMs) {
      this.discard(conn);
      return;
    }
    if (!opts.reset || this.settings.resetQuery === '') {
      this.giveBack(conn);
      return;
    }
    conn.runQuery(this.settings.resetQuery, this.settings.queryTimeoutMs).then(
      (r) => {
        if (r.error !== null || r.status !== 0x49 /* I */) {
          this.discard(conn);
          return;
        }
        // DISCARD ALL (the default) drops prepared statements and settings;
        // a custom reset query is trusted to leave what it does not mention.
        if (DISCARD_ALL.test(this.settings.resetQuery)) {
          conn.prepared.clear();
          conn.sessionSets.clear();
        }
        this.giveBack(conn);
      },
      () => this.discard(conn),
    );
  }

  /** Closes a connection in use that cannot be trusted any more. */
  discard(conn: ServerConnection): void {
    conn.setOwner(null);
    conn.onClose = null;
    conn.close();
    this.busy--;
    this.closedOne();
    this.grow();
  }

  /** Closes idle connections past server_idle_timeout or server_lifetime. */
  reap(now = Date.now()): void {
    // server_idle_timeout does not take the pool below min_pool_size; server_lifetime does.
    const floor = this.minimumNow();
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const c = this.idle[i];
      if ((now - c.lastUsedAt > this.settings.serverIdleTimeoutMs && this.total > floor) || now - c.createdAt > this.settings.serverLifetimeMs) {
        this.idle.splice(i, 1);
        c.onClose = null;
        c.close();
        this.closedOne();
      }
    }
    // Room another pool has made (max_db_connections, max_user_connections),
    // the reserve and min_pool_size are looked at again at every reap.
    if (this.waiters.length > 0) this.grow();
    this.fillToMinimum();
  }

  /** When the connection idle longest was last used, or null when none is idle. */
  get oldestIdleSince(): number | null {
    return this.idle[0]?.lastUsedAt ?? null;
  }

  /**
   * Closes the connection idle longest, making room for another pool of the
   * same database or user (max_db_connections, max_user_connections); false
   * when none is idle.
   */
  evictIdle(): boolean {
    const c = this.idle.shift();
    if (c === undefined) return false;
    c.onClose = null;
    c.close();
    this.closedOne();
    return true;
  }

  /**
   * Takes an idle connection that can go to another worker process (see
   * ServerConnection.canHandOver), the one used last; it leaves the pool
   * without counting as closed: its grant goes with it. Null when none.
   */
  takeIdleToHandOver(): ServerConnection | null {
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const c = this.idle[i];
      if (!c.canHandOver) continue;
      this.idle.splice(i, 1);
      c.onClose = null;
      return c;
    }
    return null;
  }

  /**
   * A connection another worker handed over joins the pool, and goes to
   * whoever waits: checked first (server_check_delay) if it sat idle
   * there that long, as one idle here would be.
   */
  adoptHandedOver(conn: ServerConnection): void {
    conn.pool = this;
    this.busy++;
    if (this.waiters.length > 0 && !this.paused && !this.closing && this.needsCheck(conn)) {
      const w = this.waiters.shift()!;
      if (w.timer) clearTimeout(w.timer);
      this.stats.lent++;
      this.checked(conn).then(w.resolve, w.reject);
      return;
    }
    this.giveBack(conn, conn.lastUsedAt);
  }

  /** Once set, connections coming back are closed instead of kept (shutdown). */
  private closing = false;

  /** Closes every idle connection, and those given back from now on (shutdown). */
  shutdown(): void {
    this.closing = true;
    this.closeIdle();
  }

  /** Closes every idle connection (shutdown, reconnect). */
  closeIdle(): void {
    for (const c of this.idle.splice(0)) {
      c.onClose = null;
      c.close();
      this.closedOne();
    }
  }

  /** Fails every waiting client (shutdown). */
  rejectWaiters(err: Error): void {
    for (const w of this.waiters.splice(0)) {
      if (w.timer) clearTimeout(w.timer);
      w.reject(err);
    }
  }

  /** The idle connection takeIdle() would lend, after dropping those known to be dead. */
  private nextIdle(): ServerConnection | null {
    for (;;) {
      const c = this.idle.at(-1);
      if (c === undefined) return null;
      if (c.usable) return c;
      // The server ended it while it sat idle (its close may not have been
      // handled yet): it leaves the pool instead of reaching a client.
      this.idle.pop();
      c.onClose = null;
      c.close();
      this.closedOne();
    }
  }

  /** Takes the most recently used idle connection; its lastUsedAt still says since when it was idle. */
  private takeIdle(): ServerConnection | null {
    const c = this.nextIdle();
    if (c === null) return null;
    this.idle.pop();
    c.onClose = null;
    this.busy++;
    this.stats.lent++;
    return c;
  }

  /** `idleSince`: when the connection was last used, if not now (one handed over idle). */
  private giveBack(conn: ServerConnection, idleSince = Date.now()): void {
    this.busy--;
    // PAUSE disconnects from the servers, as PgBouncer's does (for a
    // database restart): a connection given back while paused is closed.
    if (this.closing || this.paused) {
      conn.close();
      this.closedOne();
      return;
    }
    conn.lastUsedAt = idleSince;
    // Another worker's clients that waited longer get it (its grant goes with it).
    if (this.settings.limits?.passOn?.(this, conn, this.waiters[0]?.since ?? null) === true) {
      // Clients here wait on: they ask for the next one.
      if (this.waiters.length > 0) this.grow();
      return;
    }
    const w = this.paused ? undefined : this.waiters.shift();
    if (w !== undefined) {
      if (w.timer) clearTimeout(w.timer);
      this.busy++;
      this.stats.lent++;
      conn.lastUsedAt = Date.now();
      w.resolve(conn);
      return;
    }
    this.idle.push(conn);
    // A pooled connection that dies (server restart, pg_terminate_backend)
    // leaves the idle list at once rather than failing its next client.
    conn.onClose = () => {
      const i = this.idle.indexOf(conn);
      if (i >= 0) this.idle.splice(i, 1);
      this.closedOne();
    };
  }

  /**
   * PAUSE: no connection is lent until resume(); clients wait in the queue
   * (query_wait_timeout still applies). Those in use finish normally and
   * are closed when given back; idle ones close now.
   */
  paused = false;

  pause(): void {
    this.paused = true;
    this.closeIdle();
  }

  resume(): void {
    this.paused = false;
    for (;;) {
      if (this.waiters.length === 0) break;
      const c = this.takeIdle();
      if (c === null) break;
      const w = this.waiters.shift()!;
      if (w.timer) clearTimeout(w.timer);
      if (this.needsCheck(c)) this.checked(c).then(w.resolve, w.reject);
      else {
        c.lastUsedAt = Date.now();
        w.resolve(c);
      }
    }
    this.grow();
  }

  /**
   * How many connections the pool may have now: its size, and its reserve
   * as well once the first client in the queue has waited
   * reserve_pool_timeout.
   */
  sizeNow(): number {
    const { size, reserveSize = 0, reserveTimeoutMs = 0 } = this.settings;
    const first = this.waiters[0];
    if (reserveSize <= 0 || reserveTimeoutMs <= 0 || first === undefined || Date.now() - first.since < reserveTimeoutMs) return size;
    return size + reserveSize;
  }

  /** min_pool_size (at most the pool's size) while it applies to the pool, else 0. */
  private minimumNow(): number {
    const s = this.settings;
    const min = Math.min(s.minSize ?? 0, s.size);
    return min > 0 && (s.limits?.keepsMinimum(this) ?? true) ? min : 0;
  }

  /**
   * Opens one connection while the pool is in use and below min_pool_size,
   * then the next once it is open: one at a time, so a server that refuses
   * is asked again at the next reap, not in a loop. A minimum never evicts
   * another pool's connection.
   */
  private fillToMinimum(): void {
    const min = this.minimumNow();
    if (min <= 0 || this.total >= min || this.opening > 0 || this.paused || this.closing) return;
    if (this.settings.limits !== undefined && !this.settings.limits.roomFor(this, false)) return;
    this.opening++;
    this.open().then(
      (conn) => {
        this.adopt(conn);
        this.fillToMinimum();
      },
      () => {
        this.opening--;
        this.settings.limits?.released?.(this);
      },
    );
  }

  /** A connection opened ahead of its use joins the pool, and goes to whoever waits. */
  private adopt(conn: ServerConnection): void {
    this.opening--;
    this.stats.opened++;
    conn.pool = this;
    this.busy++;
    this.giveBack(conn);
  }

  /** A connection of the pool has closed. */
  private closedOne(): void {
    this.stats.closed++;
    this.settings.limits?.released?.(this);
  }

  /**
   * Room has come that roomFor() could not give at once (a grant from the
   * supervisor): open what waiting clients and min_pool_size need.
   */
  poke(): void {
    this.grow();
    this.fillToMinimum();
  }

  /** Opens connections while clients wait and the pool has room. */
  private grow(): void {
    if (this.paused) return;
    while (this.waiters.length > this.opening && this.total < this.sizeNow() && (this.settings.limits?.roomFor(this, true) ?? true)) {
      this.opening++;
      this.open().then(
        (conn) => this.adopt(conn),
        (err: Error) => {
          this.opening--;
          this.settings.limits?.released?.(this);
          const w = this.waiters.shift();
          if (w === undefined) return;
          if (w.timer) clearTimeout(w.timer);
          // A node that cannot be reached: another node (the primary) may
          // serve the client before it sees anything. Otherwise the server
          // refused or is down, and the first waiter hears why rather than
          // waiting out query_wait_timeout.
          const other = this.fallback(err);
          if (other === null || other === this) w.reject(err);
          else other.acquire().then(w.resolve, w.reject);
        },
      );
    }
  }
}
