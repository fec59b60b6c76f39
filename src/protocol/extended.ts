import { protocolViolation } from './errors.ts';

/**
 * The extended query protocol messages pgmux rewrites in transaction mode:
 * it renames prepared statements (Parse, Bind, Describe, Close) and reads
 * the SQL of Parse. Each function takes a whole message, header included.
 */

export const PARSE_COMPLETE = Buffer.from([0x31, 0, 0, 0, 4]);
export const BIND_COMPLETE = Buffer.from([0x32, 0, 0, 0, 4]);
export const CLOSE_COMPLETE = Buffer.from([0x33, 0, 0, 0, 4]);
export const SYNC = Buffer.from([0x53, 0, 0, 0, 4]);
export const FLUSH = Buffer.from([0x48, 0, 0, 0, 4]);

/** Offset just past the NUL ending the C string at `from`. */
function cstringEnd(msg: Buffer, from: number, what: string): number {
  const nul = msg.indexOf(0, from);
  if (nul < 0) throw protocolViolation(`invalid ${what} message: unterminated string`);
  return nul + 1;
}

export interface ParseMessage {
  name: string;
  sql: string;
  /** Everything after the name: query string and parameter types, as sent. */
  rest: Buffer;
}

export function readParse(msg: Buffer): ParseMessage {
  const nameEnd = cstringEnd(msg, 5, 'Parse');
  const sqlEnd = cstringEnd(msg, nameEnd, 'Parse');
  if (msg.length < sqlEnd + 2) throw protocolViolation('invalid Parse message: missing parameter count');
  return {
    name: msg.toString('utf8', 5, nameEnd - 1),
    sql: msg.toString('utf8', nameEnd, sqlEnd - 1),
    rest: msg.subarray(nameEnd),
  };
}

export function buildParse(name: string, rest: Buffer): Buffer {
  const nameLen = Buffer.byteLength(name);
  const out = Buffer.allocUnsafe(5 + nameLen + 1 + rest.length);
  out[0] = 0x50;
  out.writeInt32BE(out.length - 1, 1);
  out.write(name, 5, 'utf8');
  out[5 + nameLen] = 0;
  rest.copy(out, 6 + nameLen);
  return out;
}

export interface BindMessage {
  portal: string;
  statement: string;
  /** Offsets of the statement name within the message: [start, end incl. NUL). */
  statementAt: [number, number];
}

export function readBind(msg: Buffer): BindMessage {
  const portalEnd = cstringEnd(msg, 5, 'Bind');
  const stmtEnd = cstringEnd(msg, portalEnd, 'Bind');
  return {
    portal: msg.toString('utf8', 5, portalEnd - 1),
    statement: msg.toString('utf8', portalEnd, stmtEnd - 1),
    statementAt: [portalEnd, stmtEnd],
  };
}

/** The same Bind naming another prepared statement. */
export function renameBind(msg: Buffer, bind: BindMessage, statement: string): Buffer {
  const [from, to] = bind.statementAt;
  const nameLen = Buffer.byteLength(statement);
  const out = Buffer.allocUnsafe(msg.length - (to - from) + nameLen + 1);
  msg.copy(out, 0, 0, from);
  out.write(statement, from, 'utf8');
  out[from + nameLen] = 0;
  msg.copy(out, from + nameLen + 1, to);
  out.writeInt32BE(out.length - 1, 1);
  return out;
}

/** Describe and Close: 'S' (statement) or 'P' (portal), and a name. */
export interface TargetMessage {
  kind: number;
  name: string;
}

export function readTarget(msg: Buffer, what: string): TargetMessage {
  if (msg.length < 7) throw protocolViolation(`invalid ${what} message`);
  const kind = msg[5];
  if (kind !== 0x53 && kind !== 0x50) throw protocolViolation(`invalid ${what} message subtype ${kind}`);
  const end = cstringEnd(msg, 6, what);
  return { kind, name: msg.toString('utf8', 6, end - 1) };
}

export function buildTarget(type: 'D' | 'C', kind: number, name: string): Buffer {
  const nameLen = Buffer.byteLength(name);
  const out = Buffer.allocUnsafe(7 + nameLen);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(out.length - 1, 1);
  out[5] = kind;
  out.write(name, 6, 'utf8');
  out[6 + nameLen] = 0;
  return out;
}

/** The SQL of a simple Query message. */
export function readQuery(msg: Buffer): string {
  const end = msg.indexOf(0, 5);
  if (end < 0) throw protocolViolation('invalid Query message: unterminated string');
  return msg.toString('utf8', 5, end);
}
