import type { Logger } from 'pino';
import type { BatchInfo, EndpointRouter, RoutedBatch, RoutedClient } from './route-types.ts';
/** Function volatility answers (see sql/volatility.ts). */
export interface VolatilitySource {
  cached(names: string[]): boolean | undefined;
  allReadOnly(names: string[]): Promise<boolean>;
}
import { readBind, readParse, readQuery, readTarget } from '../protocol/extended.ts';

/** What the router needs to know about an endpoint's nodes. */
export interface NodeView {
  primaryIndex(): number;
  pickReadNode(opts: { exclude?: Set<number>; minLsn?: bigint }): number;
  /** Whether `node` may serve a read now (up, within lag, replayed past minLsn). */
  readable(node: number, minLsn?: bigint): boolean;
  primaryLsnAfter(t: number): bigint | undefined;
  countRoute(node: number, kind: 'read' | 'write'): void;
}

export interface RouterOptions {
  loadBalance: 'off' | 'session' | 'transaction' | 'statement';
  readYourWrites: boolean;
  logPerNodeStatement: boolean;
  noticePerNodeStatement: boolean;
  log: Logger;
}

/** The node a session reads from under load_balance = session. */
const sessionNode = new WeakMap<RoutedClient, number>();

/**
 * Sends each batch to a node: writes, locks, volatile functions and
 * transactions that are not read-only to the primary; plain reads to a
 * replica chosen by weight (once per session, or per transaction or
 * statement), unless the client wrote and no replica has replayed that
 * write yet.
 */
export class ReplicaRouter implements EndpointRouter {
  readonly spreadsReads: boolean;
  private readonly nodes: NodeView;
  /** Function volatility, per database (pg_proc is per database). */
  private readonly volatility: (database: string) => VolatilitySource;
  private readonly opts: RouterOptions;

  constructor(nodes: NodeView, volatility: (database: string) => VolatilitySource, opts: RouterOptions) {
    this.nodes = nodes;
    this.volatility = volatility;
    this.opts = opts;
    this.spreadsReads = opts.loadBalance !== 'off';
  }

  primaryNode(): number {
    return this.nodes.primaryIndex();
  }

  route(info: BatchInfo, link: RoutedClient): number | Promise<number> {
    if (!info.hasSql) {
      // A Sync (or Flush) with nothing to sync goes to one node: the
      // session's read node if it has one, else the primary.
      return sessionNode.get(link) ?? this.write();
    }
    if (!this.spreadsReads || !info.readOnly || link.pinned !== null) return this.write();
    if (info.transaction.some((t) => t === 'begin' || t === 'prepare_transaction')) return this.write();
    if (info.functions.length === 0) return this.read(link);
    const volatility = this.volatility(link.database);
    const known = volatility.cached(info.functions);
    if (known !== undefined) return known ? this.read(link) : this.write();
    return volatility.allReadOnly(info.functions).then(
      (ok) => (ok ? this.read(link) : this.write()),
      () => this.write(),
    );
  }

  private write(): number {
    const p = this.nodes.primaryIndex();
    this.nodes.countRoute(p, 'write');
    return p;
  }

  private read(link: RoutedClient): number {
    let minLsn: bigint | undefined;
    if (this.opts.readYourWrites && link.lastWriteAt > 0) {
      minLsn = this.nodes.primaryLsnAfter(link.lastWriteAt);
      // No WAL position known since the write: only the primary has it for sure.
      if (minLsn === undefined) return this.write();
    }
    let node: number;
    if (this.opts.loadBalance === 'session') {
      const mine = sessionNode.get(link);
      if (mine !== undefined && this.nodes.readable(mine, minLsn)) node = mine;
      else {
        node = this.nodes.pickReadNode({ minLsn });
        // A fallback to the primary for lag does not become the session's node.
        if (minLsn === undefined || mine === undefined) sessionNode.set(link, node);
      }
    } else {
      node = this.nodes.pickReadNode({ minLsn });
    }
    this.nodes.countRoute(node, 'read');
    return node;
  }

  trace(node: number, _info: BatchInfo, batch: RoutedBatch): string | null {
    return traceBatch(node, batch, this.opts);
  }
}

/**
 * The per-node trace of a batch, as pgpool writes it: one line per message,
 * logged with log_per_node_statement; returned for a NOTICE with
 * notice_per_node_statement, else null.
 */
export function traceBatch(node: number, batch: RoutedBatch, opts: { logPerNodeStatement: boolean; noticePerNodeStatement: boolean; log: Logger }): string | null {
  if (!opts.logPerNodeStatement && !opts.noticePerNodeStatement) return null;
  const lines = batch.msgs.map((m) => `node ${node} statement: ${describe(m.type, m.msg)}`);
  if (opts.logPerNodeStatement) for (const l of lines) opts.log.info(l);
  return opts.noticePerNodeStatement ? lines.join('\n') : null;
}

/** A message as pgpool's per-node trace names it: "Parse: select 1", "Sync". */
function describe(type: number, msg: Buffer): string {
  switch (type) {
    case 0x51:
      return `Query: ${readQuery(msg)}`;
    case 0x50:
      return `Parse: ${readParse(msg).sql}`;
    case 0x42:
      return `Bind: ${readBind(msg).statement || '(unnamed)'}`;
    case 0x44:
      return `Describe: ${readTarget(msg, 'Describe').name || '(unnamed)'}`;
    case 0x43:
      return `Close: ${readTarget(msg, 'Close').name || '(unnamed)'}`;
    case 0x45:
      return 'Execute';
    case 0x53:
      return 'Sync';
    case 0x48:
      return 'Flush';
    case 0x46:
      return 'FunctionCall';
    default:
      return String.fromCharCode(type);
  }
}
