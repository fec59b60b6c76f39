import { protocolViolation, type ErrorFields, type Severity } from './errors.ts';

/**
 * Codecs for the messages pgmux itself writes or must read. Everything else
 * is forwarded as raw bytes and never decoded.
 */

// Startup-phase request codes (the Int32 after the length).
export const PROTOCOL_3_0 = 196608;
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;

// Authentication request codes in an 'R' message.
export const AUTH_OK = 0;
export const AUTH_CLEARTEXT_PASSWORD = 3;
export const AUTH_MD5_PASSWORD = 5;
export const AUTH_SASL = 10;
export const AUTH_SASL_CONTINUE = 11;
export const AUTH_SASL_FINAL = 12;

/** Builds one message: type byte, length, fields. */
class MessageBuilder {
  private parts: Buffer[] = [];
  private size = 0;

  int32(v: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeInt32BE(v);
    return this.push(b);
  }
  int16(v: number): this {
    const b = Buffer.allocUnsafe(2);
    b.writeInt16BE(v);
    return this.push(b);
  }
  byte(v: number): this {
    return this.push(Buffer.from([v]));
  }
  cstring(s: string): this {
    this.push(Buffer.from(s, 'utf8'));
    return this.byte(0);
  }
  bytes(b: Buffer): this {
    return this.push(b);
  }
  private push(b: Buffer): this {
    this.parts.push(b);
    this.size += b.length;
    return this;
  }
  /** With a type byte (regular message) or without (startup-phase packet). */
  build(type?: string): Buffer {
    const head = type === undefined ? 4 : 5;
    const out = Buffer.allocUnsafe(head + this.size);
    let pos = 0;
    if (type !== undefined) out[pos++] = type.charCodeAt(0);
    out.writeInt32BE(this.size + 4, pos);
    pos += 4;
    for (const p of this.parts) {
      p.copy(out, pos);
      pos += p.length;
    }
    return out;
  }
}

// ---- backend messages pgmux writes to clients ----

export function authenticationRequest(code: number, data?: Buffer): Buffer {
  const m = new MessageBuilder().int32(code);
  if (data) m.bytes(data);
  return m.build('R');
}

export function authenticationSasl(mechanisms: string[]): Buffer {
  const m = new MessageBuilder().int32(AUTH_SASL);
  for (const mech of mechanisms) m.cstring(mech);
  return m.byte(0).build('R');
}

export function parameterStatus(name: string, value: string): Buffer {
  return new MessageBuilder().cstring(name).cstring(value).build('S');
}

export function backendKeyData(processId: number, secretKey: number): Buffer {
  return new MessageBuilder().int32(processId).int32(secretKey).build('K');
}

/** status: 'I' idle, 'T' in a transaction block, 'E' in a failed transaction block. */
export function readyForQuery(status: 'I' | 'T' | 'E'): Buffer {
  return new MessageBuilder().byte(status.charCodeAt(0)).build('Z');
}

function errorOrNotice(type: 'E' | 'N', f: ErrorFields): Buffer {
  const m = new MessageBuilder();
  m.byte(0x53).cstring(f.severity); // S: localized severity
  m.byte(0x56).cstring(f.severity); // V: severity, never localized
  m.byte(0x43).cstring(f.code);
  m.byte(0x4d).cstring(f.message);
  if (f.detail) m.byte(0x44).cstring(f.detail);
  if (f.hint) m.byte(0x48).cstring(f.hint);
  return m.byte(0).build(type);
}

export function errorResponse(f: ErrorFields): Buffer {
  return errorOrNotice('E', f);
}

export function noticeResponse(message: string, severity: Severity = 'NOTICE', code = '00000'): Buffer {
  return errorOrNotice('N', { severity, code, message });
}

/** A NoticeResponse with every field an ErrorResponse may carry (detail, hint). */
export function noticeResponseFields(f: ErrorFields): Buffer {
  return errorOrNotice('N', f);
}

