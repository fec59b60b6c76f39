import { PgError, SqlState } from '../protocol/errors.ts';
import { errorResponse } from '../protocol/messages.ts';
import {
  CLOSE_COMPLETE,
  PARSE_COMPLETE,
  buildParse,
  buildTarget,
  readBind,
  readParse,
  readTarget,
  renameBind,
} from '../protocol/extended.ts';
import type { ServerConnection } from '../pool/server-connection.ts';
import { enum_, type ReplyQueue } from './replies.ts';
import { serverStatementName, type ClientStatement, type StatementIds } from './statements.ts';
import type { Batch } from './batch.ts';

export interface TranslatorHost {
  readonly maxPrepared: number;
  readonly statementIds: StatementIds;
  readonly stats: { preparedHits: number; preparedMisses: number };
}

export interface Translated {
  chunks: Buffer[];
  /** Whether the server is left with extended messages not yet synced (null: unchanged). */
  unsynced: boolean | null;
  /** A message was refused: drop the client's messages up to its next Sync. */
  refusedUntilSync: boolean;
  /** Client statement names this batch defined (undone if the batch is sent again elsewhere). */
  registered: string[];
}

/**
 * Rewrites a batch for the server connection it is sent on: client
 * statement names become server-side names, statements missing on this
 * connection are prepared first, and an entry per message tells the reply
 * queue what the client should see. With max_prepared_statements = 0 names
 * pass through unchanged (the client must then keep its statements within
 * one transaction).
 */
export class Translator {
  private readonly queue: ReplyQueue;
  private readonly host: TranslatorHost;
  private readonly statements: Map<string, ClientStatement>;
  private runStarted = false;

  constructor(queue: ReplyQueue, host: TranslatorHost, statements: Map<string, ClientStatement>) {
    this.queue = queue;
    this.host = host;
    this.statements = statements;
  }

  /** `unsynced`: the server already holds extended messages of this run. */
  translate(b: Batch, conn: ServerConnection, unsynced: boolean): Translated {
    const out: Translated = { chunks: [], unsynced: null, refusedUntilSync: false, registered: [] };
    this.runStarted = unsynced;
    const q = this.queue;
    const mapping = this.host.maxPrepared > 0;
    for (let i = 0; i < b.msgs.length; i++) {
      const { type, msg } = b.msgs[i];
      switch (type) {
        case 0x50 /* Parse */: {
          out.unsynced = true;
          const p = readParse(msg);
          if (!mapping || p.name === '') {
            out.chunks.push(msg);
            q.push({ kind: enum_.forward, type });
            break;
          }
          if (this.statements.has(p.name)) {
            this.refuse(out, new PgError(SqlState.DUPLICATE_PREPARED_STATEMENT, `prepared statement "${p.name}" already exists`));
            return this.skipRest(b, i, out);
          }
          const rest = Buffer.from(p.rest);
          const id = this.host.statementIds.idFor(rest);
          const st: ClientStatement = { id, rest, sql: p.sql };
          this.statements.set(p.name, st);
          out.registered.push(p.name);
          if (conn.prepared.has(id)) {
            conn.prepared.touch(id);
            this.host.stats.preparedHits++;
            q.push({ kind: enum_.synth, type, bytes: PARSE_COMPLETE });
            break;
          }
          this.host.stats.preparedMisses++;
          this.evict(conn, out);
          conn.prepared.add(id);
          out.chunks.push(buildParse(serverStatementName(id), rest));
          q.push({
            kind: enum_.forward,
            type,
            onDone: () => this.host.statementIds.markValid(id),
            onError: () => {
              // PostgreSQL keeps no statement whose Parse failed; nor do we.
              conn.prepared.delete(id);
              if (this.statements.get(p.name) === st) this.statements.delete(p.name);
            },
          });
          break;
        }
        case 0x42 /* Bind */: {
          out.unsynced = true;
          const bind = readBind(msg);
          if (!mapping || bind.statement === '') {
            out.chunks.push(msg);
          } else {
            const st = this.statements.get(bind.statement);
            if (st === undefined) return this.unknown(b, i, out, bind.statement);
            this.ensurePrepared(conn, st, out);
            out.chunks.push(renameBind(msg, bind, serverStatementName(st.id)));
          }
          q.push({ kind: enum_.forward, type });
          break;
        }
        case 0x44 /* Describe */: {
          out.unsynced = true;
          const t = readTarget(msg, 'Describe');
          if (!mapping || t.kind !== 0x53 || t.name === '') {
            out.chunks.push(msg);
          } else {
            const st = this.statements.get(t.name);
            if (st === undefined) return this.unknown(b, i, out, t.name);
            this.ensurePrepared(conn, st, out);
            out.chunks.push(buildTarget('D', 0x53, serverStatementName(st.id)));
          }
          q.push({ kind: enum_.forward, type });
          break;
        }
        case 0x43 /* Close */: {
          out.unsynced = true;
          const t = readTarget(msg, 'Close');
          if (mapping && t.kind === 0x53 && t.name !== '') {
            // The server-side statement stays for other clients; closing a
            // name that does not exist is no error in PostgreSQL either.
            this.statements.delete(t.name);
            q.push({ kind: enum_.synth, type, bytes: CLOSE_COMPLETE });
            break;
          }
          out.chunks.push(msg);
          q.push({ kind: enum_.forward, type });
          break;
        }
        case 0x45 /* Execute */:
          out.unsynced = true;
          out.chunks.push(msg);
          q.push({ kind: enum_.forward, type });
          break;
        case 0x48 /* Flush */:
          out.chunks.push(msg);
          break;
        case 0x53 /* Sync */:
          out.unsynced = false;
          out.chunks.push(msg);
          q.push({ kind: enum_.forward, type });
          break;
        case 0x51 /* Query */:
        case 0x46 /* FunctionCall */:
          out.chunks.push(msg);
          q.push({ kind: enum_.forward, type });
          break;
        default:
          // CopyData, CopyDone, CopyFail: no reply of their own.
          out.chunks.push(msg);
          break;
      }
    }
    return out;
  }

