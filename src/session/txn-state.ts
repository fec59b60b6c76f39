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

  /** A batch of the transaction was sent. */
  note(info: BatchInfo, params: ClientParams): void {
    for (const s of info.sets) if (!REPORTED_SETTABLE.has(s.name) && params.tracks(s.name)) this.sets.push(s);
    if (info.resetAll) this.resetAll = true;
    if (info.transaction.includes('rollback')) this.failed = true;
    if (!info.readOnly) this.wrote = true;
    this.clears.push(...info.clears);
  }

  /**
   * The transaction ended. Applies what it committed to the client's
   * parameters and to what pgmux knows of the connection; returns whether
   * it committed a write and whether DISCARD ALL cleared the session.
   */
  settle(params: ClientParams, conn: ServerConnection | null): { wrote: boolean; discarded: boolean } {
    let wrote = false;
    let discarded = false;
    if (!this.failed) {
      if (this.resetAll) {
        for (const name of [...params.want.keys()]) if (!REPORTED_SETTABLE.has(name)) params.want.delete(name);
        conn?.sessionSets.clear();
      }
      for (const { name, value } of this.sets) {
        if (value === null) {
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
    return { wrote, discarded };
  }
}
