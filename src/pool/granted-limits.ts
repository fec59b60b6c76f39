/**
 * A worker's pool limits when pgmux runs several: the limits kept among
 * its own pools (SharedLimits) and, for each connection beyond those it
 * holds grants for, a grant from the supervisor's ledger (see
 * src/workers/ledger.ts). roomFor() is synchronous: without a spare grant
 * it asks for one and says no; the grant's arrival pokes the pool, which
 * then opens. A closed connection's grant goes back at once.
 */
import type net from 'node:net';
import type { Pool, PoolLimits } from './pool.ts';
import { ServerConnection, type HandedConnection } from './server-connection.ts';
import { poolGroups, type SharedLimits } from './shared-limits.ts';
import type { LedgerGroup, Want } from '../workers/ledger.ts';

export interface LedgerLink {
  want(w: Want): void;
  release(key: string, n: number): void;
  unwant(key: string): void;
  /** An idle connection of pool `key` goes to worker `to`, with the grant it was opened under. */
  handOver(key: string, to: number, conn: HandedConnection, socket: net.Socket): void;
}

/** Another worker whose clients wait for a pool this worker holds connections of. */
interface Demand {
  n: number;
  /** Since when its clients wait (the ledger's queueing time). */
  since: number;
  /** When the ledger last asked: a demand it stops renewing lapses. */
  at: number;
}

/** A demand the ledger has not renewed for this long is dropped (it asks again every 200 ms while its want waits). */
const DEMAND_TTL_MS = 1000;

/** How long a want may stay unanswered with nobody waiting for it before it is withdrawn. */
const STALE_WANT_MS = 1000;

export class GrantedLimits implements PoolLimits {
  private readonly local: SharedLimits;
  private readonly ledger: LedgerLink;
  private readonly pools: () => Pool[];
  /** Grants held, by pool key. */
  private readonly held = new Map<string, number>();
  /** Connections open or opening under a grant, by pool key. */
  private readonly used = new Map<string, number>();
  /** Grants asked for and not yet given, by pool key, since when, and the pool's size the ledger was told. */
  private readonly wanted = new Map<string, { n: number; since: number; limit: number }>();
  private readonly tick: NodeJS.Timeout;
  /** Other workers waiting for connections of a pool, by pool key, then worker. */
  private readonly demands = new Map<string, Map<number, Demand>>();
  /** Connections handed over to other workers and taken over from them, for tests and the log. */
  readonly handed = { out: 0, in: 0 };

  constructor(local: SharedLimits, ledger: LedgerLink, pools: () => Pool[]) {
    this.local = local;
    this.ledger = ledger;
    this.pools = pools;
    this.tick = setInterval(() => this.withdrawStale(), STALE_WANT_MS);
    this.tick.unref();
  }

  keepsMinimum(pool: Pool): boolean {
    return this.local.keepsMinimum(pool);
  }

  roomFor(pool: Pool, evict: boolean): boolean {
    if (!this.local.roomFor(pool, evict)) return false;
    const k = pool.key;
    const used = this.used.get(k) ?? 0;
    if (used < (this.held.get(k) ?? 0)) {
      this.used.set(k, used + 1);
      return true;
    }
    // As many as waiting clients need and the pool's size allows; one for min_pool_size.
    const need = evict ? Math.max(1, Math.min(pool.waitingCount - pool.openingCount, pool.sizeNow() - pool.total)) : 1;
    const asked = this.wanted.get(k);
    const more = need - (asked?.n ?? 0);
    const limit = pool.sizeNow();
    // More wanted, or the pool may have more now (its reserve, once a
    // client waited reserve_pool_timeout): the ledger hears of it.
    if (more > 0 || (asked !== undefined && limit !== asked.limit)) {
      this.wanted.set(k, { n: Math.max(need, asked?.n ?? 0), since: asked?.since ?? Date.now(), limit });
      this.ledger.want({ key: k, limit, groups: groupsOf(pool), n: Math.max(more, 0), evict });
    }
    return false;
  }

  released(pool: Pool): void {
    const k = pool.key;
    const used = (this.used.get(k) ?? 0) - 1;
    if (used <= 0) this.used.delete(k);
    else this.used.set(k, used);
    this.giveBackSpare(k);
  }

  /** Grants have come: the pools of that key open what they are waiting for; what is left over goes back. */
  granted(key: string, n: number): void {
    this.held.set(key, (this.held.get(key) ?? 0) + n);
    const asked = this.wanted.get(key);
    if (asked !== undefined) {
      if (asked.n <= n) this.wanted.delete(key);
      else asked.n -= n;
    }
    for (const p of this.pools()) if (p.key === key) p.poke();
    this.giveBackSpare(key);
  }

  private giveBackSpare(key: string): void {
    const held = this.held.get(key) ?? 0;
    const spare = held - (this.used.get(key) ?? 0);
    if (spare <= 0) return;
    if (held - spare === 0) this.held.delete(key);
    else this.held.set(key, held - spare);
    this.ledger.release(key, spare);
  }

  /** Wants whose clients no longer wait are withdrawn, so no other worker closes a connection for nothing. */
  private withdrawStale(): void {
    const now = Date.now();
    for (const [key, w] of this.wanted) {
      if (now - w.since < STALE_WANT_MS) continue;
      if (this.pools().some((p) => p.key === key && p.waitingCount > 0)) continue;
      this.wanted.delete(key);
      this.ledger.unwant(key);
    }
  }