/** Tells a client asking for 3.x (x > 0) or for `_pq_.` options what we speak. */
export function negotiateProtocolVersion(newestMinor: number, unrecognized: string[]): Buffer {
  const m = new MessageBuilder().int32(newestMinor).int32(unrecognized.length);
  for (const o of unrecognized) m.cstring(o);
  return m.build('v');
}

// ---- frontend messages pgmux writes to servers ----

export function startupMessage(params: Iterable<[string, string]>): Buffer {
  const m = new MessageBuilder().int32(PROTOCOL_3_0);
  for (const [k, v] of params) m.cstring(k).cstring(v);
  return m.byte(0).build();
}

export function cancelRequest(processId: number, secretKey: number): Buffer {
  return new MessageBuilder().int32(CANCEL_REQUEST_CODE).int32(processId).int32(secretKey).build();
}

export function passwordMessage(password: string): Buffer {
  return new MessageBuilder().cstring(password).build('p');
}

export function saslInitialResponse(mechanism: string, data: string): Buffer {
  const d = Buffer.from(data, 'utf8');
  return new MessageBuilder().cstring(mechanism).int32(d.length).bytes(d).build('p');
}

export function saslResponse(data: string): Buffer {
  return new MessageBuilder().bytes(Buffer.from(data, 'utf8')).build('p');
}

export function query(sql: string): Buffer {
  return new MessageBuilder().cstring(sql).build('Q');
}

export const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4]);

// ---- decoders ----

/** Reads NUL-terminated strings out of a message body. */
export class BodyReader {
  private pos = 0;
  private readonly body: Buffer;
  constructor(body: Buffer) {
    this.body = body;
  }
  get remaining(): number {
    return this.body.length - this.pos;
  }
  cstring(): string {
    const end = this.body.indexOf(0, this.pos);
    if (end < 0) throw protocolViolation('invalid string in message');
    const s = this.body.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }
  int32(): number {
    if (this.remaining < 4) throw protocolViolation('insufficient data left in message');
    const v = this.body.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  bytes(n: number): Buffer {
    if (n < 0 || this.remaining < n) throw protocolViolation('insufficient data left in message');
    const b = this.body.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  rest(): Buffer {
    return this.bytes(this.remaining);
  }
}

export type StartupRequest =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; processId: number; secretKey: number }
  | { kind: 'startup'; minor: number; params: Map<string, string>; protocolOptions: string[] };

/** Decodes a startup-phase packet (length word included). Throws PgError 08P01. */
export function parseStartupPacket(packet: Buffer): StartupRequest {
  const code = packet.readInt32BE(4);
  if (code === SSL_REQUEST_CODE && packet.length === 8) return { kind: 'ssl' };
  if (code === GSSENC_REQUEST_CODE && packet.length === 8) return { kind: 'gssenc' };
  if (code === CANCEL_REQUEST_CODE && packet.length === 16) {
    return { kind: 'cancel', processId: packet.readInt32BE(8), secretKey: packet.readInt32BE(12) };
  }
  const major = code >>> 16;
  if (major !== 3) {
    throw protocolViolation(`unsupported frontend protocol ${major}.${code & 0xffff}: server supports 3.0 to 3.0`);
  }
  const params = new Map<string, string>();
  const protocolOptions: string[] = [];
  const r = new BodyReader(packet.subarray(8));
  for (;;) {
    const name = r.cstring();
    if (name === '') break;
    const value = r.cstring();
    // `_pq_.` names are protocol options, not GUCs: we recognize none.
    if (name.startsWith('_pq_.')) protocolOptions.push(name);
    else params.set(name, value);
  }
  if (r.remaining !== 0) throw protocolViolation('invalid startup packet layout: expected terminator as last byte');
  return { kind: 'startup', minor: code & 0xffff, params, protocolOptions };
}

/**
 * The protocol version a startup packet asks for, when it is one pgmux does
 * not speak (any major version but 3); null for 3.x and for the request
 * codes (SSL, GSS encryption, cancel), which are not versions.
 */
export function unsupportedProtocol(packet: Buffer): { major: number; minor: number } | null {
  const code = packet.readInt32BE(4);
  if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE || code === CANCEL_REQUEST_CODE) return null;
  const major = code >>> 16;
  return major === 3 ? null : { major, minor: code & 0xffff };
}

