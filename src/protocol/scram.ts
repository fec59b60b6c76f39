/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) the way PostgreSQL speaks it: no
 * channel binding (we never offer SCRAM-SHA-256-PLUS), no authzid, the
 * SASL user name ignored in favour of the startup packet's, and passwords
 * run through SASLprep exactly as PostgreSQL's pg_saslprep does, so the
 * verifiers we derive are the ones PostgreSQL stores.
 *
 * Everything here is pure computation on message text: the sessions are
 * state machines that take one message and return the reply. Any problem
 * with what the peer sent surfaces as a ScramError carrying the SQLSTATE
 * PostgreSQL would report.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { SqlState } from './errors.ts';
import { saslPrep } from './saslprep.ts';

export { saslPrep };

/** A stored secret, as in pg_authid.rolpassword (RFC 5803 layout). */
export interface ScramVerifier {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

export class ScramError extends Error {
  readonly sqlstate: string;

  constructor(sqlstate: string, message: string) {
    super(message);
    this.name = 'ScramError';
    this.sqlstate = sqlstate;
  }
}

const KEY_LENGTH = 32; // SHA-256 output
const DEFAULT_ITERATIONS = 4096; // PostgreSQL's scram_iterations default
const SALT_LENGTH = 16; // what PostgreSQL generates
const NONCE_BYTES = 18; // PostgreSQL's raw nonce length; 24 base64 characters
const MAX_ITERATIONS = 0x7fffffff; // PostgreSQL keeps the count in an int
const VERIFIER_PREFIX = 'SCRAM-SHA-256$';

// ---------------------------------------------------------------------------
// Verifiers

/** Parses "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>"; null if it is not one. */
export function parseScramVerifier(s: string): ScramVerifier | null {
  const m = /^SCRAM-SHA-256\$([0-9]+):([^$:]+)\$([^$:]+):([^$:]+)$/.exec(s);
  if (m === null) return null;
  const iterations = parseIterations(m[1]!);
  const salt = decodeBase64(m[2]!);
  const storedKey = decodeBase64(m[3]!);
  const serverKey = decodeBase64(m[4]!);
  if (iterations === null || salt === null || salt.length === 0) return null;
  if (storedKey?.length !== KEY_LENGTH || serverKey?.length !== KEY_LENGTH) return null;
  return { iterations, salt, storedKey, serverKey };
}

export function formatScramVerifier(v: ScramVerifier): string {
  return `${VERIFIER_PREFIX}${v.iterations}:${v.salt.toString('base64')}$${v.storedKey.toString('base64')}:${v.serverKey.toString('base64')}`;
}

/** The verifier PostgreSQL would store for `password` with this salt and iteration count. */
export function scramVerifierFromPassword(
  password: string,
  salt: Buffer = randomBytes(SALT_LENGTH),
  iterations: number = DEFAULT_ITERATIONS,
): ScramVerifier {
  const salted = saltedPassword(password, salt, iterations);
  return {
    iterations,
    salt,
    storedKey: sha256(hmac(salted, 'Client Key')),
    serverKey: hmac(salted, 'Server Key'),
  };
}

function saltedPassword(password: string, salt: Buffer, iterations: number): Buffer {
  // As PostgreSQL (server and libpq alike): a password SASLprep refuses is
  // used as it is rather than rejected, so every password stays usable.
  const prepared = saslPrep(password) ?? password;
  return pbkdf2Sync(Buffer.from(prepared, 'utf8'), salt, iterations, KEY_LENGTH, 'sha256');
}

/**
 * For users pgmux does not know: a verifier that depends only on the user
 * name and a per-process secret, so repeated attempts see the same salt and
 * iteration count and cannot tell "no such user" from "wrong password".
 */
function mockVerifier(secret: Buffer, user: string, iterations: number): ScramVerifier {
  const digest = hmac(secret, user);
  return {
    iterations,
    salt: digest.subarray(0, SALT_LENGTH),
    storedKey: hmac(digest, 'Stored Key'),
    serverKey: hmac(digest, 'Server Key'),
  };
}

// ---------------------------------------------------------------------------
// Server side: pgmux authenticating a client

export interface ScramServerOptions {
  /** The user's stored verifier; null for an unknown user (or one whose secret cannot answer SCRAM). */
  verifier: ScramVerifier | null;
  /** The startup packet's user name, the only one that counts. */
  user: string;
  /** Per-process secret from which unknown users' mock salts are derived. */
  mockSecret: Buffer;
  /** Server nonce part (tests); default 18 random bytes in base64. */
  nonce?: string;
  /** Iteration count advertised for unknown users; should match the real verifiers'. Default 4096. */
  mockIterations?: number;
}

export class ScramServerSession {
  private readonly verifier: ScramVerifier;
  /** Unknown user: the exchange runs to the end and then fails. */
  private readonly doomed: boolean;
  private readonly user: string;
  private readonly serverNonce: string;
  private state: 'initial' | 'continue' | 'finished' = 'initial';
  private gs2Header = '';
  private nonce = '';
  private clientFirstBare = '';
  private serverFirst = '';

