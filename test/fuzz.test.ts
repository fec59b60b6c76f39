import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import fc from 'fast-check';
import { parse as parseToml } from 'smol-toml';
import { FrameReader, MessageReader, StartupReader } from '../src/protocol/framing.ts';
import { PgError } from '../src/protocol/errors.ts';
import { parseStartupPacket, startupMessage, query } from '../src/protocol/messages.ts';
import { readBind, readParse, readQuery, readTarget } from '../src/protocol/extended.ts';
import { ScramError, ScramServerSession, scramVerifierFromPassword } from '../src/protocol/scram.ts';
import { parseCommand } from '../src/admin/console.ts';
import { pgbouncerIniToConfig } from '../src/config/pgbouncer-ini.ts';
import { ConfigError } from '../src/config/errors.ts';
import { ConfigSchema } from '../src/config/schema.ts';
import { BadAnswer, parseAnswer } from '../src/routing/control-plane.ts';
import { classify, loadClassifier } from '../src/sql/classify.ts';
import { backendsOf, sleep, startPgmux, trustSettings, type RunningPgmux } from './helpers/pgmux.ts';
import { RawClient, psql } from './helpers/clients.ts';

/**
 * Every entry that reads bytes from outside, fed generated and mutated
 * input (seeded, so a failure reproduces). Each input may only end in the
 * error type that entry reports to a client; anything else (a TypeError, a
 * RangeError) would escape as an internal error. The counts add up to more
 * than 100,000 inputs per run.
 */
const SEED = Number(process.env.PGMUX_FUZZ_SEED ?? 20261124);
const SCALE = Number(process.env.PGMUX_FUZZ_SCALE ?? 1);
const runs = (n: number) => ({ numRuns: Math.round(n * SCALE), seed: SEED });

/** Only the entry's own error type may come out. */
function onlyThrows(f: () => unknown, ...allowed: (new (...args: never[]) => Error)[]): void {
  try {
    f();
  } catch (err) {
    if (!allowed.some((A) => err instanceof A)) throw err;
  }
}

/** Valid input with a few bytes flipped, cut short, or lengthened. */
const mutated = (valid: Buffer) =>
  fc
    .tuple(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.nat(), fc.uint8Array({ maxLength: 8 }), fc.constantFrom('flip', 'cut', 'grow'))
    .map(([flips, cut, extra, how]) => {
      const b = Buffer.from(valid);
      for (const [at, v] of flips) if (b.length > 0) b[at % b.length] = v;
      if (how === 'cut') return b.subarray(0, cut % (b.length + 1));
      if (how === 'grow') return Buffer.concat([b, Buffer.from(extra)]);
      return b;
    });

const lengths = fc.constantFrom(0, 3, 4, 5, 8, 0x7fffffff, -1, -0x80000000, 10001);

