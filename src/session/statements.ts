/**
 * Prepared statements in transaction mode. A client's statement names mean
 * nothing on a server connection it borrows, so pgmux gives every distinct
 * (query, parameter types) pair one server-side name, prepares it lazily on
 * the connection that needs it and remembers per connection what is there.
 */

// The name lives with what is prepared on a connection (the pool's layer), which needs it too.
export { serverStatementName } from '../pool/prepared-on-server.ts';

/**
 * Ids for statement texts, shared by all clients so that two clients
 * preparing the same query reuse one server-side statement. Bounded: the
 * oldest texts are forgotten (connections that still hold them evict them
 * like any other).
 */
export class StatementIds {
  private readonly ids = new Map<string, number>();
  /** Ids a server has accepted a Parse for: known to be valid SQL. */
  private readonly valid = new Set<number>();
  private next = 1;
  private readonly max: number;

  constructor(max = 100_000) {
    this.max = max;
  }

  /** `rest` is the Parse message after the statement name: query and parameter types. */
  idFor(rest: Buffer): number {
    const key = rest.toString('latin1');
    let id = this.ids.get(key);
    if (id === undefined) {
      id = this.next++;
      this.ids.set(key, id);
      if (this.ids.size > this.max) {
        const oldest = this.ids.entries().next().value!;
        this.ids.delete(oldest[0]);
        this.valid.delete(oldest[1]);
      }
    }
    return id;
  }

  /** An id whose text exists (idFor was called for it before), or undefined. */
  known(rest: Buffer): number | undefined {
    return this.ids.get(rest.toString('latin1'));
  }

  markValid(id: number): void {
    this.valid.add(id);
  }

  isValid(id: number): boolean {
    return this.valid.has(id);
  }
}

/** A statement a client prepared, enough to prepare it again anywhere. */
export interface ClientStatement {
  /** Its shared id (-1 for the unnamed statement, which keeps its own name). */
  id: number;
  /** Query and parameter types as the client sent them (a copy). */
  rest: Buffer;
  sql: string;
  /** When the client prepared it (parseEpoch()): a server's copy must be at least as new. */
  epoch: number;
}

let epochs = 0;
/**
 * A counter that orders Parses: a client's statement means what its text
 * meant when the client sent the Parse, so a server connection's copy
 * prepared before that (the table may have changed since) is prepared again.
 */
export function parseEpoch(): number {
  return ++epochs;
}
