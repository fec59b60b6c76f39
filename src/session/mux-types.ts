import type { Logger } from 'pino';
import type { ServerConnection } from '../pool/server-connection.ts';
import type { StatementIds } from './statements.ts';
import type { Router } from '../routing/route-types.ts';

export type { Router };

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
