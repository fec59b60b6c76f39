import type { ServerConnection } from '../pool/server-connection.ts';
import type { BatchInfo } from './batch.ts';
import { REPORTED_SETTABLE, type ClientParams } from './params.ts';

/**
 * What a client's open transaction did that outlives it only if it
 * commits: SETs of followed parameters, RESET ALL, DISCARD, and whether it
 * wrote (for read-your-writes). Settled at the ReadyForQuery 'I' that ends
 * the transaction.
 */
export class TxnState {
  private sets: { name: string; value: string | null }[] = [];
  private resetAll = false;
  /** An error, or a ROLLBACK: nothing of the transaction stays. */
  failed = false;
  private wrote = false;
  private clears: string[] = [];
  /** Parameters RESET in the transaction, reported ones included. */
  private resets = new Set<string>();

  /** A batch of the transaction was sent. */
  note(info: BatchInfo, params: ClientParams): void {
    if (info.transaction.includes('rollback')) {
      // What the transaction changed so far is undone; what follows the
      // ROLLBACK in this batch is a new transaction's.
      this.sets = [];
      this.resets.clear();
      this.resetAll = false;
      this.clears = [];
    }
    for (const s of info.sets) {
      if (s.rolledBack === true) continue;
      if (!REPORTED_SETTABLE.has(s.name) && params.tracks(s.name)) this.sets.push(s);
      if (s.value === null) this.resets.add(s.name);
    }
    if (info.resetAll || info.clears.includes('all')) this.resetAll = true;
    if (!info.readOnly) this.wrote = true;
    this.clears.push(...info.clears);
  }

  /**
   * The transaction ended. Applies what it committed to the client's
   * parameters and to what pgmux knows of the connection; returns whether
   * it committed a write and whether DISCARD ALL cleared the session.
   */
  /** Whether the transaction in flight resets `name` (lower-cased) to its startup value. */
  resetting(name: string): boolean {
    return this.resetAll || this.resets.has(name);
  }

  /**
   * `restore`: the server went back to its own defaults for parameters the
   * client's startup packet set, and must be given them again.
   */
  settle(params: ClientParams, conn: ServerConnection | null): { wrote: boolean; discarded: boolean; restore: boolean } {
    let wrote = false;
    let discarded = false;
    let restore = false;
    if (!this.failed) {
      if (this.resetAll) {
        for (const name of [...params.want.keys()]) if (!REPORTED_SETTABLE.has(name)) params.want.delete(name);
        for (const [name, value] of params.startup) params.want.set(name, value);
        conn?.sessionSets.clear();
        restore = params.startup.size > 0;
      }
      for (const name of this.resets) {
        const start = params.startup.get(name);
        if (start === undefined) continue;
        params.want.set(name, start);
        conn?.sessionSets.delete(name);
        restore = true;
      }
      for (const { name, value } of this.sets) {
        if (value === null) {
          if (params.startup.has(name)) continue;
          params.want.delete(name);
          conn?.sessionSets.delete(name);
        } else {
          params.want.set(name, value);
          conn?.sessionSets.set(name, value);
        }
      }
      if (this.clears.includes('all')) {
        conn?.sessionSets.clear();
        discarded = true;
      }
      wrote = this.wrote;
    }
    this.sets = [];
    this.resetAll = false;
    this.failed = false;
    this.wrote = false;
    this.clears = [];
    this.resets.clear();
    return { wrote, discarded, restore };
  }
}
