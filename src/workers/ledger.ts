/**
 * The supervisor's ledger of server connections, so that pool limits hold
 * for the whole pgmux rather than for each worker: default_pool_size (with
 * a pool's reserve), max_db_connections and max_user_connections.
 *
 * A worker holds one grant per server connection it has open or opening.
 * It asks for grants ('want') only when a pool would open a connection
 * beyond those it holds, and gives one back ('release') when a connection
 * closes: nothing is asked per transaction. A want that does not fit waits
 * in line; meanwhile the ledger asks workers holding grants of the same
 * pool (or database, or user) to close an idle connection ('evict'), so
 * grants move to the worker whose clients wait. A worker whose clients
 * wait has no idle connection of that pool, so it is never asked.
 */
import type { Logger } from 'pino';
import type { LinkEndpoint } from './process-link.ts';

/** A limit a pool's connections count against besides its own size. */
export interface LedgerGroup {
  /** `db\0endpoint\0database` or `user\0name`. */
  id: string;
  max: number;
}

export interface Want {
  /** The pool's id (poolId). */
  key: string;
  /** Connections of that pool allowed in the whole pgmux now (its size, with its reserve once clients waited for it). */
  limit: number;
  groups: LedgerGroup[];
  /** How many more connections the worker wants. */
  n: number;
  /** Whether idle connections of other workers may be closed for these (false for min_pool_size). */
  evict: boolean;
}

interface Queued extends Want {
  worker: number;
  /** When the last round of evictions for it was asked (Date.now()). */
  evictedAt: number;
}

/** How often a waiting want asks again for idle connections to be closed. */
const EVICT_RETRY_MS = 200;

export class Ledger {
  private readonly link: LinkEndpoint;
  private readonly live: () => number[];
  private readonly log: Logger;
  /** Grants held, by worker, then pool key. */
  private readonly held = new Map<number, Map<string, number>>();
  /** Every grant of each pool key and of each group. */
  private readonly totals = new Map<string, number>();
  /** The groups of each pool key, as its last want said. */
  private readonly groupsOf = new Map<string, LedgerGroup[]>();
  private readonly queue: Queued[] = [];
  private retry: NodeJS.Timeout | null = null;
  /** Grants given and evictions asked, for the log and tests. */
  readonly stats = { granted: 0, released: 0, queued: 0, evictsAsked: 0, evicted: 0 };

  constructor(link: LinkEndpoint, live: () => number[], log: Logger) {
    this.link = link;
    this.live = live;
    this.log = log;
    link.handlers.set('want', (payload, from) => this.want(from, payload as Want));
    link.handlers.set('release', (payload, from) => {
      const { key, n } = payload as { key: string; n: number };
      this.release(from, key, n);
    });
    link.handlers.set('unwant', (payload, from) => {
      const { key } = payload as { key: string };
      const i = this.queue.findIndex((q) => q.worker === from && q.key === key);
      if (i >= 0) this.queue.splice(i, 1);
    });
    link.handlers.set('ledger', () => this.snapshot());
  }

  private total(id: string): number {
    return this.totals.get(id) ?? 0;
  }

  private add(worker: number, key: string, n: number): void {
    let mine = this.held.get(worker);
    if (mine === undefined) this.held.set(worker, (mine = new Map()));
    mine.set(key, (mine.get(key) ?? 0) + n);
    if (mine.get(key) === 0) mine.delete(key);
    this.totals.set(key, this.total(key) + n);
    for (const g of this.groupsOf.get(key) ?? []) this.totals.set(g.id, this.total(g.id) + n);
  }

  private want(worker: number, w: Want): void {
    this.groupsOf.set(w.key, w.groups);
    const same = this.queue.find((q) => q.worker === worker && q.key === w.key);
    if (same !== undefined) {
      same.n += w.n;
      same.limit = w.limit;
      same.evict ||= w.evict;
    } else {
      this.queue.push({ ...w, worker, evictedAt: 0 });
      this.stats.queued++;
    }
    this.process();
  }

