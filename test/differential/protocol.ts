/**
 * Frontend messages of a differential script, as data (so a generated
 * script prints as code that can be pasted into a case), and the backend
 * messages recorded from a run, decoded only to be shown.
 *
 * The bytes come from pgmux's own builders in src/protocol where it has
 * them (Query, Parse, Describe/Close, Sync, Flush, Terminate); the rest are
 * built here, field by field as the protocol documentation lays them out.
 */
import { query, TERMINATE, parseErrorFields } from '../../src/protocol/messages.ts';
import { buildParse, buildTarget, FLUSH, SYNC } from '../../src/protocol/extended.ts';

/** A Bind parameter: text, NULL, or a long run of one string (printed short). */
export type Param = string | null | { repeat: string; times: number };

export type Msg =
  | { t: 'Query'; sql: string }
  | { t: 'Parse'; name: string; sql: string; types?: number[] }
  | { t: 'Bind'; portal: string; stmt: string; params?: Param[] }
  | { t: 'Describe'; kind: string; name: string }
  | { t: 'Execute'; portal: string; maxRows: number }
  | { t: 'Close'; kind: string; name: string }
  | { t: 'Sync' }
  | { t: 'Flush' }
  | { t: 'FunctionCall'; oid: number; args: (string | null)[] }
  | { t: 'CopyData'; data: string }
  | { t: 'CopyDone' }
  | { t: 'CopyFail'; message: string }
  | { t: 'Terminate' }
  /** Bytes no builder makes (a bad header, an unterminated string); `note` says what they are. */
  | { t: 'Raw'; hex: string; note: string };

// ---- builders, named as the protocol names the messages ----

export const Query = (sql: string): Msg => ({ t: 'Query', sql });
export const Parse = (name: string, sql: string, types?: number[]): Msg => (types ? { t: 'Parse', name, sql, types } : { t: 'Parse', name, sql });
export const Bind = (portal: string, stmt: string, params?: Param[]): Msg => (params ? { t: 'Bind', portal, stmt, params } : { t: 'Bind', portal, stmt });
export const Describe = (kind: string, name: string): Msg => ({ t: 'Describe', kind, name });
export const Execute = (portal = '', maxRows = 0): Msg => ({ t: 'Execute', portal, maxRows });
export const Close = (kind: string, name: string): Msg => ({ t: 'Close', kind, name });
export const Sync: Msg = { t: 'Sync' };
export const Flush: Msg = { t: 'Flush' };
export const FunctionCall = (oid: number, args: (string | null)[]): Msg => ({ t: 'FunctionCall', oid, args });
export const CopyData = (data: string): Msg => ({ t: 'CopyData', data });
export const CopyDone: Msg = { t: 'CopyDone' };
export const CopyFail = (message: string): Msg => ({ t: 'CopyFail', message });
export const Terminate: Msg = { t: 'Terminate' };
export const Raw = (bytes: Buffer, note: string): Msg => ({ t: 'Raw', hex: bytes.toString('hex'), note });

function frame(type: string, body: Buffer): Buffer {
  const head = Buffer.allocUnsafe(5);
  head[0] = type.charCodeAt(0);
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

const int16 = (v: number) => {
  const b = Buffer.allocUnsafe(2);
  b.writeInt16BE(v);
  return b;
};
const int32 = (v: number) => {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(v);
  return b;
};
const cstr = (s: string) => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);

function paramBytes(p: Param): Buffer | null {
  if (p === null) return null;
  return typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p.repeat.repeat(p.times), 'utf8');
}

/** Length-prefixed values (-1 for NULL), as Bind and FunctionCall carry them. */
function values(vals: (Buffer | null)[]): Buffer {
  const parts: Buffer[] = [int16(vals.length)];
  for (const v of vals) {
    if (v === null) parts.push(int32(-1));
    else parts.push(int32(v.length), v);
  }
  return Buffer.concat(parts);
}

export function encode(m: Msg): Buffer {
  switch (m.t) {
    case 'Query':
      return query(m.sql);
    case 'Parse': {
      const types = m.types ?? [];
      return buildParse(m.name, Buffer.concat([cstr(m.sql), int16(types.length), ...types.map(int32)]));
    }
    case 'Bind':
      // No parameter format codes (all text), no result format codes (all text).
      return frame('B', Buffer.concat([cstr(m.portal), cstr(m.stmt), int16(0), values((m.params ?? []).map(paramBytes)), int16(0)]));
    case 'Describe':
      return buildTarget('D', m.kind.charCodeAt(0), m.name);
    case 'Execute':
      return frame('E', Buffer.concat([cstr(m.portal), int32(m.maxRows)]));
    case 'Close':
      return buildTarget('C', m.kind.charCodeAt(0), m.name);
    case 'Sync':
      return SYNC;
    case 'Flush':
      return FLUSH;
    case 'FunctionCall':
      // Arguments in text, result in text.
      return frame('F', Buffer.concat([int32(m.oid), int16(0), values(m.args.map((a) => (a === null ? null : Buffer.from(a)))), int16(0)]));
    case 'CopyData':
      return frame('d', Buffer.from(m.data, 'utf8'));
    case 'CopyDone':
      return frame('c', Buffer.alloc(0));
    case 'CopyFail':
      return frame('f', cstr(m.message));
    case 'Terminate':
      return TERMINATE;
    case 'Raw':
      return Buffer.from(m.hex, 'hex');
  }
}

