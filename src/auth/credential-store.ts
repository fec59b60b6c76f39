import type pg from 'pg';
import { loadPg } from '../lazy.ts';
import { credentialFromSecret, type Credential } from './credential.ts';
import { loadUserlist } from './userlist.ts';
import type { ServerSecret } from './server-login.ts';
import type { NodeAddress } from '../routing/endpoint.ts';

export interface CredentialStoreOptions {
  authFile?: string;
  authUser?: string;
  authQuery: string;
  cacheTtlMs: number;
  negativeCacheTtlMs: number;
  connectTimeoutMs: number;
  /** Passwords configured per user for logging in to servers. */
  serverPasswords: ReadonlyMap<string, string>;
}

/**
 * Where auth_query runs for one login, and as whom: the server and
 * database (the client's, or auth_dbname's), and the auth_user and
 * auth_query of the client's endpoint when it has its own.
 */
export interface AuthQueryPlace {
  node: NodeAddress;
  database: string;
  /** This login's auth_user, instead of the store's. */
  authUser?: string;
  /** This login's auth_query, instead of the store's. */
  authQuery?: string;
}

interface CacheEntry {
  credential: Credential | null;
  expires: number;
}

/**
 * Where users' secrets come from: the auth_file (PgBouncer's userlist.txt),
 * then auth_query run as auth_user on the endpoint's primary, cached with a
 * TTL (and a shorter one for users that do not exist). Also remembers, per
 * user, the SCRAM ClientKey recovered from that user's last successful
 * login, which is what lets pgmux log in to servers without a password.
 */
export class CredentialStore {
  private opts: CredentialStoreOptions;
  private fileEntries = new Map<string, string>();
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<Credential | null>>();
  private readonly clientKeys = new Map<string, { clientKey: Buffer; serverKey: Buffer }>();

  constructor(opts: CredentialStoreOptions) {
    this.opts = opts;
  }

  /** New settings (reload): reads the new auth_file first, forgets cached secrets. */
  async reconfigure(opts: CredentialStoreOptions): Promise<void> {
    const entries = opts.authFile === undefined ? new Map<string, string>() : await loadUserlist(opts.authFile);
    this.opts = opts;
    this.fileEntries = entries;
    this.cache.clear();
  }

  /**
   * Reads the auth_file (again). A missing file or bad lines throw a
   * ConfigError naming the file and every bad line.
   */
  async load(): Promise<void> {
    if (this.opts.authFile === undefined) return;
    this.fileEntries = await loadUserlist(this.opts.authFile);
  }

  /** The stored secret of `user`, or null when the user is unknown. */
  async lookup(user: string, place: AuthQueryPlace): Promise<Credential | null> {
    const secret = this.fileEntries.get(user);
    if (secret !== undefined) return credentialFromSecret(secret);
    const authUser = place.authUser ?? this.opts.authUser;
    if (authUser === undefined) return null;
    const authQuery = place.authQuery ?? this.opts.authQuery;
    const { node } = place;
    // Endpoints with their own auth_user or auth_query have answers of their own.
    const key = `${node.host}:${node.port}\0${place.database}\0${authUser}\0${authQuery}\0${user}`;
    const hit = this.cache.get(key);
    if (hit !== undefined && hit.expires > Date.now()) return hit.credential;
    // Concurrent logins of one user share one query.
    let p = this.inflight.get(key);
    if (p === undefined) {
      p = this.runAuthQuery(user, { ...place, authUser, authQuery }).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    const credential = await p;
    const ttl = credential === null ? this.opts.negativeCacheTtlMs : this.opts.cacheTtlMs;
    this.cache.set(key, { credential, expires: Date.now() + ttl });
    return credential;
  }

  /** Forgets a cached secret after a failed login, so a changed password is seen. */
  invalidate(user: string): void {
    for (const k of this.cache.keys()) if (k.endsWith(`\0${user}`)) this.cache.delete(k);
  }

  rememberClientKey(user: string, clientKey: Buffer, serverKey: Buffer): void {
    this.clientKeys.set(user, { clientKey, serverKey });
  }

  /** What pgmux can use to log in to a server as `user`. */
  serverSecret(user: string, credential: Credential | null): ServerSecret {
    const s: ServerSecret = {};
    const configured = this.opts.serverPasswords.get(user);
    if (configured !== undefined) s.password = configured;
    else if (credential?.kind === 'password') s.password = credential.password;
    if (credential?.kind === 'md5') s.md5 = credential.secret;
    const keys = this.clientKeys.get(user);
    if (keys !== undefined) {
      s.clientKey = keys.clientKey;
      s.serverKey = keys.serverKey;
    }
    return s;
  }

  private async runAuthQuery(user: string, place: Required<AuthQueryPlace>): Promise<Credential | null> {
    const { node: primary, database, authUser } = place;
    const fileSecret = this.fileEntries.get(authUser);
    const password = this.opts.serverPasswords.get(authUser) ?? (fileSecret !== undefined && credentialFromSecret(fileSecret).kind === 'password' ? fileSecret : undefined);
    const { Client } = await loadPg();
    const client = new Client({
      host: primary.host,
      port: primary.port,
      user: authUser,
      password,
      database,
      application_name: 'pgmux auth_query',
      connectionTimeoutMillis: this.opts.connectTimeoutMs,
    });
    await client.connect();
    try {
      const res = await client.query({ text: place.authQuery, values: [user], rowMode: 'array' });
      const row = res.rows[0] as unknown[] | undefined;
      if (row === undefined || row[1] === null || row[1] === undefined) return null;
      return credentialFromSecret(String(row[1]));
    } finally {
      await client.end().catch(() => {});
    }
  }
}
