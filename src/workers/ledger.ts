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
  /** When it was queued: across workers, clients are served first come first served. */
  since: number;
  /** Workers asked to hand over a connection for it, told when it no longer waits. */
  asked: Set<number>;
  /**
   * Other workers were asked for an idle connection before any is opened
   * for it ('probing' while they answer): one sitting idle serves sooner
   * than a new login, and the server sees no more backends than it must.
   */
  probe: 'no' | 'probing' | 'done';
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
  readonly stats = { granted: 0, released: 0, queued: 0, evictsAsked: 0, evicted: 0, handedOver: 0 };

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
      if (i >= 0) this.undemand(this.queue.splice(i, 1)[0]);
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
      this.queue.push({ ...w, worker, evictedAt: 0, since: Date.now(), asked: new Set(), probe: 'no' });
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
    for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i].worker === worker) this.undemand(this.queue.splice(i, 1)[0]);
    this.process();
  }

  /**
   * Worker `from` handed an idle connection of pool `key` to worker `to`
   * (on its way through the supervisor): the grant moves with it, and
   * counts for `to`'s want. `to` not running: the connection is closed
   * and its grant is free.
   */
  handedOver(from: number, to: number, key: string, alive: boolean): void {
    const have = this.held.get(from)?.get(key) ?? 0;
    if (have > 0) this.add(from, key, -1);
    if (alive) {
      this.add(to, key, 1);
      this.stats.handedOver++;
      const i = this.queue.findIndex((q) => q.worker === to && q.key === key);
      const w = i >= 0 ? this.queue[i] : undefined;
      if (w !== undefined && --w.n <= 0) this.undemand(this.queue.splice(i, 1)[0]);
      else if (w !== undefined) {
        // Served just now: its next client counts as waiting from now, so
        // that the holders' own clients that waited longer come first and
        // connections do not all flow one way.
        w.since = Date.now();
        for (const worker of w.asked) this.link.tell(worker, 'demand', { key: w.key, to: w.worker, since: w.since, n: w.n });
      }
      this.log.debug({ from, to, pool: key.split('\0').slice(0, 3).join('/'), total: this.total(key) }, 'server connection handed over');
    }
    this.process();
  }

  /** A connection handed over never reached worker `to`: its grant is free. */
  lost(to: number, key: string): void {
    this.release(to, key, 1);
  }

  /** Other workers holding grants of the want's pool. */
  private idleHolders(w: Queued): number[] {
    const out: number[] = [];
    for (const [worker, keys] of this.held) if (worker !== w.worker && (keys.get(w.key) ?? 0) > 0 && this.live().includes(worker)) out.push(worker);
    return out;
  }

  /** Asks `holders` in turn for a connection of the want's pool idle now; then the want goes on as any other. */
  private async probeIdle(w: Queued, holders: number[]): Promise<void> {
    for (const worker of holders) {
      if (!this.queue.includes(w)) break;
      const now = await this.link.ask<boolean>(worker, 'hand-over', { key: w.key, to: w.worker, since: w.since, n: 1, idleOnly: true }, 2000).catch(() => false);
      if (now) break;
    }
    w.probe = 'done';
    this.process();
  }

  /** A want no longer waits: the workers asked to hand over for it are told. */
  private undemand(w: Queued): void {
    for (const worker of w.asked) this.link.tell(worker, 'undemand', { key: w.key, to: w.worker });
    w.asked.clear();
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
      if (w.probe === 'probing') {
        i++;
        continue;
      }
      if (w.probe === 'no' && w.evict && this.binding(w) === null) {
        const others = this.idleHolders(w);
        w.probe = others.length > 0 ? 'probing' : 'done';
        if (w.probe === 'probing') {
          void this.probeIdle(w, others);
          i++;
          continue;
        }
      }
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
        this.undemand(this.queue.splice(i, 1)[0]);
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
    if (full.key !== undefined) {
      // The pool's own limit: a connection of it can go over whole, with
      // its grant, rather than one closing here and one opening there.
      // Each holder hands an idle one now, or the next that comes free.
      for (const h of holders) {
        if (h.worker === w.worker) continue;
        this.stats.evictsAsked++;
        w.asked.add(h.worker);
        const now = await this.link.ask<boolean>(h.worker, 'hand-over', { key: w.key, to: w.worker, since: w.since, n: w.n }, 2000).catch(() => false);
        if (now) return;
        // Satisfied or withdrawn meanwhile: the others need not be asked.
        if (!this.queue.includes(w)) return;
      }
      return;
    }
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