  constructor(opts: ScramServerOptions) {
    if (opts.nonce !== undefined && !isPrintable(opts.nonce)) {
      throw new TypeError('SCRAM nonce must be non-empty printable ASCII without commas');
    }
    this.user = opts.user;
    this.doomed = opts.verifier === null;
    this.verifier = opts.verifier ?? mockVerifier(opts.mockSecret, opts.user, opts.mockIterations ?? DEFAULT_ITERATIONS);
    this.serverNonce = opts.nonce ?? randomBytes(NONCE_BYTES).toString('base64');
  }

  /** client-first-message -> server-first-message. */
  clientFirst(message: string): string {
    if (this.state !== 'initial') throw outOfOrder('client-first-message');
    this.state = 'finished'; // a step that throws ends the exchange
    const what = 'client-first-message';
    if (message.length === 0) throw malformed(what, 'the message is empty');

    // gs2-header: cbind-flag "," [authzid] ","
    const flag = message[0];
    if (flag === 'p') {
      throw new ScramError(
        SqlState.PROTOCOL_VIOLATION,
        'The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.',
      );
    }
    // 'y' (client could bind but thinks we cannot) is honest: we never offer -PLUS.
    if (flag !== 'n' && flag !== 'y') throw malformed(what, `unexpected channel-binding flag ${describeChar(flag)}`);
    if (message[1] !== ',') throw malformed(what, `comma expected, but found ${describeChar(message[1])}`);
    if (message[2] === 'a') {
      throw new ScramError(SqlState.FEATURE_NOT_SUPPORTED, 'client uses authorization identity, but it is not supported');
    }
    if (message[2] !== ',') throw malformed(what, `unexpected attribute ${describeChar(message[2])} in the GS2 header`);
    const gs2Header = message.slice(0, 3);
    const bare = message.slice(3);

    const attrs = parseAttributes(bare, what);
    if (attrs[0]?.name === 'm') {
      throw new ScramError(SqlState.FEATURE_NOT_SUPPORTED, 'client requires an unsupported SCRAM extension');
    }
    // The SASL user name is read and ignored, as PostgreSQL does: libpq sends
    // it empty and the startup packet's user is authoritative.
    expectAttribute(attrs, 0, 'n', what);
    const clientNonce = expectAttribute(attrs, 1, 'r', what);
    if (!isPrintable(clientNonce)) throw new ScramError(SqlState.PROTOCOL_VIOLATION, 'non-printable characters in SCRAM nonce');
    checkExtensions(attrs, 2, attrs.length, what);

    this.gs2Header = gs2Header;
    this.clientFirstBare = bare;
    this.nonce = clientNonce + this.serverNonce;
    this.serverFirst = `r=${this.nonce},s=${this.verifier.salt.toString('base64')},i=${this.verifier.iterations}`;
    this.state = 'continue';
    return this.serverFirst;
  }

