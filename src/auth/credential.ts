import { parseScramVerifier, type ScramVerifier } from '../protocol/scram.ts';

/** A user's stored secret, by kind. */
export type Credential =
  | { kind: 'scram'; verifier: ScramVerifier }
  | { kind: 'md5'; secret: string } // "md5" + 32 lowercase hex digits
  | { kind: 'password'; password: string }; // plaintext

const MD5_SECRET = /^md5[0-9a-f]{32}$/;

/**
 * Classifies a stored password the way PostgreSQL (get_password_type) and
 * PgBouncer do: a parseable SCRAM verifier, an exact md5 hash, and
 * anything else, including a malformed "SCRAM-SHA-256$..." string, is a
 * plaintext password.
 */
export function credentialFromSecret(secret: string): Credential {
  if (secret.startsWith('SCRAM-SHA-256$')) {
    const verifier = parseScramVerifier(secret);
    if (verifier !== null) return { kind: 'scram', verifier };
  }
  if (MD5_SECRET.test(secret)) return { kind: 'md5', secret };
  return { kind: 'password', password: secret };
}
