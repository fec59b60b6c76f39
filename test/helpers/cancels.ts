/**
 * What the cancel tests share: a CancelRequest sent as a client sends one,
 * a client busy in pg_sleep, and log lines to look at.
 */
import net from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { cancelRequest, query } from '../../src/protocol/messages.ts';
import { keyBytes, type CancelKey } from '../../src/session/cancel-key.ts';
import { RawClient } from './clients.ts';
import { sleep } from './pgmux.ts';

/** Sends a CancelRequest to a pgmux (or PgBouncer) on `port`; resolves once it has closed the connection. */
export function sendCancel(port: number, key: CancelKey): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.end(cancelRequest(key.processId, key.secretKey)));
    s.on('close', () => resolve());
    s.on('error', () => resolve());
  });
}

/** A trust login to `port` whose pg_sleep(seconds) is under way on its server. */
export async function sleepingClient(port: number, seconds = 30): Promise<RawClient> {
  const c = await RawClient.login(port, 'app', 'appdb');
  c.write(query(`SELECT pg_sleep(${seconds})`));
  // The statement has reached the backend when pg_stat_activity could show it; a moment is enough on loopback.
  await sleep(300);
  return c;
}

/** Waits for the statement's end: the SQLSTATE it failed with (undefined: it succeeded) and the ms from `since`. */
export async function outcome(c: RawClient, since: number, timeoutMs = 40_000): Promise<{ code: string | undefined; ms: number }> {
  await c.until((m) => m.type === 'Z', timeoutMs);
  const ms = performance.now() - since;
  const code = c.errorCode();
  c.messages.length = 0;
  return { code, ms };
}

/**
 * Clients `ca` of the instance on `portA` and `cb` of `portB`, both in
 * pg_sleep: a cancel of each sent to the other instance, then `ca` sleeps
 * again and is cancelled through its own. Each outcome with its latency.
 */
export async function cancelsAcross(portA: number, portB: number, ca: RawClient, cb: RawClient) {
  const cancelVia = async (port: number, c: RawClient) => {
    const t = performance.now();
    await sendCancel(port, c.backendKey!);
    return outcome(c, t);
  };
  const foreign = await cancelVia(portB, ca);
  const back = await cancelVia(portA, cb);
  ca.write(query('SELECT pg_sleep(30)'));
  await sleep(300);
  const local = await cancelVia(portA, ca);
  return { foreign, back, local };
}

/** The key with `ttl` forwards left (the low 2 bits of its last byte). */
export function withTtl(key: CancelKey, ttl: number): CancelKey {
  const b = keyBytes(key);
  b[7] = (b[7] & ~0x03) | ttl;
  return { processId: b.readInt32BE(0), secretKey: b.readInt32BE(4) };
}

/** The key with another peer_id in it. */
export function withPeer(key: CancelKey, peerId: number): CancelKey {
  const b = keyBytes(key);
  b[1] = peerId & 0xff;
  b[2] = peerId >> 8;
  return { processId: b.readInt32BE(0), secretKey: b.readInt32BE(4) };
}

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

/** A logger whose lines (parsed) land in `lines`. */
export function capture(lines: LogLine[], level = 'debug'): pino.Logger {
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line));
      cb();
    },
  });
  return pino({ level }, sink);
}

/** Waits (a few seconds at most) for a log line matching `pred`. */
export async function logged(lines: LogLine[], pred: (l: LogLine) => boolean, timeoutMs = 5000): Promise<LogLine | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = lines.find(pred);
    if (hit !== undefined || Date.now() > deadline) return hit;
    await sleep(20);
  }
}