  /**
   * client-final-message -> server-final-message, plus the ClientKey the
   * proof reveals (ClientProof XOR ClientSignature), with which pgmux can
   * answer a server's SCRAM challenge without knowing the password.
   */
  clientFinal(message: string): { serverFinal: string; clientKey: Buffer } {
    if (this.state !== 'continue') throw outOfOrder('client-final-message');
    this.state = 'finished';
    const what = 'client-final-message';
    const attrs = parseAttributes(message, what);

    // Without channel binding the client must echo its own GS2 header.
    const binding = expectAttribute(attrs, 0, 'c', what);
    if (binding !== Buffer.from(this.gs2Header, 'utf8').toString('base64')) {
      throw new ScramError(SqlState.PROTOCOL_VIOLATION, 'unexpected SCRAM channel-binding attribute in client-final-message');
    }
    const nonce = expectAttribute(attrs, 1, 'r', what);
    if (nonce !== this.nonce) throw new ScramError(SqlState.PROTOCOL_VIOLATION, 'SCRAM nonce mismatch');
    // Extensions may sit between the nonce and the proof; nothing may follow the proof.
    const last = attrs.length - 1;
    if (last < 2 || attrs.findIndex((a) => a.name === 'p') !== last) throw malformed(what, 'the proof must be the last attribute');
    checkExtensions(attrs, 2, last, what);
    const proof = decodeBase64(attrs[last]!.value);
    if (proof === null || proof.length !== KEY_LENGTH) throw malformed(what, 'malformed proof');

    const withoutProof = message.slice(0, message.lastIndexOf(','));
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
    const clientKey = xor(proof, hmac(this.verifier.storedKey, authMessage));
    // An unknown user's proof is checked like any other (same work, same
    // timing) and then refused with the same error as a wrong password.
    const matches = safeEqual(sha256(clientKey), this.verifier.storedKey);
    if (!matches || this.doomed) {
      throw new ScramError(SqlState.INVALID_PASSWORD, `password authentication failed for user "${this.user}"`);
    }
    const serverSignature = hmac(this.verifier.serverKey, authMessage);
    return { serverFinal: `v=${serverSignature.toString('base64')}`, clientKey };
  }
}

// ---------------------------------------------------------------------------
// Client side: pgmux logging in to a server

export interface ScramClientOptions {
  /** The user's password; when given, it is used even if a clientKey is too. */
  password?: string;
  /** Or a ClientKey recovered from a client's proof (pass-through login). */
  clientKey?: Buffer;
  /** With clientKey: the verifier's ServerKey, to check the server's signature. */
  serverKey?: Buffer;
  /** Client nonce (tests); default 18 random bytes in base64. */
  nonce?: string;
  /** SASL user name; default empty, as libpq sends it (PostgreSQL ignores it). */
  user?: string;
}

export class ScramClientSession {
  private readonly password: string | undefined;
  private readonly givenClientKey: Buffer | undefined;
  private readonly givenServerKey: Buffer | undefined;
  private readonly user: string;
  private readonly nonce: string;
  private state: 'initial' | 'first-sent' | 'final-sent' | 'finished' = 'initial';
  private clientFirstBare = '';
  private expectedServerSignature: Buffer | null = null;

  constructor(opts: ScramClientOptions) {
    if (opts.password === undefined && opts.clientKey === undefined) {
      throw new TypeError('ScramClientSession needs a password or a clientKey');
    }
    if (opts.clientKey !== undefined && opts.clientKey.length !== KEY_LENGTH) throw new TypeError('SCRAM clientKey must be 32 bytes');
    if (opts.serverKey !== undefined && opts.serverKey.length !== KEY_LENGTH) throw new TypeError('SCRAM serverKey must be 32 bytes');
    if (opts.nonce !== undefined && !isPrintable(opts.nonce)) {
      throw new TypeError('SCRAM nonce must be non-empty printable ASCII without commas');
    }
    this.password = opts.password;
    this.givenClientKey = opts.clientKey;
    this.givenServerKey = opts.serverKey;
    this.user = opts.user ?? '';
    this.nonce = opts.nonce ?? randomBytes(NONCE_BYTES).toString('base64');
  }

  /** The client-first-message, e.g. "n,,n=,r=<nonce>". */
  clientFirst(): string {
    if (this.state !== 'initial') throw outOfOrder('client-first-message');
    this.clientFirstBare = `n=${escapeSaslName(this.user)},r=${this.nonce}`;
    this.state = 'first-sent';
    return `n,,${this.clientFirstBare}`;
  }

