/** Server-side name for a statement id; clients never see it. */
export function serverStatementName(id: number): string {
  return `pgmux_${id}`;
}

/**
 * The statements prepared on one server connection, least recently used
 * first (a Map keeps insertion order; a use moves the entry to the end),
 * each with the epoch of its Parse there.
 */
export class PreparedOnServer {
  private readonly ids = new Map<number, number>();

  has(id: number): boolean {
    return this.ids.has(id);
  }

  /** Whether the copy of `id` here was prepared at or after `epoch`. */
  fresh(id: number, epoch: number): boolean {
    const at = this.ids.get(id);
    return at !== undefined && at >= epoch;
  }

  /** Marks `id` as just used. */
  touch(id: number): void {
    const at = this.ids.get(id);
    if (at === undefined) return;
    this.ids.delete(id);
    this.ids.set(id, at);
  }

  /** `id` was just prepared here (its Parse is on its way). */
  add(id: number, epoch: number): void {
    this.ids.delete(id);
    this.ids.set(id, epoch);
  }

  delete(id: number): void {
    this.ids.delete(id);
  }

  /** Ids to close so that one more fits under `max` (least recently used first). */
  evictFor(max: number): number[] {
    const out: number[] = [];
    const it = this.ids.keys();
    while (this.ids.size - out.length >= max) {
      const next = it.next();
      if (next.done) break;
      out.push(next.value);
    }
    for (const id of out) this.ids.delete(id);
    return out;
  }

  /** DISCARD ALL or DEALLOCATE ALL ran: nothing is prepared any more. */
  clear(): void {
    this.ids.clear();
  }

  /** A query that deallocates every one of them (for a connection that leaves for another worker, whose ids differ). */
  deallocateQuery(): string {
    return [...this.ids.keys()].map((id) => `DEALLOCATE ${serverStatementName(id)}`).join('; ');
  }

  get size(): number {
    return this.ids.size;
  }
}
