import net from 'node:net';
import tls from 'node:tls';
import { PgError, SqlState } from '../protocol/errors.ts';

export type ServerSslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

export interface ServerTlsOptions {
  sslmode: ServerSslMode;
  /** CA certificates (PEM) for verify-ca and verify-full. */
  ca?: Buffer;
  host: string;
  port: number;
}

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

/**
 * Asks a PostgreSQL server for TLS (SSLRequest) on a freshly connected
 * socket and returns the socket to speak the protocol on, as libpq's
 * sslmode would: `disable` and `allow` stay in plaintext (allow does not
 * retry), `prefer` takes TLS when offered, `require` insists without
 * checking the certificate, `verify-ca` checks it against `ca`, and
 * `verify-full` also checks the host name.
 */
export function negotiateServerTls(socket: net.Socket, opts: ServerTlsOptions): Promise<net.Socket> {
  if (opts.sslmode === 'disable' || opts.sslmode === 'allow') return Promise.resolve(socket);
  const where = `${opts.host}:${opts.port}`;
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(new PgError(SqlState.CONNECTION_FAILURE, `could not connect to server ${where}: ${err.message}`));
    socket.once('error', onError);
    socket.once('data', (chunk: Buffer) => {
      socket.off('error', onError);
      if (chunk.length !== 1) {
        // Bytes after the answer could only have been injected before the
        // handshake; PostgreSQL's clients refuse them too.
        socket.destroy();
        reject(new PgError(SqlState.PROTOCOL_VIOLATION, `server ${where} sent unexpected data after its answer to SSLRequest`));
        return;
      }
      if (chunk[0] === 0x4e /* N */) {
        if (opts.sslmode === 'prefer') {
          resolve(socket);
          return;
        }
        socket.destroy();
        reject(new PgError(SqlState.SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION, `server ${where} does not support SSL, but SSL was required (server_tls_sslmode = ${opts.sslmode})`));
        return;
      }
      if (chunk[0] !== 0x53 /* S */) {
        socket.destroy();
        reject(new PgError(SqlState.PROTOCOL_VIOLATION, `server ${where} answered SSLRequest with ${chunk[0]}`));
        return;
      }
      const verify = opts.sslmode === 'verify-ca' || opts.sslmode === 'verify-full';
      const secure = tls.connect({
        socket,
        servername: net.isIP(opts.host) === 0 ? opts.host : undefined,
        ca: opts.ca,
        minVersion: 'TLSv1.2',
        rejectUnauthorized: verify,
        // verify-ca trusts any name on a certificate the CA signed.
        checkServerIdentity: opts.sslmode === 'verify-full' ? tls.checkServerIdentity : () => undefined,
      });
      secure.once('secureConnect', () => {
        secure.off('error', onTlsError);
        resolve(secure);
      });
      const onTlsError = (err: Error) => {
        secure.destroy();
        reject(new PgError(SqlState.SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION, `TLS with server ${where} failed: ${err.message}`));
      };
      secure.once('error', onTlsError);
    });
    socket.write(SSL_REQUEST);
  });
}
