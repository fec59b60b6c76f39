import { readFile } from 'node:fs/promises';
import type net from 'node:net';
import tls from 'node:tls';
import { PgError, SqlState } from '../protocol/errors.ts';

export type ClientSslMode = 'disable' | 'allow' | 'prefer' | 'require';

/**
 * TLS with clients: the answer to SSLRequest and the server side of the
 * handshake, done in-process on the accepted socket. `allow` and `prefer`
 * take TLS when a client asks for it; `require` also refuses a client that
 * starts in plaintext.
 */
export class ClientTls {
  readonly mode: ClientSslMode;
  private readonly context: tls.SecureContext | null;

  private constructor(mode: ClientSslMode, context: tls.SecureContext | null) {
    this.mode = mode;
    this.context = context;
  }

  static async load(mode: ClientSslMode, certFile?: string, keyFile?: string): Promise<ClientTls> {
    if (mode === 'disable') return new ClientTls(mode, null);
    if (certFile === undefined || keyFile === undefined) {
      throw new Error(`client_tls_sslmode = ${mode} needs client_tls_cert_file and client_tls_key_file`);
    }
    const read = async (file: string, what: string) => {
      try {
        return await readFile(file);
      } catch (err) {
        throw new Error(`cannot read ${what} ${file}: ${(err as Error).message}`);
      }
    };
    const [cert, key] = await Promise.all([read(certFile, 'client_tls_cert_file'), read(keyFile, 'client_tls_key_file')]);
    return new ClientTls(mode, tls.createSecureContext({ cert, key, minVersion: 'TLSv1.2' }));
  }

  /** Whether an SSLRequest gets 'S'. */
  get offered(): boolean {
    return this.context !== null;
  }

  get required(): boolean {
    return this.mode === 'require';
  }

  /** The server side of the handshake; resolves with the TLS socket and the SNI name the client sent. */
  upgrade(socket: net.Socket, timeoutMs: number): Promise<{ socket: tls.TLSSocket; serverName: string | null }> {
    return new Promise((resolve, reject) => {
      const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: this.context!, requestCert: false });
      const timer = setTimeout(() => {
        secure.destroy();
        reject(new PgError(SqlState.PROTOCOL_VIOLATION, `TLS handshake did not finish within ${timeoutMs} ms`));
      }, timeoutMs);
      secure.once('secure', () => {
        clearTimeout(timer);
        secure.off('error', onError);
        const name = (secure as tls.TLSSocket & { servername?: string | false }).servername;
        resolve({ socket: secure, serverName: typeof name === 'string' && name !== '' ? name.toLowerCase() : null });
      });
      const onError = (err: Error) => {
        clearTimeout(timer);
        secure.destroy();
        reject(new PgError(SqlState.PROTOCOL_VIOLATION, `TLS handshake failed: ${err.message}`));
      };
      secure.once('error', onError);
    });
  }
}

/** The endpoint a TLS server name names: its first label, under one of the domains. */
export function endpointFromServerName(serverName: string | null, domains: readonly string[]): string | null {
  if (serverName === null) return null;
  for (const d of domains) {
    const suffix = `.${d.toLowerCase().replace(/^\./, '')}`;
    if (serverName.endsWith(suffix)) {
      const label = serverName.slice(0, -suffix.length);
      if (label !== '' && !label.includes('.')) return label;
    }
  }
  return null;
}
