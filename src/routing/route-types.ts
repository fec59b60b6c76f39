import type { Classification } from '../sql/classify.ts';

/**
 * What routing is asked about and answers: the shapes sessions hand to a
 * router. They live here, below session/, so that routing needs nothing
 * of the session layer.
 */

/** What a batch's statements do, all of them together (see sql/classify.ts for each field). */
export interface BatchInfo extends Pick<Classification, 'readOnly' | 'functions' | 'transaction' | 'sets' | 'resetAll' | 'sessionState' | 'clears' | 'deallocates'> {
  /** The batch holds SQL (Query, Parse or a Bind of a known statement). */
  hasSql: boolean;
  /** For per-node statement traces: "Parse: select 1" and the like. */
  firstSql: string | null;
}

/** The messages of a batch, for traces. */
export interface RoutedBatch {
  readonly msgs: readonly { type: number; msg: Buffer }[];
}

/** What a router knows of the client whose batch it routes. */
export interface RoutedClient {
  /** Why the client is pinned to its node, or null. */
  readonly pinned: string | null;
  /** When a write of this client last committed (read-your-writes), 0 if never. */
  readonly lastWriteAt: number;
  readonly database: string;
}

/** How a client's statements find a node; the single-node router answers 0. */
export interface Router {
  /** Node for a batch no open transaction ties to a node. */
  route(info: BatchInfo, client: RoutedClient): number | Promise<number>;
  /** Reads may go elsewhere than writes: statements must be classified read or write. */
  readonly spreadsReads?: boolean;
  /** Index of the node currently known to be the primary. */
  primaryNode?(): number;
  /** A transaction of this client that wrote has committed. */
  noteWrite?(client: RoutedClient): void;
  /** A line for log_per_node_statement, or null when that is off. */
  trace?(node: number, info: BatchInfo, batch: RoutedBatch): string | null;
}

/** An endpoint's router as sessions see it. */
export interface EndpointRouter extends Router {
  /** Reads may go to other nodes than the primary (replicas, load balancing on). */
  readonly spreadsReads: boolean;
  /** Index of the node currently known to be the primary. */
  primaryNode(): number;
}
