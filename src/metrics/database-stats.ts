/**
 * SHOW STATS, STATS_TOTALS and STATS_AVERAGES: per database, PgBouncer's
 * quantities with PgBouncer's definitions, so its exporters read pgmux and
 * the rows of all databases add up to pgmux's totals.
 */

/** Totals since start; times in microseconds. */
export interface DatabaseTotals {
  /** Times a client was given a server connection. */
  assignments: number;
  /** Transactions ended (ReadyForQuery 'I'). */
  xacts: number;
  /** ReadyForQuery messages clients received. */
  queries: number;
  /** Bytes from and to clients. */
  received: number;
  sent: number;
  /** Time in transactions, idle in them included. */
  xactTimeUs: number;
  /** Time from a client's query until its ReadyForQuery. */
  queryTimeUs: number;
  /** Time clients waited for a server connection. */
  waitTimeUs: number;
}

export const zeroTotals = (): DatabaseTotals => ({ assignments: 0, xacts: 0, queries: 0, received: 0, sent: 0, xactTimeUs: 0, queryTimeUs: 0, waitTimeUs: 0 });

/** Over the last stats period: rates per second, and times per transaction, query or assignment. */
export interface DatabaseAverages {
  assignments: number;
  xacts: number;
  queries: number;
  received: number;
  sent: number;
  xactTimeUs: number;
  queryTimeUs: number;
  waitTimeUs: number;
}

/**
 * PgBouncer's stats log line, without its prepared-statement counts
 * (pgmux does not count parses and binds per database).
 */
export function statsLine(a: DatabaseAverages): string {
  return `stats: ${a.xacts} xacts/s, ${a.queries} queries/s, in ${a.received} B/s, out ${a.sent} B/s, xact ${a.xactTimeUs} us, query ${a.queryTimeUs} us, wait ${a.waitTimeUs} us`;
}

/** The averages over a period of `seconds` from the totals at its start and at its end. */
function averagesOf(now: DatabaseTotals, then: DatabaseTotals, seconds: number): DatabaseAverages {
  const d = (k: keyof DatabaseTotals) => now[k] - then[k];
  const per = (total: number, count: number) => (count > 0 ? Math.round(total / count) : 0);
  return {
    assignments: Math.round(d('assignments') / seconds),
    xacts: Math.round(d('xacts') / seconds),
    queries: Math.round(d('queries') / seconds),
    received: Math.round(d('received') / seconds),
    sent: Math.round(d('sent') / seconds),
    xactTimeUs: per(d('xactTimeUs'), d('xacts')),
    queryTimeUs: per(d('queryTimeUs'), d('queries')),
    waitTimeUs: per(d('waitTimeUs'), d('assignments')),
  };
}

function sum(totals: Iterable<DatabaseTotals>): DatabaseTotals {
  const out = zeroTotals();
  for (const t of totals) for (const k of Object.keys(out) as (keyof DatabaseTotals)[]) out[k] += t[k];
  return out;
}

/**
 * The counters of every database, and the averages of the last period
 * (PgBouncer's stats_period). `current` gives the totals as they stand
 * (the counters here, plus what connected clients have sent and received
 * so far); `onPeriod` is told when a period ends (the stats log line).
 */
export class DatabaseStats {
  private readonly counters = new Map<string, DatabaseTotals>();
  private periodMs: number;
  private readonly current: () => Map<string, DatabaseTotals>;
  private readonly onPeriod: () => void;
  private previous = new Map<string, DatabaseTotals>();
  private latest = new Map<string, DatabaseTotals>();
  /** How long the last whole period lasted, in seconds (a change of period makes one shorter or longer). */
  private lastSeconds: number;
  private lastAt = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(periodMs: number, current: (counters: ReadonlyMap<string, DatabaseTotals>) => Map<string, DatabaseTotals>, onPeriod: () => void = () => {}) {
    this.periodMs = periodMs;
    this.lastSeconds = periodMs / 1000;
    this.current = () => current(this.counters);
    this.onPeriod = onPeriod;
  }

  /** A new stats_period: the period under way ends at its new length, counted from its start. */
  setPeriod(periodMs: number): void {
    if (periodMs === this.periodMs) return;
    this.periodMs = periodMs;
    if (this.timer === null) {
      this.lastSeconds = periodMs / 1000;
      return;
    }
    clearInterval(this.timer);
    const left = Math.max(0, this.lastAt + periodMs - performance.now());
    this.timer = setTimeout(() => {
      this.endPeriod();
      this.every(periodMs);
    }, left);
    this.timer.unref();
  }

  /** The counters of one database, made on first use. */
  of(database: string): DatabaseTotals {
    let c = this.counters.get(database);
    if (c === undefined) {
      c = zeroTotals();
      this.counters.set(database, c);
    }
    return c;
  }

