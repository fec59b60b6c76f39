/**
 * A worker's pool limits when pgmux runs several: the limits kept among
 * its own pools (SharedLimits) and, for each connection beyond those it
 * holds grants for, a grant from the supervisor's ledger (see
 * src/workers/ledger.ts). roomFor() is synchronous: without a spare grant
 * it asks for one and says no; the grant's arrival pokes the pool, which
 * then opens. A closed connection's grant goes back at once.
 */
import type { Pool, PoolLimits } from './pool.ts';
import { poolGroups, type SharedLimits } from './shared-limits.ts';
import type { LedgerGroup, Want } from '../workers/ledger.ts';

export interface LedgerLink {
  want(w: Want): void;
  release(key: string, n: number): void;
  unwant(key: string): void;
}

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
  /** Grants asked for and not yet given, by pool key, and since when. */
  private readonly wanted = new Map<string, { n: number; since: number }>();
  private readonly tick: NodeJS.Timeout;

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
    if (more > 0) {
      this.wanted.set(k, { n: need, since: asked?.since ?? Date.now() });
      this.ledger.want({ key: k, limit: pool.sizeNow(), groups: groupsOf(pool), n: more, evict });
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

  /** What this worker holds, for tests and the log. */
  snapshot(): { held: Record<string, number>; used: Record<string, number> } {
    return { held: Object.fromEntries(this.held), used: Object.fromEntries(this.used) };
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
