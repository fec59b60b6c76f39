import type net from 'node:net';
import { FrameReader } from '../protocol/framing.ts';
import { PgError, SqlState } from '../protocol/errors.ts';
import { backendKeyData, parameterStatus, readyForQuery } from '../protocol/messages.ts';
import { readQuery } from '../protocol/extended.ts';
import { runAdminQuery, type AdminBackend, type Rights } from './console.ts';

/** How an admin console client ends: the session closes its connection. */
export interface AdminEnd {
  terminated(): void;
  /** Sends the error as FATAL and closes. */
  fatal(err: PgError): void;
}

/** Names of the virtual database the admin console answers on. */
export const ADMIN_DATABASES = new Set(['pgmux', 'pgbouncer']);

/** What admin console clients have as their endpoint. */
export const ADMIN_ENDPOINT = '(admin)';

/**
 * A client of the admin console, after login: pgmux answers its simple
 * queries itself, one at a time, in order. The extended protocol is refused
 * (as PgBouncer's console does), which ends the connection.
 */
export class AdminLink {
  private readonly socket: net.Socket;
  private readonly backend: AdminBackend;
  private readonly rights: Rights;
  private readonly reader = new FrameReader('Q', 1 << 20);
  private chain: Promise<void> = Promise.resolve();
  /** Aborted when the client leaves: a command still waiting (WAIT_CLOSE) stops. */
  private readonly gone = new AbortController();
  private readonly end: AdminEnd;
  readonly server = null;

  constructor(socket: net.Socket, backend: AdminBackend, rights: Rights, key: { processId: number; secretKey: number }, end: AdminEnd) {
    this.socket = socket;
    this.backend = backend;
    this.rights = rights;
    this.end = end;
    const params: [string, string][] = [
      ['server_version', '15.0 (pgmux)'],
      ['server_encoding', 'UTF8'],
      ['client_encoding', 'UTF8'],
      ['DateStyle', 'ISO'],
      ['TimeZone', 'UTC'],
      ['integer_datetimes', 'on'],
      ['standard_conforming_strings', 'on'],
      ['application_name', ''],
    ];
    socket.write(Buffer.concat([...params.map(([k, v]) => parameterStatus(k, v)), backendKeyData(key.processId, key.secretKey), readyForQuery('I')]));
  }

  busyServer(): null {
    return null;
  }

  onClientData(chunk: Buffer): void {
    this.reader.feed(chunk, {
      onMessage: (type, body) => {
        if (type === 0x51 /* Query */) {
          const sql = readQuery(Buffer.concat([Buffer.from([0x51, 0, 0, 0, 0]), body!]));
          this.chain = this.chain.then(async () => {
            const reply = await runAdminQuery(sql, this.backend, this.rights, this.gone.signal);
            if (!this.socket.destroyed) this.socket.write(reply);
          });
          return true;
        }
        if (type === 0x58 /* Terminate */) {
          this.end.terminated();
          return false;
        }
        this.end.fatal(new PgError(SqlState.FEATURE_NOT_SUPPORTED, 'the admin console supports only the simple query protocol'));
        return false;
      },
    });
  }

  close(): void {
    this.gone.abort();
  }
}