  private release(worker: number, key: string, n: number): void {
    const have = this.held.get(worker)?.get(key) ?? 0;
    const back = Math.min(n, have);
    if (back <= 0) return;
    this.add(worker, key, -back);
    this.log.debug({ worker, pool: key.split('\0').slice(0, 3).join('/'), n: back, total: this.total(key) }, 'connection grants given back');
    this.stats.released += back;
    this.process();
  }

  /** A worker died: its grants are free (its server connections went with it), its wants are void. */
  workerGone(worker: number): void {
    for (const [key, n] of this.held.get(worker) ?? []) this.add(worker, key, -n);
    this.held.delete(worker);
    for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i].worker === worker) this.queue.splice(i, 1);
    this.process();
  }

  /** The limit that keeps one more connection of `w` out, or null when it fits. */
  private binding(w: Queued): { key?: string; group?: string } | null {
    if (this.total(w.key) >= w.limit) return { key: w.key };
    for (const g of w.groups) if (g.max > 0 && this.total(g.id) >= g.max) return { group: g.id };
    return null;
  }

  /** Grants what fits, first come first served; asks for evictions for what does not. */
  private process(): void {
    for (let i = 0; i < this.queue.length; ) {
      const w = this.queue[i];
      let given = 0;
      while (w.n > 0 && this.binding(w) === null) {
        this.add(w.worker, w.key, 1);
        w.n--;
        given++;
      }
      if (given > 0) {
        this.log.debug({ worker: w.worker, pool: w.key.split('\0').slice(0, 3).join('/'), n: given, total: this.total(w.key) }, 'connection grants given');
        this.stats.granted += given;
        this.link.tell(w.worker, 'granted', { key: w.key, n: given });
      }
      if (w.n <= 0) {
        this.queue.splice(i, 1);
        continue;
      }
      const full = this.binding(w);
      if (w.evict && full !== null && Date.now() - w.evictedAt >= EVICT_RETRY_MS) {
        this.log.debug({ worker: w.worker, pool: w.key.split('\0').slice(0, 3).join('/'), n: w.n, held: this.snapshot().held }, 'connection grants wanted; asking for idle connections to be closed');
        w.evictedAt = Date.now();
        void this.evictFor(w, full);
      }
      i++;
    }
    if (this.queue.length > 0 && this.retry === null) {
      this.retry = setTimeout(() => {
        this.retry = null;
        this.process();
      }, EVICT_RETRY_MS);
      this.retry.unref();
    }
  }

  /**
   * Asks the workers holding grants of the full pool (or group), most
   * grants first, to close one idle connection of it, until one does; its
   * release then lets the want in.
   */
  private async evictFor(w: Queued, full: { key?: string; group?: string }): Promise<void> {
    const holders: { worker: number; n: number }[] = [];
    for (const [worker, keys] of this.held) {
      let n = 0;
      for (const [key, k] of keys) {
        if (full.key !== undefined ? key === full.key : (this.groupsOf.get(key) ?? []).some((g) => g.id === full.group)) n += k;
      }
      if (n > 0 && this.live().includes(worker)) holders.push({ worker, n });
    }
    holders.sort((a, b) => b.n - a.n);
    for (const h of holders) {
      this.stats.evictsAsked++;
      const closed = await this.link.ask<boolean>(h.worker, 'evict', { ...full, except: h.worker === w.worker ? w.key : undefined }, 2000).catch(() => false);
      if (closed) {
        this.stats.evicted++;
        return;
      }
    }
  }

  /** What the ledger holds now (the 'ledger' question). */
  snapshot(): { held: Record<number, Record<string, number>>; queued: { worker: number; key: string; n: number }[]; stats: Ledger['stats'] } {
    const held: Record<number, Record<string, number>> = {};
    for (const [w, keys] of this.held) held[w] = Object.fromEntries(keys);
    return { held, queued: this.queue.map((q) => ({ worker: q.worker, key: q.key, n: q.n })), stats: { ...this.stats } };
  }
}
