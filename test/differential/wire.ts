/**
 * One client socket of a differential run: logs in with real SCRAM-SHA-256
 * (or sends whatever startup the script asks for), writes a step's bytes in
 * the chunks the script asks for, and records every backend message,
 * normalised where the two sides must differ (see normalise()).
 */
import net from 'node:net';
import { parseErrorFields, saslInitialResponse, saslResponse } from '../../src/protocol/messages.ts';
import { ScramClientSession } from '../../src/protocol/scram.ts';
import { AnswerTracker } from './answers.ts';
import { CLOSED, type BackendMsg, type Msg } from './protocol.ts';
import type { Startup } from './script.ts';

/** Pause between the chunks of a split step, so each arrives in a TCP read of its own. */
const CHUNK_PAUSE_MS = 3;

/**
 * Drops the ErrorResponse/NoticeResponse fields that name PostgreSQL's
 * source (F file, L line, R routine): pgmux's own errors have none, and
 * where it forwards the server's they would still be noise.
 */
function withoutSourceFields(body: Buffer): Buffer {
  const keep: Buffer[] = [];
  for (const [k, v] of parseErrorFields(body)) {
    if (k === 'F' || k === 'L' || k === 'R') continue;
    keep.push(Buffer.from(k, 'latin1'), Buffer.from(v, 'utf8'), Buffer.from([0]));
  }
  keep.push(Buffer.from([0]));
  return Buffer.concat(keep);
}

/**
 * What must differ between PostgreSQL and pgmux and nothing else: the
 * cancel key (pgmux hands out its own), the pid in a NotificationResponse,
 * an error's source fields. The login's ParameterStatus set and SASL data
 * are normalised in login().
 */
export function normalise(type: string, body: Buffer): BackendMsg {
  if (type === 'K') return { type, body: Buffer.alloc(0) };
  if (type === 'A') {
    const b = Buffer.from(body);
    b.writeInt32BE(0, 0);
    return { type, body: b };
  }
  if (type === 'E' || type === 'N') return { type, body: withoutSourceFields(body) };
  return { type, body };
}

export class WireClient {
  readonly socket: net.Socket;
  readonly msgs: BackendMsg[] = [];
  closed = false;
  /** Set when the script itself destroyed the socket: no close is recorded then. */
  destroyedByUs = false;
  /** ReadyForQuery received, and the status of the last one. */
  zCount = 0;
  status: string | null = null;
  /** What PostgreSQL still owes this client. */
  readonly answers = new AnswerTracker();
  /** Extended-protocol messages sent since the last Sync. */
  unsynced = false;
  lastArrival = Date.now();
  private buf: Buffer = Buffer.alloc(0);
  private waiters: (() => void)[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => {
      if (!this.destroyedByUs) this.msgs.push({ type: CLOSED, body: Buffer.alloc(0) });
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static connect(port: number): Promise<WireClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.off('error', reject);
        resolve(new WireClient(s));
      });
      s.once('error', reject);
    });
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let pos = 0;
    while (this.buf.length - pos >= 5) {
      const len = this.buf.readInt32BE(pos + 1);
      if (this.buf.length - pos < 1 + len) break;
      const type = String.fromCharCode(this.buf[pos]);
      const body = Buffer.from(this.buf.subarray(pos + 5, pos + 1 + len));
      pos += 1 + len;
      if (type === 'Z') {
        this.zCount++;
        this.status = String.fromCharCode(body[0]);
      }
      this.answers.received(type);
      this.msgs.push(normalise(type, body));
    }
    this.buf = this.buf.subarray(pos);
    this.lastArrival = Date.now();
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Waits until `done()` holds or the connection closes; false on timeout. */
  async until(done: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (done() || this.closed) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 50));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Waits until nothing has arrived for `ms` (counted from now at the earliest). */
  async quiet(ms: number): Promise<void> {
    const start = Date.now();
    for (;;) {
      const since = Date.now() - Math.max(start, this.lastArrival);
      if (since >= ms || this.closed) return;
      await new Promise((r) => setTimeout(r, ms - since));
    }
  }

  /** Writes `bytes`, a new write at each offset in `splits`, pausing between them. */
  async write(bytes: Buffer, splits: number[]): Promise<void> {
    let from = 0;
    for (const at of [...splits.filter((s) => s > 0 && s < bytes.length).sort((a, b) => a - b), bytes.length]) {
      if (at <= from) continue;
      if (this.closed) return;
      this.socket.write(bytes.subarray(from, at));
      from = at;
      if (at < bytes.length) await new Promise((r) => setTimeout(r, CHUNK_PAUSE_MS));
    }
  }

  /** Bookkeeping of what answers a message sent will be owed. */
  sent(m: Msg): void {
    this.answers.sent(m);
    if (m.t === 'Sync') this.unsynced = false;
    else if (['Parse', 'Bind', 'Describe', 'Execute', 'Close', 'Flush'].includes(m.t)) this.unsynced = true;
  }

  /**
   * Sends a startup packet and answers the authentication requests with
   * SCRAM-SHA-256 until ReadyForQuery, an ErrorResponse or a close. The
   * login's messages are recorded with SASL data reduced to its request
   * code (nonces and signatures differ by nature) and the ParameterStatus
   * set sorted (its order is no promise of PostgreSQL's).
   */
  async login(opts: { user: string; database: string; password: string; appName: string; startup?: Startup; timeoutMs: number }): Promise<void> {
    const st = opts.startup === 'none' ? null : (opts.startup ?? {});
    if (st === null) return;
    const params: [string, string][] = [['user', opts.user], ['database', opts.database], ['application_name', opts.appName], ...(st.params ?? [])];
    const parts: Buffer[] = [];
    for (const [k, v] of params) parts.push(Buffer.from(k), Buffer.from([0]), Buffer.from(v), Buffer.from([0]));
    parts.push(Buffer.from([0]));
    const body = Buffer.concat(parts);
    const head = Buffer.allocUnsafe(8);
    head.writeInt32BE(body.length + 8, 0);
    head.writeInt32BE((((st.major ?? 3) << 16) | (st.minor ?? 0)) >>> 0, 4);
    this.socket.write(Buffer.concat([head, body]));

    const scram = new ScramClientSession({ password: opts.password });
    const from = this.msgs.length;
    let seen = from;
    const deadline = Date.now() + opts.timeoutMs;
    for (;;) {
      await this.until(() => this.msgs.length > seen, deadline - Date.now());
      if (this.msgs.length === seen) break; // closed or timed out
      const m = this.msgs[seen++];
      if (m.type === 'R') {
        const code = m.body.readInt32BE(0);
        const data = m.body.toString('utf8', 4);
        if (code === 10) this.socket.write(saslInitialResponse('SCRAM-SHA-256', scram.clientFirst()));
        else if (code === 11) this.socket.write(saslResponse(scram.serverFirst(data)));
        else if (code === 12) scram.serverFinal(data);
        if (code >= 10) this.msgs[seen - 1] = { type: 'R', body: m.body.subarray(0, 4) };
      }
      if (m.type === 'Z' || m.type === 'E' || m.type === CLOSED) break;
    }
    // The startup ParameterStatus set, sorted; everything else in order.
    const got = this.msgs.slice(from, seen);
    const ps = got.filter((m) => m.type === 'S').sort((a, b) => Buffer.compare(a.body, b.body));
    let i = 0;
    const sorted = got.map((m) => (m.type === 'S' ? ps[i++] : m));
    this.msgs.splice(from, got.length, ...sorted);
  }

  destroy(): void {
    this.destroyedByUs = true;
    this.socket.destroy();
  }
}