  /**
   * The supervisor asks for an idle connection to be closed, of a pool
   * (`key`) or of a database or user (`group`), not of pool `except`:
   * the one idle longest. Whether one was.
   */
  evict(match: { key?: string; group?: string; except?: string }): boolean {
    let victim: Pool | null = null;
    for (const p of this.pools()) {
      if (p.key === match.except || p.idleCount === 0) continue;
      const fits = match.key !== undefined ? p.key === match.key : groupsOf(p).some((g) => g.id === match.group);
      if (fits && (victim === null || p.oldestIdleSince! < victim.oldestIdleSince!)) victim = p;
    }
    return victim?.evictIdle() ?? false;
  }

  /**
   * The ledger asks, for worker `to` whose clients wait since `since`,
   * for a connection of pool `key`: an idle one goes over now (true);
   * else the next to come free goes, unless a client here has waited
   * longer (a demand, renewed while the want waits; false).
   */
  handOverFor(d: { key: string; to: number; since: number; n: number; idleOnly?: boolean }): boolean {
    for (const p of this.pools()) {
      if (p.key !== d.key || p.idleCount === 0) continue;
      const conn = p.takeIdleToHandOver();
      if (conn !== null) {
        this.sendAway(p, conn, d.to);
        return true;
      }
      // Idle ones that cannot travel (TLS): one closes, and its grant goes back.
      if (d.idleOnly !== true && p.evictIdle()) return true;
    }
    if (d.idleOnly === true) return false;
    let mine = this.demands.get(d.key);
    if (mine === undefined) this.demands.set(d.key, (mine = new Map()));
    mine.set(d.to, { n: d.n, since: d.since, at: Date.now() });
    return false;
  }

  /** The ledger's news of a demand already made: how many, and since when its next client waits. */
  redemand(d: { key: string; to: number; since: number; n: number }): void {
    const cur = this.demands.get(d.key)?.get(d.to);
    if (cur === undefined) return;
    cur.n = d.n;
    cur.since = d.since;
    cur.at = Date.now();
  }

  /** Worker `to` no longer waits for pool `key`. */
  undemand(key: string, to: number): void {
    const mine = this.demands.get(key);
    if (mine === undefined) return;
    mine.delete(to);
    if (mine.size === 0) this.demands.delete(key);
  }

  passOn(pool: Pool, conn: ServerConnection, since: number | null): boolean {
    const mine = this.demands.get(pool.key);
    if (mine === undefined) return false;
    const now = Date.now();
    let to = -1;
    let first: Demand | null = null;
    for (const [w, d] of mine) {
      if (now - d.at > DEMAND_TTL_MS) mine.delete(w);
      else if (first === null || d.since < first.since) {
        first = d;
        to = w;
      }
    }
    if (mine.size === 0) this.demands.delete(pool.key);
    // First come, first served across workers: a client here that waited longer keeps it.
    if (first === null || (since !== null && since <= first.since)) return false;
    if (--first.n <= 0) this.undemand(pool.key, to);
    this.sendAway(pool, conn, to);
    return true;
  }

  /**
   * A connection that left `pool` goes to worker `to`: statements pgmux
   * prepared on it are deallocated first (the other worker numbers its
   * statements its own way); one that cannot travel closes instead.
   */
  private sendAway(pool: Pool, conn: ServerConnection, to: number): void {
    const k = pool.key;
    const lost = () => {
      conn.close();
      this.released(pool);
    };
    const go = () => {
      const handed = conn.handOver();
      if (handed === null) return lost();
      const used = (this.used.get(k) ?? 0) - 1;
      if (used <= 0) this.used.delete(k);
      else this.used.set(k, used);
      const held = (this.held.get(k) ?? 0) - 1;
      if (held <= 0) this.held.delete(k);
      else this.held.set(k, held);
      this.handed.out++;
      this.ledger.handOver(k, to, handed.conn, handed.socket);
    };
    if (conn.prepared.size === 0) return go();
    conn.runQuery(conn.prepared.deallocateQuery(), pool.settings.queryTimeoutMs).then(
      (r) => {
        if (r.error !== null || r.status !== 0x49 /* I */) return lost();
        conn.prepared.clear();
        go();
      },
      lost,
    );
  }

  /** A connection of pool `key` handed over by another worker, with its grant: it serves a client waiting here. */
  takeOver(key: string, handed: HandedConnection, socket: net.Socket): void {
    this.held.set(key, (this.held.get(key) ?? 0) + 1);
    this.used.set(key, (this.used.get(key) ?? 0) + 1);
    const asked = this.wanted.get(key);
    if (asked !== undefined && --asked.n <= 0) this.wanted.delete(key);
    this.handed.in++;
    const conn = ServerConnection.handedOver(handed, socket);
    const pool = this.pools().find((p) => p.key === key && !p.closeNeeded);
    if (pool === undefined) {
      // The pool went meanwhile (a reload): the connection and its grant go too.
      conn.close();
      const used = (this.used.get(key) ?? 1) - 1;
      if (used <= 0) this.used.delete(key);
      else this.used.set(key, used);
      this.giveBackSpare(key);
      return;
    }
    pool.adoptHandedOver(conn);
  }

  /** What this worker holds, for tests and the log. */
  snapshot(): { held: Record<string, number>; used: Record<string, number>; handed: { out: number; in: number } } {
    return { held: Object.fromEntries(this.held), used: Object.fromEntries(this.used), handed: { ...this.handed } };
  }

  stop(): void {
    clearInterval(this.tick);
  }
}

/** The database and user limits a pool's connections count against. */
function groupsOf(pool: Pool): LedgerGroup[] {
  const { maxDbConnections = 0, maxUserConnections = 0 } = pool.settings;
  const g = poolGroups(pool);
  const out: LedgerGroup[] = [];
  if (maxDbConnections > 0) out.push({ id: `db\0${g.database}`, max: maxDbConnections });
  if (maxUserConnections > 0) out.push({ id: `user\0${g.user}`, max: maxUserConnections });
  return out;
}
