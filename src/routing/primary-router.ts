import type { Logger } from 'pino';
import type { BatchInfo, EndpointRouter, RoutedBatch } from './route-types.ts';
import { traceBatch, type NodeView } from './router.ts';

export interface PrimaryRouterOptions {
  logPerNodeStatement: boolean;
  noticePerNodeStatement: boolean;
  log: Logger;
}

/** Verbs of statements counted as reads when the parser was not asked (pgpool's select_cnt counts SELECTs). */
const READ_VERB = /^\s*(select|values|table|show)\b/i;

/**
 * Everything to the primary: an endpoint with one node, or with
 * load_balance = off. Its statements are still counted per node (SHOW NODES,
 * metrics) and traced (log_per_node_statement, notice_per_node_statement)
 * as on an endpoint with replicas.
 */
export class PrimaryRouter implements EndpointRouter {
  /**
   * Reads go nowhere else; but a trace needs every statement seen, so with
   * tracing on, clients go through the message-level loop, which asks the
   * router about each batch, even in session mode.
   */
  readonly spreadsReads: boolean;
  private readonly nodes: NodeView;
  private readonly opts: PrimaryRouterOptions;

  constructor(nodes: NodeView, opts: PrimaryRouterOptions) {
    this.nodes = nodes;
    this.opts = opts;
    this.spreadsReads = opts.logPerNodeStatement || opts.noticePerNodeStatement;
  }

  primaryNode(): number {
    return this.nodes.primaryIndex();
  }

  route(info: BatchInfo): number {
    const node = this.nodes.primaryIndex();
    if (info.hasSql) this.nodes.countRoute(node, info.readOnly || (info.firstSql !== null && READ_VERB.test(info.firstSql)) ? 'read' : 'write');
    return node;
  }

  trace(node: number, _info: BatchInfo, batch: RoutedBatch): string | null {
    return traceBatch(node, batch, this.opts);
  }
}
