import { execFile, spawn } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import { FrameReader } from '../../src/protocol/framing.ts';
import { parseErrorFields, startupMessage } from '../../src/protocol/messages.ts';

const exec = promisify(execFile);

/** Runs psql against a URL; returns stdout, throws with stderr on failure. */
export async function psql(url: string, sql: string, extraArgs: string[] = []): Promise<string> {
  const { stdout } = await exec('psql', [url, '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-c', sql, ...extraArgs], {
    maxBuffer: 256 * 1024 * 1024,
  });
  return stdout.trim();
}

/** Runs psql with a script on stdin. */
export function psqlScript(url: string, script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn('psql', [url, '-X', '-At', '-v', 'ON_ERROR_STOP=1'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code: code ?? -1, stdout: stdout.trim(), stderr: stderr.trim() }));
    p.stdin.end(script);
  });
}

export async function pgbench(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; stderr: string; failed: number; processed: number }> {
  const { stdout, stderr } = await exec('pgbench', args, { env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 });
  const failed = Number(/number of failed transactions: (\d+)/.exec(stdout)?.[1] ?? '0');
  const processed = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1] ?? '0');
  return { stdout, stderr, failed, processed };
}

export interface RawMessage {
  type: string;
  body: Buffer;
}

/**
 * A bare protocol client for sending what no driver would (garbage,
 * truncated messages, pipelines abandoned half way). Works against a
 * pgmux with auth_type = trust.
 */
export class RawClient {
  readonly socket: net.Socket;
  readonly messages: RawMessage[] = [];
  closed = false;
  /** The BackendKeyData received at login. */
  backendKey: { processId: number; secretKey: number } | null = null;
  private readonly reader = new FrameReader('\x00' + 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'.split('').join(''));
  private waiters: (() => void)[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.reader.feed(chunk, {
        onMessage: (type, body) => {
          this.messages.push({ type: String.fromCharCode(type), body: body ?? Buffer.alloc(0) });
        },
      });
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  /** Connects and logs in (trust), returning once the first ReadyForQuery arrives. */
  static async login(port: number, user: string, database: string, params: [string, string][] = []): Promise<RawClient> {
    const c = await RawClient.connect(port);
    c.socket.write(startupMessage([['user', user], ['database', database], ...params]));
    await c.until((m) => m.type === 'Z' || m.type === 'E');
    const err = c.messages.find((m) => m.type === 'E');
    if (err) throw new Error(`login failed: ${parseErrorFields(err.body).get('M')}`);
    const key = c.messages.find((m) => m.type === 'K');
    if (key) c.backendKey = { processId: key.body.readInt32BE(0), secretKey: key.body.readInt32BE(4) };
    c.messages.length = 0;
    return c;
  }

  write(b: Buffer | string): void {
    this.socket.write(b);
  }

  /** Waits until some received message matches, or the connection closes. */
  async until(pred: (m: RawMessage) => boolean, timeoutMs = 10000): Promise<RawMessage | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.messages.find(pred);
      if (hit) return hit;
      if (this.closed) return null;
      if (Date.now() > deadline) throw new Error('timed out waiting for a message');
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }

  /** The SQLSTATE of the first ErrorResponse received, if any. */
  errorCode(): string | undefined {
    const e = this.messages.find((m) => m.type === 'E');
    return e ? parseErrorFields(e.body).get('C') : undefined;
  }

  errorMessage(): string | undefined {
    const e = this.messages.find((m) => m.type === 'E');
    return e ? parseErrorFields(e.body).get('M') : undefined;
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * A bare login to a pgmux that trusts its clients: resolves with the socket
 * once ReadyForQuery arrives. Cheap enough to hold thousands of them.
 */
export function trustLogin(port: number, user: string, database: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(startupMessage([['user', user], ['database', database]])));
    let seen = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      seen = Buffer.concat([seen, d]);
      // ReadyForQuery is the last message of a login.
      if (seen.length >= 6 && seen[seen.length - 6] === 0x5a) {
        s.off('data', onData);
        resolve(s);
      } else if (seen[0] === 0x45) reject(new Error(`login refused: ${seen.toString('latin1')}`));
    };
    s.on('data', onData);
    s.on('error', reject);
  });
}

/** Whether something accepts connections on the port. */
export function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}