// ---- printing: scripts as code, messages as one line each ----

const lit = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n').replace(/\t/g, '\\t')}'`;

function printParam(p: Param): string {
  if (p === null) return 'null';
  return typeof p === 'string' ? lit(p) : `{ repeat: ${lit(p.repeat)}, times: ${p.times} }`;
}

/** The builder call that makes `m`, as source text. */
export function printMsg(m: Msg): string {
  switch (m.t) {
    case 'Query':
      return `Query(${lit(m.sql)})`;
    case 'Parse':
      return `Parse(${lit(m.name)}, ${lit(m.sql)}${m.types ? `, [${m.types.join(', ')}]` : ''})`;
    case 'Bind':
      return `Bind(${lit(m.portal)}, ${lit(m.stmt)}${m.params ? `, [${m.params.map(printParam).join(', ')}]` : ''})`;
    case 'Describe':
    case 'Close':
      return `${m.t}(${lit(m.kind)}, ${lit(m.name)})`;
    case 'Execute':
      return `Execute(${lit(m.portal)}, ${m.maxRows})`;
    case 'FunctionCall':
      return `FunctionCall(${m.oid}, [${m.args.map((a) => (a === null ? 'null' : lit(a))).join(', ')}])`;
    case 'CopyData':
      return `CopyData(${lit(m.data)})`;
    case 'CopyFail':
      return `CopyFail(${lit(m.message)})`;
    case 'Raw':
      return `Raw(Buffer.from(${lit(m.hex)}, 'hex'), ${lit(m.note)})`;
    default:
      return m.t;
  }
}

/** A backend message after normalisation: type and body, compared byte for byte. */
export interface BackendMsg {
  type: string;
  body: Buffer;
}

/** The pseudo-message recorded when the other side closed the connection. */
export const CLOSED = '<closed>';

const cut = (s: string, n = 120) => (s.length > n ? `${s.slice(0, n)}…(${s.length} chars)` : s);

function cstrings(body: Buffer): string[] {
  return body.toString('utf8').split('\0').slice(0, -1);
}

/** One line a person can read: the message's name and its decoded fields. */
export function showBackend(m: BackendMsg): string {
  const b = m.body;
  try {
    switch (m.type) {
      case CLOSED:
        return 'connection closed';
      case 'E':
      case 'N': {
        const f = [...parseErrorFields(b)].map(([k, v]) => `${k}=${cut(v)}`).join(' ');
        return `${m.type === 'E' ? 'ErrorResponse' : 'NoticeResponse'} ${f}`;
      }
      case 'Z':
        return `ReadyForQuery ${String.fromCharCode(b[0])}`;
      case 'C':
        return `CommandComplete ${cstrings(b)[0]}`;
      case '1':
        return 'ParseComplete';
      case '2':
        return 'BindComplete';
      case '3':
        return 'CloseComplete';
      case 'n':
        return 'NoData';
      case 's':
        return 'PortalSuspended';
      case 'I':
        return 'EmptyQueryResponse';
      case 'S':
        return `ParameterStatus ${cstrings(b).join('=')}`;
      case 'K':
        return 'BackendKeyData';
      case 'R':
        return `Authentication ${b.readInt32BE(0)}`;
      case 'v': {
        // PostgreSQL 15 sends its newest version whole here (3.0 as 196608), not a minor number.
        const v = b.readInt32BE(0);
        return `NegotiateProtocolVersion ${v} (${v >>> 16}.${v & 0xffff}), unrecognised [${cstrings(b.subarray(8)).join(', ')}]`;
      }
      case 'T': {
        const cols: string[] = [];
        let pos = 2;
        for (let i = 0; i < b.readInt16BE(0); i++) {
          const end = b.indexOf(0, pos);
          const table = b.readInt32BE(end + 1);
          cols.push(`${b.toString('utf8', pos, end)}:${b.readInt32BE(end + 7)}${table ? ` (table ${table})` : ''}`);
          pos = end + 19;
        }
        return `RowDescription ${cols.join(', ')}`;
      }
      case 't': {
        const n = b.readInt16BE(0);
        return `ParameterDescription ${Array.from({ length: n }, (_, i) => b.readInt32BE(2 + 4 * i)).join(', ')}`;
      }
      case 'D':
      case 'V': {
        const vals: string[] = [];
        let pos = m.type === 'D' ? 2 : 0;
        const n = m.type === 'D' ? b.readInt16BE(0) : 1;
        for (let i = 0; i < n; i++) {
          const len = b.readInt32BE(pos);
          pos += 4;
          vals.push(len < 0 ? 'NULL' : cut(b.toString('utf8', pos, pos + len), 40));
          if (len > 0) pos += len;
        }
        return `${m.type === 'D' ? 'DataRow' : 'FunctionCallResponse'} ${vals.join(' | ')}`;
      }
      case 'G':
      case 'H':
      case 'W':
        return `${{ G: 'CopyInResponse', H: 'CopyOutResponse', W: 'CopyBothResponse' }[m.type]} format ${b[0]}`;
      case 'd':
        return `CopyData ${lit(cut(b.toString('utf8'), 60))}`;
      case 'c':
        return 'CopyDone';
      case 'A':
        return `NotificationResponse ${cstrings(b.subarray(4)).join(' ')}`;
    }
  } catch {
    // fall through to the raw form
  }
  return `'${m.type}' ${cut(b.toString('hex'), 80)}`;
}
