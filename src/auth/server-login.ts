import net from 'node:net';
import { FrameReader, type FrameVisitor } from '../protocol/framing.ts';
import { PgError, SqlState } from '../protocol/errors.ts';
import {
  AUTH_CLEARTEXT_PASSWORD,
  AUTH_MD5_PASSWORD,
  AUTH_OK,
  AUTH_SASL,
  AUTH_SASL_CONTINUE,
  AUTH_SASL_FINAL,
  parseAuthenticationRequest,
  parseBackendKeyData,
  parseErrorFields,
  parseParameterStatus,
  parseSaslMechanisms,
  passwordMessage,
  saslInitialResponse,
  saslResponse,
  startupMessage,
} from '../protocol/messages.ts';
import { ScramClientSession, ScramError } from '../protocol/scram.ts';
import { md5Response, md5Secret } from '../protocol/md5.ts';
import { negotiateServerTls, type ServerSslMode } from '../tls/server-tls.ts';

/**
 * What pgmux may use to log in to a server as a user. Any subset: the
 * server's chosen method decides which one is needed.
 */
export interface ServerSecret {
  /** Plaintext password (configured, or from a plaintext auth_file entry). */
  password?: string;
  /** "md5..." secret, enough for md5 servers. */
  md5?: string;
  /** SCRAM ClientKey recovered from a client's proof: SCRAM without the password. */
  clientKey?: Buffer;
  /** SCRAM ServerKey from the verifier, to check the server's signature. */
  serverKey?: Buffer;
}

export interface LoginOptions {
  host: string;
  port: number;
  user: string;
  database: string;
  /** Extra startup parameters (application_name, GUCs…). */
  params?: Iterable<[string, string]>;
  secret: ServerSecret;
  connectTimeoutMs: number;
  /** TLS to the server (server_tls_sslmode); none: plaintext. */
  tls?: { sslmode: ServerSslMode; ca?: Buffer };
}

export type ServerReader = (chunk: Buffer, borrowed: boolean) => void;

/**
 * One read of a plaintext server connection takes at most this much. Reads
 * land in a buffer of the connection's own instead of a new allocation
 * each, and skip the stream machinery ('data' events): session pooling
 * forwards them to the client straight from there.
 */
const READ_BUFFER_SIZE = 32 * 1024;

export interface LoggedInServer {
  socket: net.Socket;
  processId: number;
  secretKey: number;
  /** ParameterStatus values the server reported at login. */
  parameters: Map<string, string>;
  /** Bytes received after the login's ReadyForQuery (normally none). */
  rest: Buffer;
  /**
   * Where the socket's reads go from now on, instead of 'data' events. A
   * chunk that is `borrowed` lies in the connection's read buffer, which
   * the next read overwrites: the reader must be done with it (or have
   * copied it, or paused the socket) when it returns. Reads that arrived
   * before this call are delivered first.
   */
  setReader(reader: ServerReader): void;
}

/**
 * Opens a connection to a PostgreSQL server and logs in, answering whichever
 * authentication method the server asks for. An ErrorResponse from the
 * server is rethrown as a PgError carrying the server's own SQLSTATE and
 * message, so a client sees what PostgreSQL said.
 */
