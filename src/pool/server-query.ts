import { FrameReader } from '../protocol/framing.ts';
import { PgError, SqlState } from '../protocol/errors.ts';
import { parseErrorFields, query } from '../protocol/messages.ts';
import type { ServerConnection, ServerOwner } from './server-connection.ts';

/** A row as text values by column name (the simple query protocol sends text). */
export type TextRow = Record<string, string | null>;

/** A server session used by pgmux alone, for queries whose rows it reads. */
export interface CheckSession {
  rows(sql: string, timeoutMs: number): Promise<TextRow[]>;
  close(): void;
  readonly closed: boolean;
}

/** `conn` as a CheckSession: it is never lent to a client. */
export function checkSession(conn: ServerConnection): CheckSession {
  return {
    rows: (sql, timeoutMs) => queryRows(conn, sql, timeoutMs),
    close: () => conn.close(),
    get closed() {
      return conn.closed;
    },
  };
}

/**
 * Runs one simple Query on a server connection nobody else owns and
 * returns its rows. For pgmux's own look-ups (node health, replication
 * positions, function volatility) on connections kept for them alone: the
 * connection's own reader skips row bodies, so the rows are framed here.
 * An ErrorResponse rejects with the server's SQLSTATE; no answer within
 * `timeoutMs` closes the connection.
 */
export function queryRows(conn: ServerConnection, sql: string, timeoutMs: number): Promise<TextRow[]> {
  if (conn.closed) return Promise.reject(new PgError(SqlState.CONNECTION_FAILURE, 'server connection is closed'));
  return new Promise((resolve, reject) => {
    const reader = new FrameReader('TDEZ');
    let columns: string[] = [];
    const rows: TextRow[] = [];
    let error: PgError | null = null;
    let done = false;
    const finish = (err: Error | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      conn.setOwner(null);
      if (err === null) resolve(rows);
      else reject(err);
    };
    const timer = setTimeout(() => {
      finish(new PgError(SqlState.CONNECTION_FAILURE, `server did not answer within ${timeoutMs} ms`));
      conn.close();
    }, timeoutMs);
    const owner: ServerOwner = {
      onMessage: () => true,
      onServerChunk: () => {},
      onRawChunk: (chunk) => {
        try {
          reader.feed(chunk, {
            onMessage: (type, body) => {
              if (type === 0x54 /* RowDescription */) columns = rowDescriptionNames(body!);
              else if (type === 0x44 /* DataRow */) rows.push(dataRowValues(body!, columns));
              else if (type === 0x45 /* ErrorResponse */ && error === null) {
                const f = parseErrorFields(body!);
                error = new PgError(f.get('C') ?? SqlState.INTERNAL_ERROR, f.get('M') ?? 'error', { severity: 'ERROR', detail: f.get('D') });
              } else if (type === 0x5a /* ReadyForQuery */) finish(error);
            },
          });
        } catch (err) {
          finish(err as Error);
          conn.close();
        }
      },
      onServerClose: () => finish(error ?? new PgError(SqlState.CONNECTION_FAILURE, 'server closed the connection unexpectedly')),
    };
    conn.setOwner(owner);
    conn.socket.write(query(sql));
  });
}

function rowDescriptionNames(body: Buffer): string[] {
  const n = body.readInt16BE(0);
  const names: string[] = [];
  let pos = 2;
  for (let i = 0; i < n; i++) {
    const end = body.indexOf(0, pos);
    names.push(body.toString('utf8', pos, end));
    // table oid, column number, type oid, type size, type modifier, format
    pos = end + 1 + 18;
  }
  return names;
}

function dataRowValues(body: Buffer, columns: string[]): TextRow {
  const n = body.readInt16BE(0);
  const row: TextRow = {};
  let pos = 2;
  for (let i = 0; i < n; i++) {
    const len = body.readInt32BE(pos);
    pos += 4;
    const name = columns[i] ?? String(i);
    if (len < 0) row[name] = null;
    else {
      row[name] = body.toString('utf8', pos, pos + len);
      pos += len;
    }
  }
  return row;
}
