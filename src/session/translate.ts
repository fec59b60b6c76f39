import { PgError, SqlState } from '../protocol/errors.ts';
import { errorResponse, query } from '../protocol/messages.ts';
import {
  buildParse,
  buildTarget,
  readBind,
  readParse,
  readTarget,
  renameBind,
} from '../protocol/extended.ts';
import type { ServerConnection } from '../pool/server-connection.ts';
import { enum_, type ReplyQueue } from './replies.ts';
import { parseEpoch, serverStatementName, type ClientStatement, type StatementIds } from './statements.ts';
import type { Batch } from './batch.ts';
import { quoteIdent } from './params.ts';
import { RunUndo, Versioned } from './run-undo.ts';

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
 * A named Parse the server always fails and that creates nothing: a column
 * that cannot exist (there is no FROM). It is valid syntax, so in a failed
 * transaction block the server answers 25P02 first, as it would the
 * client's own message, and that answer is passed on unchanged. pgmux
 * sends it to make the server fail in a client's place, so the server's
 * transaction fails, and skips to Sync, exactly as it would have for the
 * client's own message; the client gets pgmux's ErrorResponse instead.
 * After an earlier error in the same run the server skips it, as it would
 * have skipped the client's message: then nobody sees an error, as in
 * PostgreSQL.
 */
export const FAILING_PARSE = buildParse('pgmux_refused', Buffer.from('SELECT pgmux_refused\0\0\0', 'latin1'));
/** The same for the simple query protocol. */
export const FAILING_QUERY = query('SELECT pgmux_refused');
const CLOSE_UNNAMED = buildTarget('C', 0x53, '');
/** A Close of a statement name nobody can have made (pgmux's own are pgmux_N). */
const CLOSE_NOTHING = buildTarget('C', 0x53, 'pgmux closes nothing');
/**
 * A statement pgmux keeps on a connection so that a client's Parse of a
 * name it already uses can be sent under this name: the server then finds
 * whatever is wrong with it in PostgreSQL's own order (a syntax error, an
 * aborted transaction, a missing table before the name in use).
 */
const ANCHOR = 'pgmux_anchor';
const ANCHOR_PREPARE = Buffer.concat([buildTarget('C', 0x53, ANCHOR), buildParse(ANCHOR, Buffer.from('SELECT 1\0\0\0', 'latin1'))]);

/** The unnamed statement each server connection holds: whose it is, null for none; no entry when unknown. */
const unnamedOn = new WeakMap<ServerConnection, Versioned<ClientStatement | null>>();

function unnamedThere(conn: ServerConnection): Versioned<ClientStatement | null> {
  let v = unnamedOn.get(conn);
  if (v === undefined) {
    v = new Versioned<ClientStatement | null>(null);
    unnamedOn.set(conn, v);
  }
  return v;
}

/** Whose unnamed statement a server connection holds is unknown from now on. */
export function forgetUnnamed(conn: ServerConnection): void {
  unnamedOn.delete(conn);
}

/** A client's recoverable error as an ErrorResponse: severity ERROR, the connection goes on. */
export function recoverable(err: PgError): Buffer {
  return errorResponse({ ...err.fields(), severity: 'ERROR' });
}

/**
 * Rewrites a batch for the server connection it is sent on: client
 * statement names become server-side names, statements missing on this
 * connection (or older there than the client's Parse) are prepared first,
 * the client's unnamed statement is put back where another client's
 * replaced it, and an entry per message tells the reply queue what the
 * client should see. With max_prepared_statements = 0 names pass through
 * unchanged (the client must then keep its statements within one
 * transaction).
 */
export class Translator {
  private readonly queue: ReplyQueue;
  private readonly host: TranslatorHost;
  private readonly statements: Map<string, ClientStatement>;
  /** The client's unnamed statement; it lives until the client's next Parse of it or simple Query. */
  private readonly unnamed = new Versioned<ClientStatement | null>(null);
  /** What the run being sent did to the client's names, for when the server skips the rest of it. */
  private readonly undo = new RunUndo();

