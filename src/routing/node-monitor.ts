import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { NodeView } from './router.ts';
import { PrimaryWal } from './primary-wal.ts';

/** 'X/Y' (a pg_lsn) as a number of bytes. */
export function parseLsn(text: string): bigint {
  const slash = text.indexOf('/');
  if (slash < 0) throw new Error(`invalid LSN "${text}"`);
  return (BigInt(`0x${text.slice(0, slash)}`) << 32n) | BigInt(`0x${text.slice(slash + 1)}`);
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

export interface MonitoredNode {
  host: string;
  port: number;
  weight: number;
}

export interface NodeState {
  index: number;
  host: string;
  port: number;
  role: 'primary' | 'replica' | 'unknown';
  up: boolean;
  weight: number;
  lagBytes: number;
  lagSeconds: number;
  replayLsn: string | null;
  lastCheckAt: number;
  lastError: string | null;
  reads: number;
  writes: number;
}

/** A session of pgmux's own on one node, for queries whose rows it reads. */
export interface CheckSession {
  rows(sql: string, timeoutMs: number): Promise<Record<string, string | null>[]>;
  close(): void;
  readonly closed: boolean;
}

/**
 * Logs in to a node for a check. Null when nobody to log in as is known
 * yet (checks then wait for the first client's login); throws or rejects
 * when the login fails.
 */
export type CheckLogin = (node: number) => Promise<CheckSession> | null;

export interface MonitorOptions {
  /** How checks log in; null: no checks, every node up in its listed role. */
  connect: CheckLogin | null;
  /** Who the checks log in as, for messages. */
  checkUser: () => string | null;
  healthCheckPeriodMs: number;
  healthCheckTimeoutMs: number;
  maxRetries: number;
  replicationCheckPeriodMs: number;
  maxReplicaLagMs: number;
  log: Logger;
  /** Statements pgmux has in flight on a node (connections lent plus clients waiting); none known: 0. */
  busy?: (node: number) => number;
}

interface Probe {
  state: NodeState;
  session: CheckSession | null;
  failures: number;
  lsn: bigint | null;
  timer: NodeJS.Timeout | null;
}

// The primary's insert position, not its write position: with
// synchronous_commit off a commit reaches the write position only when the
// WAL writer gets to it, up to wal_writer_delay later, and both lag and
// read-your-writes count from the commit.
const CHECK_SQL = `SELECT pg_catalog.pg_is_in_recovery() AS recovery,
  CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_insert_lsn() END::text AS lsn`;

/**
 * Knows the state of one endpoint's nodes: which is the primary (asked, not
 * assumed, so a promoted replica is noticed), which are up, how far each
 * replica lags, and the primary's recent WAL positions for read-your-writes.
 * Emits 'change' with a NodeState when a node's role or health changes.
 */
export class NodeMonitor extends EventEmitter implements NodeView {
  private readonly probes: Probe[];
  private readonly opts: MonitorOptions;
  /** The primary's WAL positions and when the checks that read them were sent. */
  private readonly wal: PrimaryWal;
  private stopped = false;

  constructor(nodes: MonitoredNode[], opts: MonitorOptions) {
    super();
    this.opts = opts;
    // Long enough to tell how far past max_replica_lag a replica is.
    this.wal = new PrimaryWal(Math.max(60_000, 2 * opts.maxReplicaLagMs));
    this.probes = nodes.map((n, index) => ({
      state: {
        index,
        host: n.host,
        port: n.port,
        // As listed until a check says otherwise (a promoted replica).
        role: index === 0 ? 'primary' : 'replica',
        up: true,
        weight: n.weight,
        lagBytes: 0,
        lagSeconds: 0,
        replayLsn: null,
        lastCheckAt: 0,
        lastError: null,
        reads: 0,
        writes: 0,
      },
      session: null,
      failures: 0,
      lsn: null,
      timer: null,
    }));
  }

  /** Whether the nodes are checked at all. */
  get checking(): boolean {
    return this.opts.connect !== null;
  }

  /** First round of checks (so routing starts informed), then checks on a period. */
  async start(): Promise<void> {
    if (this.opts.connect === null) return;
    await this.checkNow();
    for (const p of this.probes) this.schedule(p);
  }

  stop(): void {
    this.stopped = true;
    for (const p of this.probes) {
      if (p.timer !== null) clearTimeout(p.timer);
      p.session?.close();
      p.session = null;
    }
  }

  /**
   * Connecting to `node` for a client failed as it does when the server is
   * down: it leaves rotation now rather than after the next failed checks,
   * and comes back when a check logs in to it again.
   */
  unreachable(node: number, err: Error): void {
    const p = this.probes[node];
    if (p === undefined) return;
    p.state.lastError = err.message;
    p.failures = Math.max(p.failures, this.opts.maxRetries + 1);
    // A check session opened before may still answer; only a new login brings the node back.
    p.session?.close();
    p.session = null;
    if (p.state.up) this.setUp(p, false);
  }

  /** Runs one round of checks on every node now (tests, admin console). */
  async checkNow(): Promise<void> {
    await Promise.all(this.probes.map((p) => this.check(p, false)));
  }

  private schedule(p: Probe): void {
    if (this.stopped) return;
    const ms = p.state.up ? Math.min(this.opts.replicationCheckPeriodMs, this.opts.healthCheckPeriodMs) : this.opts.healthCheckPeriodMs;
    p.timer = setTimeout(() => void this.check(p), ms);
    p.timer.unref();
  }

  private async check(p: Probe, reschedule = true): Promise<void> {
    const timeout = this.opts.healthCheckTimeoutMs;
    try {
      if (p.session === null || p.session.closed) {
        const opening = this.opts.connect!(p.state.index);
        // Nobody to log in as yet: the nodes keep what is known of them.
        if (opening === null) return;
        p.session = await withTimeout(opening, timeout, (late) => late.close());
        await p.session.rows("SET application_name = 'pgmux health check'", timeout);
      }
      const sentAt = Date.now();
      const [row] = await p.session.rows(CHECK_SQL, timeout);
      this.record(p, { recovery: row.recovery === 't', lsn: row.lsn }, sentAt);
    } catch (err) {
      p.session?.close();
      p.session = null;
      p.failures++;
      p.state.lastError = (err as Error).message;
      if (!cannotReach(err)) this.cannotLogIn(err as Error);
      if (p.state.up && p.failures > this.opts.maxRetries) this.setUp(p, false);
    } finally {
      p.state.lastCheckAt = Date.now();
      if (reschedule) this.schedule(p);
    }
  }

  private loginWarned = false;

  /**
   * A check that fails for another reason than a node being down (a
   * password, a missing privilege): said once, at warn, since the nodes
   * then leave rotation only when connecting to them fails.
   */
  private cannotLogIn(err: Error): void {
    if (this.loginWarned) return;
    this.loginWarned = true;
    this.opts.log.warn(
      { user: this.opts.checkUser() ?? undefined, error: err.message },
      'health checks cannot log in: a node that goes down leaves rotation only when connecting to it fails (set health_check_user and its password in [users.NAME])',
    );
  }

  private record(p: Probe, row: { recovery: boolean; lsn: string | null }, sentAt: number): void {
    p.failures = 0;
    p.state.lastError = null;
    const role = row.recovery ? 'replica' : 'primary';
    if (p.state.role !== role) {
      const before = p.state.role;
      p.state.role = role;
      if (before !== 'unknown') this.opts.log.warn({ node: p.state.index, host: p.state.host, port: p.state.port, from: before, to: role }, 'node role changed');
      this.emit('change', p.state);
    }
    if (!p.state.up) this.setUp(p, true);
    p.lsn = row.lsn === null ? null : parseLsn(row.lsn);
    p.state.replayLsn = row.lsn;
    if (role === 'primary' && p.lsn !== null) {
      this.wal.note(p.lsn, sentAt);
      p.state.lagBytes = 0;
      p.state.lagSeconds = 0;
      return;
    }
    // As operators read pg_stat_replication: bytes between the primary's
    // position and the replay position, and time only while WAL is
    // outstanding, since that WAL was written. The time of the last
    // replayed transaction would make a replica that has everything look
    // late after a quiet spell.
    if (p.lsn === null) return;
    p.state.lagBytes = this.wal.bytesBehind(p.lsn);
    p.state.lagSeconds = this.wal.secondsBehind(p.lsn, Date.now());
  }

  private setUp(p: Probe, up: boolean): void {
    p.state.up = up;
    this.opts.log.warn({ node: p.state.index, host: p.state.host, port: p.state.port, error: p.state.lastError ?? undefined }, up ? 'node is back in rotation' : 'node left rotation');
    this.emit('change', p.state);
  }

  // ------------------------------------------------------------- NodeView

  primaryIndex(): number {
    for (const p of this.probes) if (p.state.role === 'primary' && p.state.up) return p.state.index;
    for (const p of this.probes) if (p.state.role === 'primary') return p.state.index;
    return 0;
  }

  /** Whether `node` may serve a read now. */
  readable(node: number, minLsn?: bigint): boolean {
    const p = this.probes[node];
    if (p === undefined || !p.state.up || p.state.weight <= 0) return false;
    if (p.state.role === 'primary') return true;
    if (p.state.role !== 'replica') return false;
    if (p.state.lagSeconds * 1000 > this.opts.maxReplicaLagMs) return false;
    if (minLsn !== undefined) return p.lsn !== null && p.lsn >= minLsn;
    return true;
  }

  pickReadNode(opts: { exclude?: Set<number>; minLsn?: bigint } = {}): number {
    let total = 0;
    const candidates: Probe[] = [];
    for (const p of this.probes) {
      if (opts.exclude?.has(p.state.index) || !this.readable(p.state.index, opts.minLsn)) continue;
      candidates.push(p);
      total += p.state.weight;
    }
    if (candidates.length === 0) return this.primaryIndex();
    const first = this.drawByWeight(candidates, total);
    const busy = this.opts.busy;
    if (candidates.length === 1 || busy === undefined) return first.state.index;
    // Two choices, the less busy one taken (per unit of weight): at rest
    // both are idle and the first, a draw by weight, decides, so weights
    // keep their meaning; under load a node that answers slowly (a busy
    // host, a long query) holds its connections longer and is passed over
    // for one with statements to spare, instead of having clients pile up
    // on it as a blind draw lets them.
    let second = this.drawByWeight(candidates, total);
    for (let i = 0; second === first && i < 3; i++) second = this.drawByWeight(candidates, total);
    if (second === first) return first.state.index;
    const load = (p: Probe) => busy(p.state.index) / p.state.weight;
    return load(second) < load(first) ? second.state.index : first.state.index;
  }

  private drawByWeight(candidates: Probe[], total: number): Probe {
    let r = Math.random() * total;
    for (const p of candidates) {
      r -= p.state.weight;
      if (r < 0) return p;
    }
    return candidates[candidates.length - 1];
  }

  primaryLsnAfter(t: number): bigint | undefined {
    return this.wal.after(t);
  }

  countRoute(node: number, kind: 'read' | 'write'): void {
    const s = this.probes[node]?.state;
    if (s === undefined) return;
    if (kind === 'read') s.reads++;
    else s.writes++;
  }

  nodes(): NodeState[] {
    return this.probes.map((p) => ({ ...p.state }));
  }
}

/** Errors of a node that is down or not accepting sessions, as opposed to a refused login. */
function cannotReach(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  if (typeof code !== 'string') return true;
  return code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03';
}

/** `p`, or a timeout error after `ms`; what `p` gives after the timeout goes to `late`. */
function withTimeout<T>(p: Promise<T>, ms: number, late?: (v: T) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    let timedOut = false;
    const t = setTimeout(() => {
      timedOut = true;
      reject(Object.assign(new Error(`no answer within ${ms} ms`), { code: '08006' }));
    }, ms);
    p.then(
      (v) => {
        clearTimeout(t);
        if (timedOut) late?.(v);
        else resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
