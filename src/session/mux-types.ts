import type { Logger } from 'pino';
import type { ServerConnection } from '../pool/server-connection.ts';
import type { Batch, BatchInfo } from './batch.ts';
import type { StatementIds } from './statements.ts';
import type { MuxLink } from './mux-link.ts';

/** How a client's statements find a node; the single-node router answers 0. */
export interface Router {
  /** Node for a batch no open transaction ties to a node. */
  route(info: BatchInfo, link: MuxLink): number | Promise<number>;
  /** Reads may go elsewhere than writes: statements must be classified read or write. */
  readonly spreadsReads?: boolean;
  /** Index of the node currently known to be the primary. */
  primaryNode?(): number;
  /** A transaction of this client that wrote has committed. */
  noteWrite?(link: MuxLink): void;
  /** A line for log_per_node_statement, or null when that is off. */
  trace?(node: number, info: BatchInfo, batch: Batch): string | null;
}

export interface MuxHost {
  readonly log: Logger;
  readonly database: string;
  readonly mode: 'session' | 'transaction' | 'statement';
  readonly maxPrepared: number;
  readonly onSessionState: 'pin' | 'error';
  readonly queryTimeoutMs: number;
  readonly maxPacketSize: number;
  readonly statementIds: StatementIds;
  readonly router: Router;
  /** A logged-in server connection to `node` (from its pool). */
  acquire(node: number): Promise<ServerConnection>;
  /** An idle connection to `node` if one is at hand and nobody waits before us, else null. */
  tryAcquire(node: number): ServerConnection | null;
  /** Back to the pool; `reset` runs server_reset_query first. */
  release(conn: ServerConnection, reset: boolean): void;
  discard(conn: ServerConnection): void;
  writeClient(chunks: Buffer[]): void;
  /**
   * Whether the client's socket still holds data not yet written; if so,
   * `done` runs once everything written so far has gone out.
   */
  whenClientWritten(done: () => void): boolean;
  pauseClient(): void;
  resumeClient(): void;
  /** Ends the client with this error. */
  fatal(err: unknown): void;
  /** The server's FATAL reached the client: when its connection closes, the client is only hung up on. */
  serverFatalForwarded(message: string): void;
  /** The client sent Terminate. */
  terminated(): void;
  readonly stats: { queries: number; transactions: number; preparedHits: number; preparedMisses: number };
  /** A notice for notice_per_node_statement. */
  notice(text: string): Buffer | null;
}
