/**
 * Failed logins per client address: past `limit` in a minute, that address
 * gets no more attempts until the minute is over, so a password cannot be
 * guessed at the speed of the network. Counts live in two one-minute
 * buckets (the current and the previous one, weighted), bounded in size.
 */
export class FailureLimiter {
  private readonly limit: number;
  private minute = 0;
  private current = new Map<string, number>();
  private previous = new Map<string, number>();

  constructor(limit: number) {
    this.limit = limit;
  }

  private roll(now: number): void {
    const m = Math.floor(now / 60_000);
    if (m === this.minute) return;
    this.previous = m === this.minute + 1 ? this.current : new Map();
    this.current = new Map();
    this.minute = m;
  }

  /** Failures counted for `addr` over the last minute. */
  private count(addr: string, now: number): number {
    this.roll(now);
    const into = (now % 60_000) / 60_000;
    return (this.current.get(addr) ?? 0) + (this.previous.get(addr) ?? 0) * (1 - into);
  }

  blocked(addr: string, now = Date.now()): boolean {
    return this.limit > 0 && this.count(addr, now) >= this.limit;
  }

  note(addr: string, now = Date.now()): void {
    if (this.limit <= 0) return;
    this.roll(now);
    // A flood of addresses cannot grow the table without bound.
    if (this.current.size >= 100_000 && !this.current.has(addr)) return;
    this.current.set(addr, (this.current.get(addr) ?? 0) + 1);
  }
}