export function loginToServer(opts: LoginOptions): Promise<LoggedInServer> {
  return new Promise((resolve, reject) => {
    const sslmode = opts.tls?.sslmode ?? 'disable';
    // Where reads go: the login's own framing until ReadyForQuery, then a
    // queue until the connection's owner takes over with setReader.
    let deliver: ServerReader = (chunk, borrowed) => onData(borrowed ? Buffer.from(chunk) : chunk);
    const early: Buffer[] = [];
    // disable and allow never start TLS, so the socket stays a plain one
    // that can read into a buffer of its own.
    const plainReads = sslmode === 'disable' || sslmode === 'allow';
    const readBuffer = Buffer.allocUnsafe(plainReads ? READ_BUFFER_SIZE : 0);
    const raw = plainReads
        ? net.connect({
            host: opts.host,
            port: opts.port,
            noDelay: true,
            onread: { buffer: readBuffer, callback: (n) => (deliver(readBuffer.subarray(0, n), true), true) },
          })
        : net.connect({ host: opts.host, port: opts.port, noDelay: true });
    let socket: net.Socket = raw;
    const setReader = (reader: ServerReader) => {
      deliver = reader;
      for (const chunk of early.splice(0)) reader(chunk, false);
    };
    const reader = new FrameReader('RSKEZ');
    const parameters = new Map<string, string>();
    let processId = 0;
    let secretKey = 0;
    let scram: ScramClientSession | null = null;
    let settled = false;

    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(
      () => fail(new PgError(SqlState.CONNECTION_FAILURE, `server login to ${opts.host}:${opts.port} timed out after ${opts.connectTimeoutMs} ms`)),
      opts.connectTimeoutMs,
    );

    const visitor: FrameVisitor = {
      onMessage(type, body, end) {
        switch (type) {
          case 0x52 /* R */:
            onAuthRequest(body!);
            return true;
          case 0x53 /* S */: {
            const [k, v] = parseParameterStatus(body!);
            parameters.set(k, v);
            return true;
          }
          case 0x4b /* K */:
            ({ processId, secretKey } = parseBackendKeyData(body!));
            return true;
          case 0x45 /* E */: {
            const f = parseErrorFields(body!);
            fail(new PgError(f.get('C') ?? SqlState.CONNECTION_FAILURE, f.get('M') ?? 'server refused login', { detail: f.get('D'), hint: f.get('H') }));
            return false;
          }
          case 0x5a /* Z */:
            settled = true;
            clearTimeout(timer);
            socket.removeAllListeners('error');
            socket.removeAllListeners('close');
            deliver = (chunk, borrowed) => early.push(borrowed ? Buffer.from(chunk) : chunk);
            resolve({ socket, processId, secretKey, parameters, rest: lastChunk.subarray(end), setReader });
            return false;
          default:
            // NoticeResponse and NegotiateProtocolVersion during login: nothing to do.
            return true;
        }
      },
    };
    let lastChunk: Buffer = Buffer.alloc(0);

    function onAuthRequest(body: Buffer): void {
      const { code, data } = parseAuthenticationRequest(body);
      const s = opts.secret;
      switch (code) {
        case AUTH_OK:
          return;
        case AUTH_CLEARTEXT_PASSWORD:
          if (s.password === undefined) throw noSecret('password');
          socket.write(passwordMessage(s.password));
          return;
        case AUTH_MD5_PASSWORD: {
          const secret = s.md5 ?? (s.password !== undefined ? md5Secret(opts.user, s.password) : undefined);
          if (secret === undefined) throw noSecret('md5');
          socket.write(passwordMessage(md5Response(secret, data.subarray(0, 4))));
          return;
        }
        case AUTH_SASL: {
          if (!parseSaslMechanisms(data).includes('SCRAM-SHA-256')) throw noSecret('SASL');
          if (s.password === undefined && s.clientKey === undefined) throw noSecret('SCRAM-SHA-256');
          // A password, when there is one, is the whole truth; the remembered
          // keys may come from a verifier with another salt.
          scram =
            s.password !== undefined
              ? new ScramClientSession({ password: s.password })
              : new ScramClientSession({ clientKey: s.clientKey, serverKey: s.serverKey });
          socket.write(saslInitialResponse('SCRAM-SHA-256', scram.clientFirst()));
          return;
        }
        case AUTH_SASL_CONTINUE:
          if (scram === null) throw new PgError(SqlState.PROTOCOL_VIOLATION, 'server sent SASLContinue before SASL');
          socket.write(saslResponse(scram.serverFirst(data.toString('utf8'))));
          return;
        case AUTH_SASL_FINAL:
          if (scram === null) throw new PgError(SqlState.PROTOCOL_VIOLATION, 'server sent SASLFinal before SASL');
          scram.serverFinal(data.toString('utf8'));
          return;
        default:
          throw new PgError(SqlState.FEATURE_NOT_SUPPORTED, `server asked for authentication method ${code}, which pgmux does not support`);
      }
    }

    function noSecret(method: string): PgError {
      return new PgError(
        SqlState.INVALID_PASSWORD,
        `cannot log in to server as "${opts.user}" with ${method} authentication: no usable secret for this user`,
        { hint: 'Configure a password for the user, or let the client authenticate with SCRAM first.' },
      );
    }

    raw.once('connect', () => {
      const params: [string, string][] = [
        ['user', opts.user],
        ['database', opts.database],
      ];
      for (const p of opts.params ?? []) params.push(p);
      const tlsOpts = opts.tls ?? { sslmode: 'disable' as const };
      if (tlsOpts.sslmode !== 'disable') raw.off('error', onSocketError).off('close', onSocketClose);
      negotiateServerTls(raw, { ...tlsOpts, host: opts.host, port: opts.port }).then(
        (s) => {
          if (settled) {
            s.destroy();
            return;
          }
          socket = s;
          if (s !== raw) s.on('error', onSocketError).on('close', onSocketClose);
          // A TLS socket (or one that may become one) reads by 'data' events.
          if (!plainReads) s.on('data', (chunk: Buffer) => deliver(chunk, false));
          s.write(startupMessage(params));
        },
        (err: Error) => fail(err),
      );
    });
    const onData = (chunk: Buffer) => {
      lastChunk = chunk;
      try {
        reader.feed(chunk, visitor);
      } catch (err) {
        // A server whose SCRAM messages do not check out is not trusted with
        // the session: report it as a login failure with the server's address.
        if (err instanceof ScramError) fail(new PgError(SqlState.CONNECTION_FAILURE, `SCRAM login to server ${opts.host}:${opts.port} failed: ${err.message}`));
        else fail(err instanceof Error ? err : new Error(String(err)));
      }
    };
    const onSocketError = (err: Error) => fail(new PgError(SqlState.CONNECTION_FAILURE, `could not connect to server ${opts.host}:${opts.port}: ${err.message}`));
    const onSocketClose = () => fail(new PgError(SqlState.CONNECTION_FAILURE, `server ${opts.host}:${opts.port} closed the connection during login`));
    raw.on('error', onSocketError).on('close', onSocketClose);
  });
}