describe('fuzzing the entries that read outside bytes', () => {
  beforeAll(() => loadClassifier());

  it('startup packets: generated, mutated, with lengths 0, 3, 2^31-1 and negative (40,000 inputs)', () => {
    const valid = startupMessage([['user', 'app'], ['database', 'appdb'], ['options', '-c a=b']]);
    const packet = fc.oneof(
      fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
      mutated(valid),
      fc.tuple(lengths, fc.integer(), fc.uint8Array({ maxLength: 32 })).map(([len, code, rest]) => {
        const b = Buffer.alloc(8 + rest.length);
        b.writeInt32BE(len, 0);
        b.writeInt32BE(code, 4);
        Buffer.from(rest).copy(b, 8);
        return b;
      }),
    );
    fc.assert(
      fc.property(packet, fc.nat({ max: 10 }), (bytes, split) => {
        onlyThrows(() => {
          const r = new StartupReader();
          r.push(bytes.subarray(0, split));
          for (let p = r.push(bytes.subarray(split)); p !== null; p = r.next()) parseStartupPacket(p);
        }, PgError);
      }),
      runs(40_000),
    );
  });

  it('frontend messages and their fields: any bytes, any chunking, NUL bytes, bad UTF-8 (30,000 inputs)', () => {
    const typed = fc.tuple(fc.constantFrom(...'PBDCEQSHXdcfFp!\0'), lengths, fc.uint8Array({ maxLength: 40 })).map(([t, len, body]) => {
      const b = Buffer.alloc(5 + body.length);
      b[0] = t.charCodeAt(0);
      b.writeInt32BE(len === 0x7fffffff || len < 0 ? len : body.length + 4, 1);
      Buffer.from(body).copy(b, 5);
      return b;
    });
    fc.assert(
      fc.property(fc.array(typed, { maxLength: 6 }), fc.nat({ max: 50 }), (msgs, split) => {
        const stream = Buffer.concat(msgs);
        onlyThrows(() => {
          const r = new MessageReader(1 << 20, 'BCcdDEfFHPQSX');
          const each = (type: number, msg: Buffer) => {
            if (type === 0x50) readParse(msg);
            else if (type === 0x42) readBind(msg);
            else if (type === 0x44) readTarget(msg, 'Describe');
            else if (type === 0x43) readTarget(msg, 'Close');
            else if (type === 0x51) readQuery(msg);
          };
          r.feed(stream.subarray(0, split), each);
          r.feed(stream.subarray(split), each);
        }, PgError);
        onlyThrows(() => new FrameReader('ZSE', 1 << 20).feed(stream, { onMessage() {} }), PgError);
      }),
      runs(30_000),
    );
  });

  it('SASL messages: wrong order, skipped steps, garbage attributes, lying channel-binding flags (15,000 inputs)', () => {
    const verifier = scramVerifierFromPassword('secret', Buffer.alloc(16, 7), 4096);
    const good = 'n,,n=app,r=abcdefghijklmnopqrstuvwx';
    const first = fc.oneof(fc.string({ maxLength: 60 }), fc.constantFrom(good, 'y,,n=,r=x', 'p=tls-server-end-point,,n=a,r=b', 'n,a=x,n=a,r=b', 'n,,m=ext,n=a,r=b'), mutated(Buffer.from(good)).map((b) => b.toString('latin1')));
    fc.assert(
      fc.property(first, fc.string({ maxLength: 120 }), fc.boolean(), (f, final, skipFirst) => {
        const s = new ScramServerSession({ verifier, user: 'app', mockSecret: Buffer.alloc(32, 1) });
        onlyThrows(() => {
          if (!skipFirst) s.clientFirst(f);
          const out = s.clientFinal(final);
          // A proof out of thin air never logs anyone in.
          expect(out).toBeUndefined();
        }, ScramError);
      }),
      runs(15_000),
    );
  });

  it('admin console commands (10,000 inputs)', () => {
    const cmd = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.tuple(fc.constantFrom('SHOW', 'show', 'SET', 'KILL', 'RECONNECT', 'SHUTDOWN', 'RELOAD', 'PAUSE'), fc.string({ maxLength: 20 }), fc.constantFrom('', ';', ' = ', "'", '"')).map((p) => p.join(' ')),
    );
    fc.assert(fc.property(cmd, (sql) => onlyThrows(() => parseCommand(sql), PgError)), runs(10_000));
  });

  it('configuration files: TOML and pgbouncer.ini (5,000 inputs)', () => {
    const ini = fc.array(fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('[pgbouncer]', '[databases]', '[users]', 'listen_port = 1', 'a = host=x port=y', '* =', '%include x', 'pool_mode=nonsense')), { maxLength: 8 }).map((l) => l.join('\n'));
    fc.assert(
      fc.property(ini, (text) => {
        onlyThrows(() => {
          const { config } = pgbouncerIniToConfig(text, 'x.ini');
          ConfigSchema.safeParse(config);
        }, ConfigError);
        onlyThrows(() => ConfigSchema.safeParse(parseToml(text)), Error);
      }),
      runs(5_000),
    );
  });

  it('control-plane answers: any JSON, and mutated good ones (5,000 inputs)', () => {
    const good = { nodes: ['postgresql://127.0.0.1:5432'], weights: [1] };
    const answer = fc.oneof(
      fc.json().map((t) => JSON.parse(t) as unknown),
      fc.record({ nodes: fc.array(fc.oneof(fc.string(), fc.constant('postgresql://h:1'), fc.integer())), weights: fc.option(fc.array(fc.double())) }),
      fc.constant(good),
    );
    fc.assert(fc.property(answer, (body) => onlyThrows(() => parseAnswer('ep', body), BadAnswer)), runs(5_000));
  });

  it('the SQL classifier never throws, whatever the text (5,000 inputs)', () => {
    fc.assert(fc.property(fc.string({ maxLength: 80 }), (sql) => void classify(sql)), runs(5_000));
  });
});

describe('garbage from many clients against a running pgmux', () => {
  let pgmux: RunningPgmux;
  const errors: string[] = [];
  beforeAll(async () => {
    const sink = new Writable({
      write(chunk, _enc, cb) {
        errors.push(chunk.toString());
        cb();
      },
    });
    pgmux = await startPgmux({ ...trustSettings(), pool_mode: 'transaction', default_pool_size: 3 }, { logger: pino({ level: 'error' }, sink) });
  });
  afterAll(async () => {
    await pgmux.stop();
    await sleep(100);
  });

  it('every bad client ends in an error or a close and no exception escapes; a healthy client alongside never notices; the pool is back to its baseline', async () => {
    const healthy = await RawClient.login(pgmux.port, 'app', 'appdb');
    let healthyOk = 0;
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        healthy.messages.length = 0;
        healthy.write(query('SELECT 41 + 1'));
        await healthy.until((m) => m.type === 'Z');
        if (healthy.messages.some((m) => m.type === 'D' && m.body.subarray(6).toString() === '42')) healthyOk++;
      }
    })();
    const login = startupMessage([['user', 'app'], ['database', 'appdb']]);
    const inputs = fc.sample(
      fc.oneof(
        fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
        mutated(login),
        fc.tuple(mutated(query('SELECT 1')), fc.uint8Array({ maxLength: 16 })).map(([q, tail]) => Buffer.concat([login, q, Buffer.from(tail)])),
      ),
      { numRuns: 300, seed: SEED },
    );
    const outcomes = await Promise.all(
      inputs.map(
        (bytes) =>
          new Promise<string>((resolve) => {
            const s = net.connect({ host: '127.0.0.1', port: pgmux.port }, () => s.write(bytes));
            let got = '';
            s.on('data', (d: Buffer) => (got += d.toString('latin1')));
            s.on('error', () => {});
            s.on('close', () => resolve(got));
            // A client that sent a half message stalls: it leaves after a while.
            setTimeout(() => s.destroy(), 1500);
          }),
      ),
    );
    stop = true;
    await loop;
    expect(outcomes).toHaveLength(inputs.length);
    // pgmux's "unexpected error" log is what an escaped exception looks like.
    expect(errors.filter((l) => l.includes('unexpected error'))).toEqual([]);
    expect(outcomes.some((o) => o.includes('E'))).toBe(true);
    expect(healthyOk).toBeGreaterThan(0);
    expect(healthy.closed).toBe(false);
    healthy.close();
    await sleep(300);
    expect(await backendsOf('app')).toBeLessThanOrEqual(3);
    expect(await psql(pgmux.url(), 'SELECT 1')).toBe('1');
  }, 30_000);
});
