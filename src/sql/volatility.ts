export type QueryFn = (sql: string, params: unknown[]) => Promise<Record<string, unknown>[]>;

/**
 * Whether functions are IMMUTABLE or STABLE, read from pg_proc and cached:
 * a statement calling a VOLATILE function (or one pgmux cannot find) must
 * run on the primary, whatever else it does.
 */
export class FunctionVolatility {
  private readonly query: QueryFn;
  private readonly ttlMs: number;
  private readonly known = new Map<string, { readOnly: boolean; at: number }>();
  private readonly inflight = new Map<string, Promise<boolean>>();

  constructor(query: QueryFn, opts: { ttlMs?: number } = {}) {
    this.query = query;
    this.ttlMs = opts.ttlMs ?? 60_000;
  }

  /** The cached answer for all of `names`, or undefined when one is not cached. */
  cached(names: string[]): boolean | undefined {
    const now = Date.now();
    let all = true;
    for (const n of names) {
      const k = this.known.get(n);
      if (k === undefined || now - k.at > this.ttlMs) return undefined;
      all &&= k.readOnly;
    }
    return all;
  }

  async allReadOnly(names: string[]): Promise<boolean> {
    const answers = await Promise.all(names.map((n) => this.lookup(n)));
    return answers.every(Boolean);
  }

  private lookup(name: string): Promise<boolean> {
    const hit = this.cached([name]);
    if (hit !== undefined) return Promise.resolve(hit);
    let p = this.inflight.get(name);
    if (p === undefined) {
      p = this.fetch(name).finally(() => this.inflight.delete(name));
      this.inflight.set(name, p);
    }
    return p;
  }

  private async fetch(name: string): Promise<boolean> {
    const dot = name.lastIndexOf('.');
    const schema = dot < 0 ? null : name.slice(0, dot);
    const fn = dot < 0 ? name : name.slice(dot + 1);
    // Every overload in any schema that could be meant counts: unqualified
    // names are matched in every schema, so one VOLATILE candidate is enough
    // to keep the statement on the primary.
    const rows = await this.query(
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE p.provolatile = 'v')::int AS volatile
         FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace ns ON ns.oid = p.pronamespace
        WHERE p.proname = $1 AND ($2::text IS NULL OR ns.nspname = $2)`,
      [fn, schema],
    );
    const n = Number(rows[0]?.n ?? 0);
    const readOnly = n > 0 && Number(rows[0]?.volatile ?? 1) === 0;
    this.known.set(name, { readOnly, at: Date.now() });
    if (this.known.size > 10_000) this.known.delete(this.known.keys().next().value!);
    return readOnly;
  }
}
