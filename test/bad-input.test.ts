import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { sleep, startPgmux, trustSettings, type RunningPgmux } from './helpers/pgmux.ts';
import { RawClient } from './helpers/clients.ts';
import { query, startupMessage } from '../src/protocol/messages.ts';

describe('bad input ends that client alone with 08P01', () => {
  let pgmux: RunningPgmux;
  let healthy: pg.Client;
  beforeAll(async () => {
    pgmux = await startPgmux({ ...trustSettings(), default_pool_size: 2, max_packet_size: 1024 * 1024 });
    healthy = new pg.Client({ connectionString: pgmux.url() });
    await healthy.connect();
    await healthy.query('BEGIN');
    await healthy.query('CREATE TEMP TABLE still_here (x int)');
  });
  afterAll(async () => {
    await healthy.query('ROLLBACK');
    await healthy.end();
    await pgmux.stop();
    await sleep(100);
  });

  async function expectProtocolViolation(c: RawClient): Promise<void> {
    await c.until(() => false, 3000).catch(() => null);
    expect(c.closed).toBe(true);
    expect(c.errorCode()).toBe('08P01');
    // The healthy client, mid-transaction, never noticed.
    expect((await healthy.query('SELECT count(*)::int AS n FROM still_here')).rows[0].n).toBe(0);
  }

  it('garbage instead of a startup packet', async () => {
    const c = await RawClient.connect(pgmux.port);
    c.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await expectProtocolViolation(c);
  });

  it('an unknown startup code and a protocol major version that does not exist: 0A000, as PostgreSQL says', async () => {
    const c = await RawClient.connect(pgmux.port);
    const b = Buffer.alloc(8);
    b.writeInt32BE(8);
    b.writeInt32BE(0x12345678, 4);
    c.write(b);
    await c.until(() => false, 3000).catch(() => null);
    expect(c.closed).toBe(true);
    expect(c.errorCode()).toBe('0A000');
  });

  it('a 2 GB length after login', async () => {
    const c = await RawClient.login(pgmux.port, 'app', 'appdb');
    const b = Buffer.alloc(5);
    b[0] = 0x51;
    b.writeInt32BE(0x7fffffff, 1);
    c.write(b);
    await expectProtocolViolation(c);
  });

  it('a message over max_packet_size, a negative length and an unknown message type', async () => {
    for (const bytes of [
      Buffer.concat([Buffer.from([0x51]), Buffer.from([0, 0x20, 0, 0])]),
      Buffer.from([0x51, 0xff, 0xff, 0xff, 0xf0]),
      Buffer.from([0x01, 0, 0, 0, 4]),
    ]) {
      const c = await RawClient.login(pgmux.port, 'app', 'appdb');
      c.write(bytes);
      await expectProtocolViolation(c);
    }
  });

  it('a truncated message, then the client stalls and leaves', async () => {
    const c = await RawClient.login(pgmux.port, 'app', 'appdb');
    const q = query('SELECT 1');
    c.write(q.subarray(0, q.length - 3));
    await sleep(100);
    c.close();
    // The server connection that saw half a message is not lent again.
    for (let i = 0; i < 3; i++) {
      const next = await RawClient.login(pgmux.port, 'app', 'appdb');
      next.write(query(`SELECT ${i}`));
      expect(await next.until((m) => m.type === 'Z')).not.toBeNull();
      expect(next.errorCode()).toBeUndefined();
      next.close();
    }
  });

  it('SSLRequest and GSSENCRequest get N, then startup goes on in plaintext; a newer 3.x minor gets NegotiateProtocolVersion', async () => {
    const c = await RawClient.connect(pgmux.port);
    const ssl = Buffer.alloc(8);
    ssl.writeInt32BE(8);
    ssl.writeInt32BE(80877103, 4);
    const answers: Buffer[] = [];
    c.socket.prependListener('data', (d: Buffer) => answers.push(d));
    c.socket.pause();
    c.write(ssl);
    await sleep(100);
    c.socket.resume();
    await sleep(50);
    expect(Buffer.concat(answers).subarray(0, 1).toString()).toBe('N');
    c.close();

    const v = await RawClient.connect(pgmux.port);
    const startup = startupMessage([['user', 'app'], ['database', 'appdb'], ['_pq_.something', 'x']]);
    startup.writeInt32BE(0x00030002, 4);
    v.write(startup);
    expect(await v.until((m) => m.type === 'Z')).not.toBeNull();
    const nego = v.messages.find((m) => m.type === 'v');
    // The newest version pgmux speaks, 3.0, as PostgreSQL 15 sends it.
    expect(nego?.body.readInt32BE(0)).toBe(0x00030000);
    expect(nego?.body.readInt32BE(4)).toBe(1);
    v.close();
  });

  it('no user name in the startup packet', async () => {
    const c = await RawClient.connect(pgmux.port);
    c.write(startupMessage([['database', 'appdb']]));
    await c.until(() => false, 2000).catch(() => null);
    expect(c.errorCode()).toBe('28000');
  });
});
