/**
 * cancel_store = redis://…: two pgmux instances on one real redis-server;
 * a CancelRequest sent to the instance that does not serve the client
 * still cancels, and Redis going away and coming back changes nothing a
 * client sees.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { startPgmux, trustSettings, sleep, type RunningPgmux } from './helpers/pgmux.ts';
import { RedisServer, REDIS_SERVER } from './helpers/redis-server.ts';
import { cancelsAcross, capture, logged, outcome, sendCancel, sleepingClient, type LogLine } from './helpers/cancels.ts';
import { query } from '../src/protocol/messages.ts';

const CANCELED = '57014';

/**
 * Waits until `count` clients' keys are in Redis and both instances listen
 * on their channels: a foreign cancel needs both (the keys are written, and
 * the channels subscribed, in the background).
 */
async function registered(redis: RedisServer, count: number): Promise<void> {
  const { Redis } = await import('ioredis');
  const c = new Redis(redis.url);
  try {
    const deadline = Date.now() + 10_000;
    const ready = async () =>
      (await c.keys('pgmux:cancel:*')).filter((k) => !k.includes(':instance:')).length >= count &&
      ((await c.call('PUBSUB', 'CHANNELS', 'pgmux:cancel:instance:*')) as string[]).length >= 2;
    while (!(await ready()) && Date.now() < deadline) await sleep(50);
  } finally {
    c.disconnect();
  }
}

describe.skipIf(REDIS_SERVER === undefined)('two instances with cancel_store on Redis', () => {
  let redis: RedisServer;
  let a: RunningPgmux;
  let b: RunningPgmux;
  const logsA: LogLine[] = [];
  const logsB: LogLine[] = [];

  beforeAll(async () => {
    redis = await RedisServer.start();
    a = await startPgmux({ ...trustSettings(), cancel_store: redis.url }, { logger: capture(logsA) });
    b = await startPgmux({ ...trustSettings(), pool_mode: 'transaction', cancel_store: redis.url }, { logger: capture(logsB) });
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await redis?.stop();
  });

  it("a CancelRequest sent to the instance that does not serve the client cancels its pg_sleep(30), both ways", async () => {
    const ca = await sleepingClient(a.port);
    const cb = await sleepingClient(b.port);
    await registered(redis, 2);
    const { foreign: viaRedis, back, local } = await cancelsAcross(a.port, b.port, ca, cb);
    expect(viaRedis.code).toBe(CANCELED);
    expect(back.code).toBe(CANCELED);
    expect(local.code).toBe(CANCELED);
    console.log(`cancel latency: same instance ${local.ms.toFixed(1)} ms, via Redis ${viaRedis.ms.toFixed(1)} ms`);
    ca.close();
    cb.close();
  });

  it('a client that left is no longer in Redis', async () => {
    const { Redis } = await import('ioredis');
    const c = new Redis(redis.url);
    try {
      const deadline = Date.now() + 5000;
      while ((await c.keys('pgmux:cancel:*')).some((k) => !k.includes(':instance:')) && Date.now() < deadline) await sleep(50);
      expect((await c.keys('pgmux:cancel:*')).filter((k) => !k.includes(':instance:'))).toEqual([]);
    } finally {
      c.disconnect();
    }
  });

  it('Redis stopped: a local cancel still works, a foreign one fails with a log line, clients go on; Redis back: foreign cancels work again', async () => {
    const ca = await sleepingClient(a.port);
    await registered(redis, 1);
    await redis.stop();
    expect(await logged(logsB, (l) => /cancel store unreachable/.test(l.msg))).toBeDefined();

    // Local: unaffected.
    await sendCancel(a.port, ca.backendKey!);
    expect((await outcome(ca, performance.now())).code).toBe(CANCELED);

    // Foreign: one log line, and the client's statement runs to its end.
    ca.write(query('SELECT pg_sleep(1)'));
    await sleep(300);
    const before = logsB.length;
    await sendCancel(b.port, ca.backendKey!);
    const failed = (l: LogLine) => /not forwarded: cancel store unreachable/.test(l.msg);
    expect(await logged(logsB, failed)).toBeDefined();
    expect(logsB.slice(before).filter(failed)).toHaveLength(1);
    expect((await outcome(ca, performance.now())).code).toBeUndefined();

    // New clients log in and are served while Redis is away.
    for (const p of [a, b]) {
      const c = new pg.Client({ connectionString: p.url() });
      await c.connect();
      expect((await c.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
      await c.end();
    }

    // Back: keys handed out before and during the outage are written again, and cancels reach their owner.
    const late = await sleepingClient(a.port);
    await redis.resume();
    expect(await logged(logsB, (l) => /cancel store reachable again/.test(l.msg), 10_000)).toBeDefined();
    await registered(redis, 2);
    await sendCancel(b.port, late.backendKey!);
    expect((await outcome(late, performance.now())).code).toBe(CANCELED);
    ca.write(query('SELECT pg_sleep(30)'));
    await sleep(300);
    await sendCancel(b.port, ca.backendKey!);
    expect((await outcome(ca, performance.now())).code).toBe(CANCELED);
    ca.close();
    late.close();
  });

  it('an unreachable Redis at start: pgmux starts and serves, and local cancels work', async () => {
    const stopped = await RedisServer.start();
    await stopped.stop();
    const lines: LogLine[] = [];
    const c = await startPgmux({ ...trustSettings(), cancel_store: stopped.url }, { logger: capture(lines) });
    try {
      const cc = await sleepingClient(c.port);
      await sendCancel(c.port, cc.backendKey!);
      expect((await outcome(cc, performance.now())).code).toBe(CANCELED);
      cc.close();
      expect(await logged(lines, (l) => /cancel store unreachable/.test(l.msg))).toBeDefined();
    } finally {
      await c.stop();
    }
  });
});