  /**
   * Answers a batch of Parses of statements some server already accepted,
   * and its Sync, without a server connection: pgmux prepares them lazily
   * where they are first bound. A client outside a transaction that only
   * prepares (libpq's PQprepare: Parse and Sync) so never waits for the pool,
   * which matters when it is blocked and holds other connections (pgbench
   * -M prepared with more clients than server connections). False if the
   * batch needs a server.
   */
  answerAlone(b: Batch): boolean {
    if (this.host.maxPrepared === 0 || b.msgs.length < 2 || b.msgs[b.msgs.length - 1].type !== 0x53) return false;
    const parsed: { name: string; rest: Buffer; sql: string; id: number }[] = [];
    for (let i = 0; i < b.msgs.length - 1; i++) {
      const m = b.msgs[i];
      if (m.type !== 0x50) return false;
      const p = readParse(m.msg);
      if (p.name === '' || this.statements.has(p.name)) return false;
      const id = this.host.statementIds.known(p.rest);
      if (id === undefined || !this.host.statementIds.isValid(id)) return false;
      parsed.push({ name: p.name, rest: Buffer.from(p.rest), sql: p.sql, id });
    }
    for (const p of parsed) {
      this.statements.set(p.name, { id: p.id, rest: p.rest, sql: p.sql });
      this.queue.push({ kind: enum_.synth, type: 0x50, bytes: PARSE_COMPLETE });
    }
    this.queue.push({ kind: enum_.synth, type: 0x53, bytes: null });
    return true;
  }

  /** Prepares `st` on `conn` ahead of its use, its reply hidden from the client. */
  private ensurePrepared(conn: ServerConnection, st: ClientStatement, out: Translated): void {
    if (conn.prepared.has(st.id)) {
      conn.prepared.touch(st.id);
      this.host.stats.preparedHits++;
      return;
    }
    this.host.stats.preparedMisses++;
    this.evict(conn, out);
    conn.prepared.add(st.id);
    out.chunks.push(buildParse(serverStatementName(st.id), st.rest));
    this.queue.push({ kind: enum_.swallow, type: 0x50, onError: () => conn.prepared.delete(st.id) });
  }

  /** Closes least recently used statements so one more fits. */
  private evict(conn: ServerConnection, out: Translated): void {
    for (const id of conn.prepared.evictFor(this.host.maxPrepared)) {
      out.chunks.push(buildTarget('C', 0x53, serverStatementName(id)));
      this.queue.push({ kind: enum_.swallow, type: 0x43 });
    }
  }

  private refuse(out: Translated, err: PgError): void {
    this.queue.push({ kind: enum_.synth, type: 0x45, bytes: errorResponse(err.fields()) });
  }

  private unknown(b: Batch, i: number, out: Translated, name: string): Translated {
    this.refuse(out, new PgError(SqlState.INVALID_SQL_STATEMENT_NAME, `prepared statement "${name}" does not exist`));
    return this.skipRest(b, i, out);
  }

  /**
   * After a refused message PostgreSQL ignores everything up to Sync. If the
   * batch holds that Sync, it still goes to the server when part of the run
   * reached it; otherwise the client gets a made-up ReadyForQuery.
   */
  private skipRest(b: Batch, i: number, out: Translated): Translated {
    const last = b.msgs[b.msgs.length - 1].type;
    if (last !== 0x53) {
      out.refusedUntilSync = b.msgs.slice(i).every((m) => m.type !== 0x53);
      return out;
    }
    const sentSomething = this.runStarted || out.chunks.length > 0;
    if (sentSomething) {
      out.chunks.push(b.msgs[b.msgs.length - 1].msg);
      this.queue.push({ kind: enum_.forward, type: 0x53 });
    } else {
      this.queue.push({ kind: enum_.synth, type: 0x53, bytes: null });
    }
    out.unsynced = false;
    return out;
  }
}