  /** server-first-message -> client-final-message. */
  serverFirst(message: string): string {
    if (this.state !== 'first-sent') throw outOfOrder('server-first-message');
    this.state = 'finished';
    const what = 'server-first-message';
    const attrs = parseAttributes(message, what);
    if (attrs[0]?.name === 'm') {
      throw new ScramError(SqlState.FEATURE_NOT_SUPPORTED, 'server requires an unsupported SCRAM extension');
    }
    const nonce = expectAttribute(attrs, 0, 'r', what);
    // The server must extend our nonce, not replace or merely echo it.
    if (!isPrintable(nonce) || nonce.length <= this.nonce.length || !nonce.startsWith(this.nonce)) {
      throw new ScramError(SqlState.PROTOCOL_VIOLATION, 'invalid SCRAM response (nonce mismatch)');
    }
    const salt = decodeBase64(expectAttribute(attrs, 1, 's', what));
    if (salt === null || salt.length === 0) throw malformed(what, 'invalid salt');
    const iterations = parseIterations(expectAttribute(attrs, 2, 'i', what));
    if (iterations === null) throw malformed(what, 'invalid iteration count');
    checkExtensions(attrs, 3, attrs.length, what);

    let clientKey: Buffer;
    let serverKey: Buffer | undefined;
    if (this.password !== undefined) {
      const salted = saltedPassword(this.password, salt, iterations);
      clientKey = hmac(salted, 'Client Key');
      serverKey = hmac(salted, 'Server Key');
    } else {
      clientKey = this.givenClientKey!;
      serverKey = this.givenServerKey;
    }
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${message},${withoutProof}`;
    const proof = xor(clientKey, hmac(sha256(clientKey), authMessage));
    this.expectedServerSignature = serverKey === undefined ? null : hmac(serverKey, authMessage);
    this.state = 'final-sent';
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /**
   * Checks the server-final-message. The server's signature is verified
   * whenever we hold the ServerKey (password given, or serverKey given);
   * in bare pass-through mode it can only be checked for form.
   */
  serverFinal(message: string): void {
    if (this.state !== 'final-sent') throw outOfOrder('server-final-message');
    this.state = 'finished';
    const what = 'server-final-message';
    if (message.startsWith('e=')) {
      const reason = message.slice(2).split(',')[0]!;
      throw new ScramError(SqlState.INVALID_PASSWORD, `server refused SCRAM authentication: ${sanitize(reason)}`);
    }
    const attrs = parseAttributes(message, what);
    const signature = decodeBase64(expectAttribute(attrs, 0, 'v', what));
    if (signature === null || signature.length !== KEY_LENGTH) throw malformed(what, 'invalid server signature');
    checkExtensions(attrs, 1, attrs.length, what);
    if (this.expectedServerSignature !== null && !safeEqual(signature, this.expectedServerSignature)) {
      throw new ScramError(SqlState.PROTOCOL_VIOLATION, 'incorrect server signature');
    }
  }
}

// ---------------------------------------------------------------------------
// Message parsing

interface Attribute {
  name: string;
  value: string;
}

/**
 * Splits a message into its attributes: one letter, '=', a value without
 * commas (RFC 5802 section 7). Values cannot contain ',' so splitting on it
 * is exact; an empty part (",,", trailing ',') is malformed. Which
 * attributes must be present is for the caller to check.
 */
function parseAttributes(text: string, what: string): Attribute[] {
  if (text.includes('\0')) throw malformed(what, 'the message contains a NUL character');
  if (text === '') return [];
  return text.split(',').map((part) => {
    if (part === '') throw malformed(what, 'empty attribute');
    if (!/^[A-Za-z]=/.test(part)) throw malformed(what, `expected an attribute, found ${describeChar(part[0])}`);
    return { name: part[0]!, value: part.slice(2) };
  });
}

function expectAttribute(attrs: Attribute[], index: number, name: string, what: string): string {
  const attr = attrs[index];
  if (attr === undefined) throw malformed(what, `expected attribute "${name}" but found end of message`);
  if (attr.name !== name) throw malformed(what, `expected attribute "${name}" but found ${describeChar(attr.name)}`);
  return attr.value;
}

/** Optional extensions (attrs[from..to)) are ignored, as PostgreSQL does, but must be well formed. */
function checkExtensions(attrs: Attribute[], from: number, to: number, what: string): void {
  for (let i = from; i < to; i++) {
    if (attrs[i]!.value === '') throw malformed(what, `empty value for attribute ${describeChar(attrs[i]!.name)}`);
  }
}

/** RFC 5802 "printable": ASCII 0x21-0x7E except ','. */
function isPrintable(s: string): boolean {
  return /^[\x21-\x2b\x2d-\x7e]+$/.test(s);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict base64: padded, canonical (no stray bits), nothing else; null otherwise. */
function decodeBase64(text: string): Buffer | null {
  if (!BASE64.test(text)) return null;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : null;
}

function parseIterations(text: string): number | null {
  if (!/^[0-9]{1,10}$/.test(text)) return null;
  const n = Number(text);
  return n >= 1 && n <= MAX_ITERATIONS ? n : null;
}

/** saslname escaping (RFC 5802 section 5.1). */
function escapeSaslName(name: string): string {
  return name.replace(/[=,]/g, (c) => (c === '=' ? '=3D' : '=2C'));
}

function malformed(what: string, detail: string): ScramError {
  return new ScramError(SqlState.PROTOCOL_VIOLATION, `malformed SCRAM message (${what}): ${detail}`);
}

function outOfOrder(what: string): ScramError {
  return new ScramError(SqlState.PROTOCOL_VIOLATION, `unexpected SCRAM ${what} at this point of the exchange`);
}

/** A character from untrusted input, fit for an error message. */
function describeChar(c: string | undefined): string {
  if (c === undefined) return 'end of message';
  const code = c.charCodeAt(0);
  return code >= 0x20 && code < 0x7f ? `"${c}"` : `0x${code.toString(16).padStart(2, '0')}`;
}

/** Untrusted text, fit for an error message: printable ASCII only, bounded. */
function sanitize(text: string): string {
  return text.slice(0, 64).replace(/[^\x20-\x7e]/g, '?');
}

// ---------------------------------------------------------------------------
// Crypto helpers

function hmac(key: Buffer, data: string | Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** timingSafeEqual that answers false, rather than throwing, on a length mismatch. */
function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