  get unnamedSql(): string | null {
    return this.unnamed.value?.sql ?? null;
  }

  constructor(queue: ReplyQueue, host: TranslatorHost, statements: Map<string, ClientStatement>) {
    this.queue = queue;
    this.host = host;
    this.statements = statements;
  }

  translate(b: Batch, conn: ServerConnection): Translated {
    const out: Translated = { chunks: [], unsynced: null, refusedUntilSync: false, registered: [] };
    const q = this.queue;
    const mapping = this.host.maxPrepared > 0;
    for (let i = 0; i < b.msgs.length; i++) {
      const { type, msg } = b.msgs[i];
      switch (type) {
        case 0x50 /* Parse */: {
          out.unsynced = true;
          const p = tryRead(() => readParse(msg));
          if (p === null) {
            this.forward(out, msg, type);
            break;
          }
          if (p.name === '') {
            this.parseUnnamed(conn, msg, p.rest, p.sql, out);
            break;
          }
          if (!mapping) {
            this.forward(out, msg, type);
            break;
          }
          if (this.statements.has(p.name)) {
            out.chunks.push(ANCHOR_PREPARE, buildParse(ANCHOR, p.rest));
            q.push({ kind: enum_.swallow, type: 0x43 });
            q.push({ kind: enum_.swallow, type: 0x50 });
            q.push({ kind: enum_.forward, type, names: { server: ANCHOR, client: p.name } });
            return this.skipRest(b, out);
          }
          const rest = Buffer.from(p.rest);
          const st: ClientStatement = { id: this.host.statementIds.idFor(rest), rest, sql: p.sql, epoch: parseEpoch() };
          this.statements.set(p.name, st);
          out.registered.push(p.name);
          const undo = this.undo.record(() => {
            if (this.statements.get(p.name) === st) this.statements.delete(p.name);
          });
          // A Parse means what its text means now: always prepared anew.
          this.host.stats.preparedMisses++;
          this.prepare(conn, st.id, rest, st.epoch, out);
          const id = st.id;
          q.push({
            kind: enum_.forward,
            type,
            onDone: () => this.host.statementIds.markValid(id),
            onError: () => {
              // PostgreSQL keeps no statement whose Parse failed or was skipped; nor do we.
              conn.prepared.delete(id);
              undo();
            },
          });
          break;
        }
        case 0x42 /* Bind */: {
          out.unsynced = true;
          const bind = tryRead(() => readBind(msg));
          const done = this.useStatement(b, conn, out, msg, type, bind?.statement ?? null, (server) => renameBind(msg, bind!, server));
          if (done !== null) return done;
          break;
        }
        case 0x44 /* Describe */: {
          out.unsynced = true;
          const t = tryRead(() => readTarget(msg, 'Describe'));
          const name = t !== null && t.kind === 0x53 ? t.name : null;
          const done = this.useStatement(b, conn, out, msg, type, name, (server) => buildTarget('D', 0x53, server));
          if (done !== null) return done;
          break;
        }
        case 0x43 /* Close */: {
          out.unsynced = true;
          const t = tryRead(() => readTarget(msg, 'Close'));
          if (t !== null && t.kind === 0x53 && t.name === '') {
            this.closeUnnamed(conn, out, msg);
            break;
          }
          if (t !== null && t.kind === 0x53 && mapping) {
            // The server-side statement stays for other clients. The Close
            // goes to the server under the client's name all the same, so
            // that its CloseComplete comes when PostgreSQL's would (at the
            // next Sync or Flush) and a statement the client made with SQL
            // PREPARE is closed; closing a name that does not exist is no
            // error. A Close the server skipped (after an error) closes nothing.
            const had = this.statements.get(t.name);
            this.statements.delete(t.name);
            out.chunks.push(t.name.startsWith('pgmux_') ? CLOSE_NOTHING : msg);
            q.push({
              kind: enum_.forward,
              type,
              onSkip: this.undo.record(() => {
                if (had !== undefined && !this.statements.has(t.name)) this.statements.set(t.name, had);
              }),
            });
            break;
          }
          this.forward(out, msg, type);
          break;
        }
        case 0x45 /* Execute */:
          out.unsynced = true;
          this.forward(out, msg, type);
          break;
        case 0x48 /* Flush */:
          out.chunks.push(msg);
          break;
        case 0x53 /* Sync */:
          out.unsynced = false;
          this.forward(out, msg, type);
          this.undo.next();
          break;
        case 0x51 /* Query */:
          this.simpleQuery(b, conn, msg, out);
          break;
        case 0x46 /* FunctionCall */:
          this.forward(out, msg, type);
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
   * A Bind or Describe of statement `name` (null: a portal, or a message
   * pgmux cannot read, sent as it is). The unnamed statement must be the
   * client's own on the server; a named one is prepared there if needed
   * and renamed. Returns the batch's translation when the rest of it is
   * skipped, else null.
   */
  private useStatement(b: Batch, conn: ServerConnection, out: Translated, msg: Buffer, type: number, name: string | null, rename: (server: string) => Buffer): Translated | null {
    if (name === null || (name !== '' && this.host.maxPrepared === 0)) {
      this.forward(out, msg, type);
      return null;
    }
    if (name === '') {
      this.useUnnamed(conn, out);
      this.forward(out, msg, type);
      return null;
    }
    const st = this.statements.get(name);
    if (st === undefined) return this.unknown(b, out, name, msg, type);
    this.ensurePrepared(conn, st, out);
    const server = serverStatementName(st.id);
    out.chunks.push(rename(server));
    this.queue.push({ kind: enum_.forward, type, names: { server, client: name } });
    return null;
  }

  private forward(out: Translated, msg: Buffer, type: number): void {
    out.chunks.push(msg);
    this.queue.push({ kind: enum_.forward, type });
  }

  /**
   * A simple Query drops the unnamed statement (PostgreSQL treats it as a
   * use of the unnamed statement and portal). DEALLOCATE ALL and DISCARD
   * ALL drop every prepared statement of the server session, the shared
   * ones too: pgmux forgets them there at once (what it forgets it
   * prepares again, behind a Close), and the client's own names go when
   * the statement succeeded. DEALLOCATE of a name the client prepared with
   * Parse deallocates its server-side copy, so the server answers it.
   */
  private simpleQuery(b: Batch, conn: ServerConnection, msg: Buffer, out: Translated): void {
    // A Query the server skips (sent after an error, before Sync) drops nothing.
    const onSkip = this.dropUnnamed(conn);
    const deallocates = b.info?.deallocates ?? [];
    if (deallocates.length === 0) {
      out.chunks.push(msg);
      this.queue.push({ kind: enum_.forward, type: 0x51, onSkip });
      return;
    }
    const all = deallocates.includes('*');
    if (all) conn.prepared.clear();
    const sole = b.msgs.length === 1 && deallocates.length === 1 && !all && this.host.maxPrepared > 0 ? this.statements.get(deallocates[0]) : undefined;
    if (sole !== undefined) {
      // The client's own statement: its server-side copy is what goes.
      this.ensurePrepared(conn, sole, out);
      out.chunks.push(query(`DEALLOCATE ${quoteIdent(serverStatementName(sole.id))}`));
    } else {
      out.chunks.push(msg);
    }
    let failed = false;
    this.queue.push({
      kind: enum_.forward,
      type: 0x51,
      onError: () => (failed = true),
      onSkip,
      onDone: () => {
        if (sole !== undefined) conn.prepared.delete(sole.id);
        if (failed) return;
        if (all) this.statements.clear();
        else for (const name of deallocates) if (sole === undefined || this.statements.get(name) === sole) this.statements.delete(name);
      },
    });
  }

  /**
   * A simple Query sent outside any extended-protocol run, which the
   * server therefore cannot skip: it drops the client's unnamed statement
   * and the server's, for good.
   */
  queryOutsideRun(conn: ServerConnection): void {
    this.unnamed.put(null);
    unnamedThere(conn).put(null);
  }

  /**
   * A Parse of the unnamed statement that starts an extended-protocol run
   * (the server cannot skip it), sent as the client's own message: the
   * client's unnamed statement and the server's are this one. Returns
   * what its failure undoes (both are then gone, as parseUnnamed's).
   */
  parseUnnamedOutsideRun(conn: ServerConnection, rest: Buffer, sql: string): () => void {
    const st: ClientStatement = { id: -1, rest: Buffer.from(rest), sql, epoch: parseEpoch() };
    this.unnamed.put(st);
    unnamedThere(conn).put(st);
    return () => {
      this.unnamed.put(null);
      unnamedThere(conn).put(null);
    };
  }

  /** No extended-protocol run is open (a Sync was sent, or none began since): a new run begins. */
  syncSent(): void {
    this.undo.next();
  }

  private parseUnnamed(conn: ServerConnection, msg: Buffer, rest: Buffer, sql: string, out: Translated): void {
    const st: ClientStatement = { id: -1, rest: Buffer.from(rest), sql, epoch: parseEpoch() };
    const mine = this.unnamed.set(st);
    const there = unnamedThere(conn).set(st);
    const undo = this.undo.record(() => {
      there();
      mine();
    });
    out.chunks.push(msg);
    this.queue.push({
      kind: enum_.forward,
      type: 0x50,
      // A skipped Parse changed nothing; a failed one has dropped the old
      // unnamed statement too.
      onSkip: undo,
      onError: () => {
        undo();
        this.unnamed.set(null);
        unnamedThere(conn).set(null);
      },
    });
  }

  /**
   * Before a Bind or Describe of the unnamed statement: the server's must
   * be this client's. Another client's is replaced by this client's own
   * (prepared again, its replies hidden), or closed when this client has
   * none, so the server itself answers that it does not exist.
   */
  private useUnnamed(conn: ServerConnection, out: Translated): void {
    const mine = this.unnamed.value;
    const there = unnamedOn.get(conn);
    if (there !== undefined && there.value === mine) return;
    const undo = this.undo.record(unnamedThere(conn).set(mine));
    if (mine === null) {
      out.chunks.push(CLOSE_UNNAMED);
      this.queue.push({ kind: enum_.swallow, type: 0x43, onSkip: undo });
      return;
    }
    out.chunks.push(buildParse('', mine.rest));
    this.queue.push({
      kind: enum_.swallow,
      type: 0x50,
      onSkip: undo,
      onError: () => {
        undo();
        unnamedThere(conn).set(null);
      },
    });
  }

  private closeUnnamed(conn: ServerConnection, out: Translated, msg: Buffer): void {
    out.chunks.push(msg);
    this.queue.push({ kind: enum_.forward, type: 0x43, onSkip: this.dropUnnamed(conn) });
  }

  /** The client's unnamed statement, and the server's, are gone; returns the undo, should the server skip the message. */
  private dropUnnamed(conn: ServerConnection): () => void {
    const mine = this.unnamed.set(null);
    const there = unnamedThere(conn).set(null);
    return this.undo.record(() => {
      there();
      mine();
    });
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
      const p = tryRead(() => readParse(m.msg));
      if (p === null || p.name === '' || this.statements.has(p.name) || parsed.some((x) => x.name === p.name)) return false;
      const id = this.host.statementIds.known(p.rest);
      if (id === undefined || !this.host.statementIds.isValid(id)) return false;
      parsed.push({ name: p.name, rest: Buffer.from(p.rest), sql: p.sql, id });
    }
    for (const p of parsed) {
      this.statements.set(p.name, { id: p.id, rest: p.rest, sql: p.sql, epoch: parseEpoch() });
      this.queue.push({ kind: enum_.synth, type: 0x50, bytes: Buffer.from([0x31, 0, 0, 0, 4]) });
    }
    this.queue.push({ kind: enum_.synth, type: 0x53, bytes: null });
    return true;
  }

  /** Prepares `st` on `conn` ahead of its use, its reply hidden from the client. */
  private ensurePrepared(conn: ServerConnection, st: ClientStatement, out: Translated): void {
    if (conn.prepared.fresh(st.id, st.epoch)) {
      conn.prepared.touch(st.id);
      this.host.stats.preparedHits++;
      return;
    }
    this.host.stats.preparedMisses++;
    const id = st.id;
    this.prepare(conn, id, st.rest, parseEpoch(), out);
    this.queue.push({ kind: enum_.swallow, type: 0x50, onError: () => conn.prepared.delete(id) });
  }

  /**
   * Puts a Parse of `id` in `out` (the caller queues its entry), behind a
   * Close of any copy the server may hold: pgmux may have forgotten one it
   * has (after DEALLOCATE ALL that failed, say), and an older one is replaced.
   */
  private prepare(conn: ServerConnection, id: number, rest: Buffer, epoch: number, out: Translated): void {
    if (!conn.prepared.has(id)) this.evict(conn, out);
    const name = serverStatementName(id);
    out.chunks.push(buildTarget('C', 0x53, name));
    this.queue.push({ kind: enum_.swallow, type: 0x43 });
    conn.prepared.add(id, epoch);
    out.chunks.push(buildParse(name, rest));
  }

  /** Closes least recently used statements so one more fits. */
  private evict(conn: ServerConnection, out: Translated): void {
    for (const id of conn.prepared.evictFor(this.host.maxPrepared)) {
      out.chunks.push(buildTarget('C', 0x53, serverStatementName(id)));
      this.queue.push({ kind: enum_.swallow, type: 0x43 });
    }
  }

  /** The server fails in the client's place; the client reads `err`. */
  private failOnServer(out: Translated, err: PgError): void {
    out.chunks.push(FAILING_PARSE);
    this.queue.push({ kind: enum_.forward, type: 0x50, replaceError: recoverable(err) });
  }

  /**
   * A Bind or Describe of a name the client has not prepared with Parse
   * goes to the server under that name: a statement the client made with
   * SQL PREPARE is there (the two share one namespace in PostgreSQL), any
   * other name is not (pgmux names its own pgmux_N), and the server answers
   * in its own words and order. A name that could be one of pgmux's gets
   * pgmux's answer. Null: translation goes on.
   */
  private unknown(b: Batch, out: Translated, name: string, msg: Buffer, type: number): Translated | null {
    if (!name.startsWith('pgmux_')) {
      this.forward(out, msg, type);
      return null;
    }
    this.failOnServer(out, new PgError(SqlState.INVALID_SQL_STATEMENT_NAME, `prepared statement "${name}" does not exist`));
    return this.skipRest(b, out);
  }

  /**
   * After a failed message the server ignores everything up to Sync: the
   * rest of the batch is dropped but for its Sync; without one, the
   * client's messages are dropped until its next Sync.
   */
  private skipRest(b: Batch, out: Translated): Translated {
    const last = b.msgs[b.msgs.length - 1];
    if (last.type !== 0x53) {
      out.unsynced = true;
      out.refusedUntilSync = true;
      return out;
    }
    this.forward(out, last.msg, 0x53);
    this.undo.next();
    out.unsynced = false;
    return out;
  }
}


/** A message pgmux cannot read is the server's to refuse, in its own words. */
function tryRead<T>(read: () => T): T | null {
  try {
    return read();
  } catch {
    return null;
  }
}
