import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { startPgmux, trustSettings, type RunningPgmux } from './helpers/pgmux.ts';
import { getCluster } from './cluster-context.ts';
import { parseErrorFields, TERMINATE } from '../src/protocol/messages.ts';

/**
 * Sends `bytes` on a new connection; everything received until the other
 * side closes, or only the first message when `first` (the login goes on).
 */
function exchange(port: number, bytes: Buffer, first = false): Promise<Buffer> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(bytes));
    s.on('data', (d) => {
      got.push(d);
      const all = Buffer.concat(got);
      if (first && all.length >= 5 && all.length >= 1 + all.readInt32BE(1)) s.destroy();
    });
    s.on('error', () => {});
    s.on('close', () => resolve(Buffer.concat(got)));
    // Both sides close on their own; this only bounds a failure.
    s.setTimeout(3000, () => s.destroy());
  });
}

/** A startup packet asking for `major.minor`, with parameters. */
function startupPacket(major: number, minor: number, params: [string, string][]): Buffer {
  const body = Buffer.concat([...params.map(([k, v]) => Buffer.from(`${k}\0${v}\0`)), Buffer.from([0])]);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length);
  head.writeInt16BE(major, 4);
  head.writeInt16BE(minor, 6);
  return Buffer.concat([head, body]);
}

/** The first message of a reply (type byte and length word included). */
function firstMessage(reply: Buffer): Buffer {
  return reply.subarray(0, 1 + reply.readInt32BE(1));
}

/** An ErrorResponse's fields, without where in PostgreSQL's source it was raised. */
function errorFields(reply: Buffer): Record<string, string> {
  const fields = Object.fromEntries(parseErrorFields(firstMessage(reply).subarray(5)));
  delete fields.F;
  delete fields.L;
  delete fields.R;
  return fields;
}

describe('the startup exchange, byte for byte as PostgreSQL 15 answers it', () => {
  let pgmux: RunningPgmux;
  let postgres: number;
  beforeAll(async () => {
    pgmux = await startPgmux(trustSettings());
    postgres = getCluster().primary.port;
  });
  afterAll(async () => {
    await pgmux.stop();
    await rm(path.dirname(pgmux.server.currentConfig.auth_file!), { recursive: true, force: true });
  });

  it('Terminate before the startup packet: the connection closes without a byte', async () => {
    expect((await exchange(postgres, TERMINATE)).length).toBe(0);
    expect((await exchange(pgmux.port, TERMINATE)).length).toBe(0);
    // Its first four bytes alone already say it.
    expect((await exchange(pgmux.port, TERMINATE.subarray(0, 4))).length).toBe(0);
  });

  it('node-postgres ending a client in the tick it began connecting sees no error', async () => {
    const seen: string[] = [];
    const client = new pg.Client({ host: '127.0.0.1', port: pgmux.port, user: 'app', database: 'appdb' });
    client.on('error', (err) => seen.push(`error event: ${err.message}`));
    client.connect().catch((err: Error) => seen.push(`connect: ${err.message}`));
    await client.end();
    await new Promise((r) => setTimeout(r, 200));
    expect(seen).toEqual([]);
  });

  it('protocol 3.5 with a _pq_ option: the same NegotiateProtocolVersion (3.0, the option named)', async () => {
    const packet = startupPacket(3, 5, [['user', 'app'], ['database', 'appdb'], ['_pq_.something', 'x']]);
    const direct = firstMessage(await exchange(postgres, packet, true));
    const through = firstMessage(await exchange(pgmux.port, packet, true));
    expect(direct.subarray(0, 1).toString()).toBe('v');
    expect(direct.readInt32BE(5)).toBe(0x00030000);
    expect(through.toString('hex')).toBe(direct.toString('hex'));
    // 3.2 without options: the version alone.
    const plain = startupPacket(3, 2, [['user', 'app'], ['database', 'appdb']]);
    expect(firstMessage(await exchange(pgmux.port, plain, true)).toString('hex')).toBe(firstMessage(await exchange(postgres, plain, true)).toString('hex'));
  });

  it('protocol 4.0 and an unknown request code: FATAL 0A000 in the same words', async () => {
    for (const packet of [startupPacket(4, 0, [['user', 'app']]), Buffer.from([0, 0, 0, 8, 0x12, 0x34, 0x56, 0x78])]) {
      const direct = await exchange(postgres, packet);
      const through = await exchange(pgmux.port, packet);
      expect(errorFields(direct)).toMatchObject({ S: 'FATAL', C: '0A000' });
      expect(errorFields(through)).toEqual(errorFields(direct));
    }
  });

  it('protocol 2.0: the refusal in 2.0\'s own format, the same bytes', async () => {
    const packet = startupPacket(2, 0, [['user', 'app']]);
    const direct = await exchange(postgres, packet);
    expect(direct.toString()).toMatch(/^EFATAL: {2}unsupported frontend protocol 2\.0/);
    expect((await exchange(pgmux.port, packet)).toString('hex')).toBe(direct.toString('hex'));
  });
});