/**
 * An error as protocol 2.0 sends it: 'E', then the text, newline-ended, as
 * one string. PostgreSQL answers a client asking for 2.0 (or older) so.
 */
export function protocol2Error(severity: Severity, message: string): Buffer {
  return Buffer.from(`E${severity}:  ${message}\n\0`, 'utf8');
}

/**
 * The first word of a Terminate message ('X', then the high bytes of its
 * length, 4) read as a startup packet's length: what a client that gives up
 * before its startup packet sends.
 */
export const TERMINATE_AS_STARTUP_LENGTH = TERMINATE.readInt32BE(0);

/** Fields of an ErrorResponse or NoticeResponse body, keyed by field type character. */
export function parseErrorFields(body: Buffer): Map<string, string> {
  const fields = new Map<string, string>();
  const r = new BodyReader(body);
  while (r.remaining > 0) {
    const t = r.bytes(1)[0];
    if (t === 0) break;
    fields.set(String.fromCharCode(t), r.cstring());
  }
  return fields;
}

export function parseParameterStatus(body: Buffer): [string, string] {
  const r = new BodyReader(body);
  return [r.cstring(), r.cstring()];
}

export function parseBackendKeyData(body: Buffer): { processId: number; secretKey: number } {
  const r = new BodyReader(body);
  return { processId: r.int32(), secretKey: r.int32() };
}

export function parseAuthenticationRequest(body: Buffer): { code: number; data: Buffer } {
  const r = new BodyReader(body);
  return { code: r.int32(), data: r.rest() };
}

/** SASL mechanisms listed in an AuthenticationSASL body's data. */
export function parseSaslMechanisms(data: Buffer): string[] {
  const r = new BodyReader(data);
  const out: string[] = [];
  for (;;) {
    const m = r.cstring();
    if (m === '') return out;
    out.push(m);
  }
}

/** SASLInitialResponse: mechanism name, then Int32 length (-1: none) and data. */
export function parseSaslInitialResponse(body: Buffer): { mechanism: string; data: Buffer | null } {
  const r = new BodyReader(body);
  const mechanism = r.cstring();
  const len = r.int32();
  const data = len === -1 ? null : r.bytes(len);
  if (r.remaining !== 0) throw protocolViolation('malformed SASLInitialResponse message');
  return { mechanism, data };
}

/** A PasswordMessage body: one NUL-terminated string. */
export function parsePasswordMessage(body: Buffer): string {
  const r = new BodyReader(body);
  const s = r.cstring();
  if (r.remaining !== 0) throw protocolViolation('invalid password packet size');
  return s;
}

// ---- result sets pgmux answers itself (admin console) ----

/** Type OIDs used in pgmux's own result sets. */
export const TYPE_OID = { text: 25, int4: 23, int8: 20, float8: 701, bool: 16 } as const;

export function rowDescription(columns: { name: string; type: number }[]): Buffer {
  const m = new MessageBuilder().int16(columns.length);
  for (const c of columns) {
    const size = c.type === TYPE_OID.int8 || c.type === TYPE_OID.float8 ? 8 : c.type === TYPE_OID.int4 ? 4 : c.type === TYPE_OID.bool ? 1 : -1;
    m.cstring(c.name).int32(0).int16(0).int32(c.type).int16(size).int32(-1).int16(0);
  }
  return m.build('T');
}

export function dataRow(values: (string | null)[]): Buffer {
  const m = new MessageBuilder().int16(values.length);
  for (const v of values) {
    if (v === null) m.int32(-1);
    else {
      const b = Buffer.from(v, 'utf8');
      m.int32(b.length).bytes(b);
    }
  }
  return m.build('D');
}

export function commandComplete(tag: string): Buffer {
  return new MessageBuilder().cstring(tag).build('C');
}