  /** Starts taking a snapshot each period. */
  start(): void {
    this.latest = this.current();
    this.lastAt = performance.now();
    this.every(this.periodMs);
  }

  private every(periodMs: number): void {
    this.timer = setInterval(() => this.endPeriod(), periodMs);
    this.timer.unref();
  }

  private endPeriod(): void {
    const now = performance.now();
    this.lastSeconds = (now - this.lastAt) / 1000;
    this.lastAt = now;
    this.previous = this.latest;
    this.latest = this.current();
    this.onPeriod();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  totals(): Map<string, DatabaseTotals> {
    return this.current();
  }

  /** Averages over the last whole period (zero before the first has ended). */
  averages(): Map<string, DatabaseAverages> {
    const out = new Map<string, DatabaseAverages>();
    for (const [db, now] of this.latest) out.set(db, averagesOf(now, this.previous.get(db) ?? zeroTotals(), this.lastSeconds));
    return out;
  }

  /** The last whole period's averages over every database together: PgBouncer's stats log line. */
  overall(): DatabaseAverages {
    return averagesOf(sum(this.latest.values()), sum(this.previous.values()), this.lastSeconds);
  }
}

/** The process-wide counters the forwarding loops also keep (SessionStats). */
interface ProcessCounters {
  queries: number;
  transactions: number;
  preparedHits: number;
  preparedMisses: number;
}

const nowUs = () => performance.now() * 1000;

/**
 * What one client's forwarding loop counts, as the loop sees it (`stats`
 * with queries, transactions and prepared-statement counts), added to its
 * database's counters and to the process's, and timed: a query runs from
 * the first bytes the client sends after a ReadyForQuery until the next
 * ReadyForQuery; a transaction from its first query until the
 * ReadyForQuery that says idle. Queries sent together (a pipeline) are
 * timed one after the other.
 */
export class ClientCounters {
  readonly database: string;
  private readonly db: DatabaseTotals;
  private readonly process: ProcessCounters;
  private readyCount = 0;
  private xactCount = 0;
  /** Nothing is running: the client's next bytes start a query. */
  private idle = true;
  private inXact = false;
  /** When the running query and transaction began; -1 before the first. */
  private queryStart = -1;
  private xactStart = -1;

  constructor(database: string, db: DatabaseTotals, process: ProcessCounters) {
    this.database = database;
    this.db = db;
    this.process = process;
  }

  /** The client sent something: the start of a query if none is running. */
  clientSent(): void {
    if (!this.idle) return;
    this.idle = false;
    this.queryStart = nowUs();
    if (!this.inXact) {
      this.inXact = true;
      this.xactStart = this.queryStart;
    }
  }

  /**
   * A statement is under way: the client sent something after its last
   * ReadyForQuery and has not had the next one yet.
   */
  get running(): boolean {
    return !this.idle;
  }

  /**
   * When the statement under way began (the client's first bytes after
   * the last ReadyForQuery), or, with none, when the last one ended: in
   * performance.now() milliseconds; -1 before the first.
   */
  get activitySinceMs(): number {
    return this.queryStart < 0 ? -1 : this.queryStart / 1000;
  }

  /** When the transaction under way began (its first statement), in performance.now() milliseconds; -1 outside one. */
  get transactionSinceMs(): number {
    return this.inXact ? this.xactStart / 1000 : -1;
  }

  /** A server connection was lent to this client after `waitedUs`. */
  assigned(waitedUs: number): void {
    this.db.assignments++;
    this.db.waitTimeUs += waitedUs;
  }

  /** Bytes of a client that is leaving. */
  addBytes(received: number, sent: number): void {
    this.db.received += received;
    this.db.sent += sent;
  }

  // The loop's `stats.queries++` and `stats.transactions++`.
  get queries(): number {
    return this.readyCount;
  }
  set queries(n: number) {
    const added = n - this.readyCount;
    this.readyCount = n;
    this.db.queries += added;
    this.process.queries += added;
    const now = nowUs();
    if (this.queryStart >= 0) this.db.queryTimeUs += now - this.queryStart;
    // A query already sent after this one starts now.
    this.queryStart = now;
    this.idle = true;
  }

  get transactions(): number {
    return this.xactCount;
  }
  set transactions(n: number) {
    const added = n - this.xactCount;
    this.xactCount = n;
    this.db.xacts += added;
    this.process.transactions += added;
    const now = nowUs();
    if (this.xactStart >= 0) this.db.xactTimeUs += now - this.xactStart;
    this.xactStart = now;
    this.inXact = false;
  }

  get preparedHits(): number {
    return this.process.preparedHits;
  }
  set preparedHits(n: number) {
    this.process.preparedHits = n;
  }

  get preparedMisses(): number {
    return this.process.preparedMisses;
  }
  set preparedMisses(n: number) {
    this.process.preparedMisses = n;
  }
}
