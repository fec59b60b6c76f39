/**
 * cancel_store = redis://…: pgmux instances behind one load balancer share
 * where each client's cancel key lives. Every instance writes the keys it
 * hands out (`pgmux:cancel:<key>` → its own channel) with a TTL, renewed
 * while the client lives and deleted when it leaves, and listens on its
 * channel. A CancelRequest for a key nobody here knows is looked up and
 * published to the owner's channel in one step (a script); the owner
 * cancels as if the request had come to it.
 *
 * Redis is a helper, never a dependency of serving clients: commands are
 * not queued while it is unreachable (they fail at once), a key written
 * while it was down is written again when it comes back, and the client
 * library reconnects in the background. ioredis is loaded only here, so a
 * pgmux without cancel_store never loads it.
 */
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Redis, RedisOptions } from 'ioredis';
import { redactSecrets } from '../config/redact.ts';

const KEY_PREFIX = 'pgmux:cancel:';
/** How long Redis keeps a key nobody renews: an instance that died leaves nothing behind for long. */
export const STORE_KEY_TTL_S = 60;
/** Live keys are written again this often (and whenever Redis comes back). */
const RENEW_EVERY_MS = (STORE_KEY_TTL_S * 1000) / 3;
/** Keys per pipeline when renewing. */
const RENEW_BATCH = 1000;

// GET the owner's channel and PUBLISH the key there, in one round trip.
// -1: no such key; 0: its owner is not listening; n: delivered.
const FORWARD_SCRIPT = `local owner = redis.call('GET', KEYS[1])
if not owner then return -1 end
return redis.call('PUBLISH', owner, ARGV[1])`;

export type ForwardResult = 'delivered' | 'unknown' | 'owner-gone';

export class RedisCancelStore {
  /** This instance's channel: what its keys point to. */
  readonly channel: string;
  private readonly client: Redis;
  private readonly subscriber: Redis;
  private readonly log: Logger;
  private readonly liveKeys: () => Iterable<string>;
  private readonly renewTimer: NodeJS.Timeout;
  /** Whether commands can go to Redis now. */
  private up = false;
  /** Whether "unreachable" has been said since it was last up (once per outage). */
  private saidDown = false;
  private connectedOnce = false;
  private closed = false;

  private constructor(RedisClass: typeof Redis, url: string, log: Logger, liveKeys: () => Iterable<string>, onCancel: (hexKey: string) => void) {
    this.log = log;
    this.liveKeys = liveKeys;
    this.channel = `${KEY_PREFIX}instance:${os.hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
    const options: RedisOptions = {
      // Fail at once while Redis is away rather than pile up commands.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResubscribe: false,
      connectTimeout: 2000,
      retryStrategy: (times) => Math.min(100 * times, 2000),
    };
    this.client = new RedisClass(url, options);
    this.subscriber = new RedisClass(url, options);
    const where = redactSecrets(url);
    this.client.on('ready', () => {
      this.up = true;
      if (this.saidDown) this.log.info({ cancelStore: where }, 'cancel store reachable again');
      else if (!this.connectedOnce) this.log.info({ cancelStore: where, channel: this.channel }, 'cancel store connected');
      this.connectedOnce = true;
      this.saidDown = false;
      this.renew();
    });
    const down = (err?: Error) => {
      this.up = false;
      if (this.closed || this.saidDown) return;
      this.saidDown = true;
      this.log.warn(
        { cancelStore: where, err: err?.message },
        'cancel store unreachable: cancels of this instance\'s clients still work, those for other instances fail until it is back',
      );
    };
    this.client.on('error', (err: Error) => down(err));
    this.client.on('close', () => down());
    this.subscriber.on('error', () => {});
    // Subscribed anew on every connection (autoResubscribe would skip a first subscribe that failed).
    this.subscriber.on('ready', () => void this.subscriber.subscribe(this.channel).catch(() => {}));
    this.subscriber.on('message', (_channel: string, message: string) => onCancel(message));
    this.renewTimer = setInterval(() => this.renew(), RENEW_EVERY_MS).unref();
  }

  /** Connects (in the background: an unreachable Redis is retried) to the store at `url`. */
  static async open(url: string, log: Logger, liveKeys: () => Iterable<string>, onCancel: (hexKey: string) => void): Promise<RedisCancelStore> {
    const { Redis } = await import('ioredis');
    return new RedisCancelStore(Redis, url, log, liveKeys, onCancel);
  }

  /** A client got this key. */
  add(hexKey: string): void {
    if (this.up) this.client.set(KEY_PREFIX + hexKey, this.channel, 'EX', STORE_KEY_TTL_S).catch(() => {});
  }

  /** Its client left. */
  remove(hexKey: string): void {
    if (this.up) this.client.del(KEY_PREFIX + hexKey).catch(() => {});
  }

  /** Hands a key nobody here knows to its owner; rejects when Redis cannot be asked. */
  async forward(hexKey: string): Promise<ForwardResult> {
    if (!this.up) throw new Error('cancel store unreachable');
    const n = (await this.client.eval(FORWARD_SCRIPT, 1, KEY_PREFIX + hexKey, hexKey)) as number;
    return n < 0 ? 'unknown' : n === 0 ? 'owner-gone' : 'delivered';
  }

  /** Writes every live key again with a fresh TTL (also after an outage, for keys handed out meanwhile). */
  private renew(): void {
    if (!this.up) return;
    let pipeline = this.client.pipeline();
    let n = 0;
    for (const hexKey of this.liveKeys()) {
      pipeline.set(KEY_PREFIX + hexKey, this.channel, 'EX', STORE_KEY_TTL_S);
      if (++n % RENEW_BATCH === 0) {
        pipeline.exec().catch(() => {});
        pipeline = this.client.pipeline();
      }
    }
    if (n % RENEW_BATCH !== 0) pipeline.exec().catch(() => {});
  }

  /** Stops renewing, lets pending deletes reach Redis, and disconnects. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.renewTimer);
    this.subscriber.disconnect();
    if (!this.up) {
      this.client.disconnect();
      return;
    }
    const timer = setTimeout(() => this.client.disconnect(), 1000);
    await this.client.quit().catch(() => {});
    clearTimeout(timer);
    this.client.disconnect();
  }
}
