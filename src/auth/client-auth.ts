import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { PgError, SqlState } from '../protocol/errors.ts';
import {
  AUTH_CLEARTEXT_PASSWORD,
  AUTH_MD5_PASSWORD,
  AUTH_SASL_CONTINUE,
  AUTH_SASL_FINAL,
  authenticationRequest,
  authenticationSasl,
  parsePasswordMessage,
  parseSaslInitialResponse,
} from '../protocol/messages.ts';
import { ScramServerSession, scramVerifierFromPassword, type ScramVerifier } from '../protocol/scram.ts';
import { md5Response, md5Secret } from '../protocol/md5.ts';
import type { Credential } from './credential.ts';

export type AuthType = 'scram-sha-256' | 'md5' | 'password' | 'trust';

export interface AuthStep {
  /** Message to send to the client, if any. */
  reply: Buffer | null;
  /** True once the client has proven who it is. */
  done: boolean;
}

/** What a successful SCRAM login leaves behind for logging in to servers. */
export interface ScramKeys {
  clientKey: Buffer;
  serverKey: Buffer;
}

/**
 * One client's authentication exchange, message by message. Pure: it
 * writes nothing itself; the session sends `reply` and feeds back the
 * client's PasswordMessage-family bodies.
 *
 * An unknown user runs the same exchange as a known one and fails at the
 * same step with the same 28P01, so the answer does not tell them apart.
 */
export class ClientAuthExchange {
  readonly method: AuthType;
  private readonly user: string;
  private readonly credential: Credential | null;
  private scram: ScramServerSession | null = null;
  private scramStep = 0;
  private readonly md5Salt = randomBytes(4);
  private finished = false;
  keys: ScramKeys | null = null;
  private verifier: ScramVerifier | null = null;

  constructor(configured: AuthType, user: string, credential: Credential | null, mockSecret: Buffer) {
    this.user = user;
    this.credential = credential;
    // As PostgreSQL: md5 configured but a SCRAM verifier stored means SCRAM.
    this.method = configured === 'md5' && credential?.kind === 'scram' ? 'scram-sha-256' : configured;
    if (this.method === 'scram-sha-256') {
      this.verifier = scramVerifierFor(user, credential);
      this.scram = new ScramServerSession({ verifier: this.verifier, user, mockSecret });
    }
  }

  /** The first message to the client; done=true for trust. */
  start(): AuthStep {
    switch (this.method) {
      case 'trust':
        this.finished = true;
        return { reply: null, done: true };
      case 'password':
        return { reply: authenticationRequest(AUTH_CLEARTEXT_PASSWORD), done: false };
      case 'md5':
        return { reply: authenticationRequest(AUTH_MD5_PASSWORD, this.md5Salt), done: false };
      case 'scram-sha-256':
        return { reply: authenticationSasl(['SCRAM-SHA-256']), done: false };
    }
  }

  /** A PasswordMessage, SASLInitialResponse or SASLResponse body from the client. */
  step(body: Buffer): AuthStep {
    if (this.finished) throw new PgError(SqlState.PROTOCOL_VIOLATION, 'unexpected password message after authentication');
    switch (this.method) {
      case 'password':
        this.finished = true;
        if (!this.checkPassword(parsePasswordMessage(body))) throw this.failed();
        return { reply: null, done: true };
      case 'md5': {
        this.finished = true;
        const answer = parsePasswordMessage(body);
        const secret = this.md5SecretOrNull();
        if (secret === null || !equal(answer, md5Response(secret, this.md5Salt))) throw this.failed();
        return { reply: null, done: true };
      }
      case 'scram-sha-256':
        return this.scramStepWith(body);
      default:
        throw new PgError(SqlState.PROTOCOL_VIOLATION, 'unexpected password message');
    }
  }

  private scramStepWith(body: Buffer): AuthStep {
    const scram = this.scram!;
    try {
      if (this.scramStep === 0) {
        const init = parseSaslInitialResponse(body);
        if (init.mechanism !== 'SCRAM-SHA-256') {
          throw new PgError(SqlState.PROTOCOL_VIOLATION, 'client selected an invalid SASL authentication mechanism');
        }
        if (init.data === null) throw new PgError(SqlState.PROTOCOL_VIOLATION, 'malformed SCRAM message (empty message)');
        this.scramStep = 1;
        const first = scram.clientFirst(init.data.toString('utf8'));
        return { reply: authenticationRequest(AUTH_SASL_CONTINUE, Buffer.from(first, 'utf8')), done: false };
      }
      this.finished = true;
      const { serverFinal, clientKey } = scram.clientFinal(body.toString('utf8'));
      if (this.credential === null) throw this.failed();
      this.keys = { clientKey, serverKey: this.verifier!.serverKey };
      return { reply: authenticationRequest(AUTH_SASL_FINAL, Buffer.from(serverFinal, 'utf8')), done: true };
    } catch (err) {
      this.finished = true;
      if (err instanceof PgError) throw err;
      const sqlstate = (err as { sqlstate?: string }).sqlstate;
      if (sqlstate === SqlState.INVALID_PASSWORD) throw this.failed();
      throw new PgError(sqlstate ?? SqlState.PROTOCOL_VIOLATION, (err as Error).message);
    }
  }

  private checkPassword(given: string): boolean {
    const c = this.credential;
    if (c === null) return false;
    if (c.kind === 'password') return equal(given, c.password);
    if (c.kind === 'md5') return equal(md5Secret(this.user, given), c.secret);
    const v = scramVerifierFromPassword(given, c.verifier.salt, c.verifier.iterations);
    return timingSafeEqual(v.storedKey, c.verifier.storedKey);
  }

  private md5SecretOrNull(): string | null {
    const c = this.credential;
    if (c?.kind === 'md5') return c.secret;
    if (c?.kind === 'password') return md5Secret(this.user, c.password);
    return null;
  }

  private failed(): PgError {
    return new PgError(SqlState.INVALID_PASSWORD, `password authentication failed for user "${this.user}"`);
  }
}

/** Plaintext secrets are turned into a verifier once per user (salt kept) so SCRAM works with them. */
const derived = new Map<string, { password: string; verifier: ScramVerifier }>();

function scramVerifierFor(user: string, c: Credential | null): ScramVerifier | null {
  if (c === null) return null;
  if (c.kind === 'scram') return c.verifier;
  if (c.kind === 'md5') return null; // an md5 hash cannot answer SCRAM, as in PostgreSQL
  const hit = derived.get(user);
  if (hit !== undefined && hit.password === c.password) return hit.verifier;
  const verifier = scramVerifierFromPassword(c.password);
  derived.set(user, { password: c.password, verifier });
  return verifier;
}

/** Constant-time string comparison (hashes first so lengths do not leak). */
function equal(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}
