interface Position {
  lsn: bigint;
  /** When the first check that found the primary here was sent (ms). */
  first: number;
  /** When the last check that found it here was sent (ms). */
  last: number;
}

/**
 * The primary's WAL positions as the replication checks found them, each
 * distinct position with when it was first and last seen. From them: how
 * many bytes a replica has still to replay, and how long ago the oldest of
 * those bytes was written — the time a replica lags, which is zero once it
 * has replayed everything, however long the primary was quiet before.
 */
export class PrimaryWal {
  private readonly positions: Position[] = [];
  /** The newest position forgotten for age, if any (a floor for very late replicas). */
  private floor: Position | null = null;
  private readonly keepMs: number;

  /** `keepMs`: how long a position is remembered once the primary moved past it. */
  constructor(keepMs: number) {
    this.keepMs = keepMs;
  }

  /** A check sent at `at` found the primary's current WAL position at `lsn`. */
  note(lsn: bigint, at: number): void {
    const top = this.positions.at(-1);
    if (top !== undefined && lsn === top.lsn) {
      top.last = at;
      return;
    }
    // Behind what was seen: another server is primary now (a failover);
    // what was known of the old one says nothing of it.
    if (top !== undefined && lsn < top.lsn) {
      this.positions.length = 0;
      this.floor = null;
    }
    this.positions.push({ lsn, first: at, last: at });
    while (this.positions.length > 1 && (this.positions[0].last < at - this.keepMs || this.positions.length > 10_000)) {
      this.floor = this.positions.shift()!;
    }
  }

  /** The primary's last known position. */
  latest(): bigint | undefined {
    return this.positions.at(-1)?.lsn;
  }

  /** Bytes of WAL the primary has and a replica that replayed up to `replay` has not. */
  bytesBehind(replay: bigint): number {
    const latest = this.latest();
    return latest === undefined || replay >= latest ? 0 : Number(latest - replay);
  }

  /**
   * Seconds since the oldest WAL a replica that replayed up to `replay` has
   * not replayed was written: the first position seen beyond `replay` was
   * written by the time the check that found it was sent. 0 when nothing is
   * outstanding.
   */
  secondsBehind(replay: bigint, now: number): number {
    if (this.floor !== null && replay < this.floor.lsn) return Math.max(0, (now - this.floor.first) / 1000);
    for (const p of this.positions) if (p.lsn > replay) return Math.max(0, (now - p.first) / 1000);
    return 0;
  }

  /**
   * The position found by the first check sent after `t`: it covers every
   * transaction committed by `t` (read-your-writes). Undefined when no check
   * has been sent since.
   */
  after(t: number): bigint | undefined {
    for (const p of this.positions) if (p.last > t) return p.lsn;
    return undefined;
  }
}
