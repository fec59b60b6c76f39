/**
 * PgBouncer's client timeouts for one logged-in client: client_idle_timeout,
 * idle_transaction_timeout, query_timeout and transaction_timeout.
 *
 * Nothing is done per message. The forwarding loop already notes when a
 * statement starts and when its ReadyForQuery comes (ClientCounters); one
 * timer per client reads those times when the first limit could be
 * reached, and sleeps until the next. Activity only moves the times
 * later, so a timer that wakes before anything is due just sets itself
 * again; a limit that does not apply to what the client is doing now is
 * looked at again one limit's length from now, before it could be due.
 */
import type { ClientTimeoutLimits } from './context.ts';

/**
 * What a client is doing, in the words of pg_stat_activity: `active` has
 * a statement under way (sent, and its ReadyForQuery not yet come);
 * `waiting` waits for a server connection.
 */
export type ClientState = 'idle' | 'idle in transaction' | 'active' | 'waiting';

export interface ClientActivity {
  state: ClientState;
  /**
   * When the statement under way began (`active`, `waiting`), or when the
   * last one ended (the idle states); performance.now() milliseconds.
   */
  since: number;
  /** When the transaction under way began; -1 outside one. */
  transactionSince: number;
}

export interface WatchedClient {
  /** What the client is doing now; null once there is nothing to watch. */
  activity(): ClientActivity | null;
  /** The limits that apply to it now (they change with a reload). */
  timeoutLimits(): ClientTimeoutLimits;
  /** A limit was reached; `reason` is PgBouncer's word for it, which the client is told. */
  timedOut(reason: string): void;
}

/** When to look again, and the limit reached then if the client stays as it is (null: only a look). */
export interface Due {
  at: number;
  reason: string | null;
}

/**
 * The earliest moment a limit could be reached, given what the client is
 * doing now. Ties go to the first in PgBouncer's order: query_timeout,
 * idle_transaction_timeout, transaction_timeout. As in PgBouncer,
 * query_timeout counts while the client's server connection is not idle:
 * a statement running, or a transaction block left open; a client still
 * waiting for a connection is told `query_timeout`, one that has it
 * `query timeout`. Null when no limit is on.
 */
export function nextDue(a: ClientActivity, limits: ClientTimeoutLimits, now: number): Due | null {
  let due: Due | null = null;
  const consider = (ms: number, applies: boolean, since: number, reason: string) => {
    if (ms <= 0) return;
    const at = applies ? since + ms : now + ms;
    if (due === null || at < due.at) due = { at, reason: applies ? reason : null };
  };
  const idleInTransaction = a.state === 'idle in transaction';
  const active = a.state === 'active';
  consider(limits.queryMs, a.state !== 'idle', a.since, a.state === 'waiting' ? 'query_timeout' : 'query timeout');
  consider(limits.idleTransactionMs, idleInTransaction, a.since, 'idle transaction timeout');
  // A statement sent after another's ReadyForQuery, before the client read it, is a transaction of its own.
  consider(limits.transactionMs, active || idleInTransaction, a.transactionSince >= 0 ? a.transactionSince : a.since, 'transaction timeout');
  consider(limits.clientIdleMs, a.state === 'idle', a.since, 'client_idle_timeout');
  return due;
}

const wake = (t: ClientTimeouts) => t.check();

/** The one timer of a client. */
export class ClientTimeouts {
  private readonly client: WatchedClient;
  private timer: NodeJS.Timeout | null = null;

  constructor(client: WatchedClient) {
    this.client = client;
  }

  /** Starts watching, or looks again at once (the limits changed). */
  watch(): void {
    this.stop();
    this.check();
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  check(): void {
    this.timer = null;
    const activity = this.client.activity();
    if (activity === null) return;
    const now = performance.now();
    const due = nextDue(activity, this.client.timeoutLimits(), now);
    if (due === null) return;
    if (due.reason !== null && due.at <= now) {
      this.client.timedOut(due.reason);
      return;
    }
    // Timers may fire a fraction of a millisecond early: never before `at`.
    this.timer = setTimeout(wake, Math.max(1, Math.ceil(due.at - now)), this).unref();
  }
}
