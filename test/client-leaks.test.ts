import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { inWorkerProcesses, sleep, startPgmux, trustSettings, type RunningPgmux } from './helpers/pgmux.ts';
import { RawClient } from './helpers/clients.ts';
import { cancelRequest, startupMessage } from '../src/protocol/messages.ts';

/** Descriptors open in pgmux's processes: this one (pgmux runs in it, its clients too), or its supervisor and workers (PGMUX_TEST_WORKERS). */
const openDescriptors = (pgmux: RunningPgmux) => pgmux.pids().reduce((n, pid) => n + readdirSync(`/proc/${pid}/fd`).length, 0);

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Memory held after collection in this process: the JavaScript heap and buffers outside it. */
function heldMemory(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

/**
 * Opens `count` connections, `parallel` at a time; each sends `bytes` and
 * waits for pgmux to close it (or closes it itself when `hangUp`).
 */
async function connectMany(port: number, count: number, bytes: Buffer | null, opts: { hangUp?: boolean; parallel?: number } = {}): Promise<void> {
  let next = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        if (bytes !== null) s.write(bytes);
        if (opts.hangUp) s.end();
      });
      s.on('data', () => {});
      s.on('error', () => {});
      s.on('close', () => resolve());
      // Whatever happens, the test process does not keep it.
      s.setTimeout(5000, () => s.destroy());
    });
  const worker = async () => {
    while (next < count) {
      next++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: opts.parallel ?? 50 }, worker));
}

async function settle(check: () => boolean | Promise<boolean>, ms = 3000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check()) && Date.now() < until) await sleep(50);
}

describe('a connection that never logs in leaves no trace', () => {
  let pgmux: RunningPgmux;
  let admin: pg.Client;
  beforeAll(async () => {
    pgmux = await startPgmux({ ...trustSettings(), admin_users: 'app', metrics_listen: '127.0.0.1:0' });
    admin = new pg.Client({ connectionString: pgmux.url('app', 'pgmux') });
    await admin.connect();
  });
  afterAll(async () => {
    await admin.end();
    await pgmux.stop();
    await rm(path.dirname(pgmux.server.currentConfig.auth_file!), { recursive: true, force: true });
  });

  const list = async (name: string) => (await admin.query('SHOW LISTS')).rows.find((r) => r.list === name).items as number;
  // used_clients: every client pgmux holds a session for, logged in or not.
  const listed = async () => {
    const lists = await list('used_clients');
    const clients = (await admin.query('SHOW CLIENTS')).rows.length;
    const { port } = pgmux.server.metricsAddress()!;
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const gauge = [...metrics.matchAll(/^pgmux_clients\{[^}]*\} (\d+)$/gm)].reduce((a, m) => a + Number(m[1]), 0);
    return { lists, clients, gauge };
  };

  it('5,000 CancelRequests and 5,000 garbage connections: sessions, SHOW LISTS, SHOW CLIENTS, /metrics and descriptors back where they were', async () => {
    await sleep(100);
    const before = await listed();
    // Only the admin console client is logged in.
    expect(before).toEqual({ lists: 1, clients: 1, gauge: 1 });
    const fdsBefore = openDescriptors(pgmux);
    const heldBefore = heldMemory();

    await connectMany(pgmux.port, 5000, cancelRequest(12345, 67890));
    await connectMany(pgmux.port, 5000, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));

    await settle(async () => (await list('used_clients')) === 1);
    expect(await listed()).toEqual(before);
    await settle(() => openDescriptors(pgmux) <= fdsBefore);
    expect(openDescriptors(pgmux)).toBeLessThanOrEqual(fdsBefore);
    // Each session kept would hold its 16 kB read buffer: 10,000 of them, 160 MB. Only
    // this process can be made to collect its garbage: with worker processes, the
    // sessions, descriptors and gauges above are what shows a session kept.
    if (!inWorkerProcesses) expect(heldMemory() - heldBefore).toBeLessThan(16 * 1024 * 1024);
  });

  it('every other way to leave before login: SSL and GSS probes, silence, half a startup packet, a stalled login, an unknown user', async () => {
    const before = await listed();
    const fdsBefore = openDescriptors(pgmux);
    // Server connections the pool opens for the logins below are its own, not leaks.
    const serverConnections = () => list('used_servers');
    const serversBefore = await serverConnections();
    const ssl = Buffer.alloc(8);
    ssl.writeInt32BE(8);
    ssl.writeInt32BE(80877103, 4);
    const gss = Buffer.alloc(8);
    gss.writeInt32BE(8);
    gss.writeInt32BE(80877104, 4);
    const startup = startupMessage([['user', 'app'], ['database', 'appdb']]);
    await connectMany(pgmux.port, 300, ssl, { hangUp: true });
    await connectMany(pgmux.port, 300, gss, { hangUp: true });
    await connectMany(pgmux.port, 300, null, { hangUp: true });
    await connectMany(pgmux.port, 300, startup.subarray(0, 7), { hangUp: true });
    await connectMany(pgmux.port, 300, Buffer.from([0, 0, 0, 3]));
    // A client that sent its startup packet and leaves before reading the answer.
    await connectMany(pgmux.port, 300, startup, { hangUp: true });
    // A client refused after its startup packet (no such endpoint here: no user).
    await connectMany(pgmux.port, 300, startupMessage([['database', 'appdb']]));
    // And one that leaves at once after logging in fully.
    for (let i = 0; i < 20; i++) (await RawClient.login(pgmux.port, 'app', 'appdb')).close();

    await settle(async () => (await list('used_clients')) === 1);
    expect(await listed()).toEqual(before);
    const allowed = async () => fdsBefore + (await serverConnections()) - serversBefore;
    await settle(async () => openDescriptors(pgmux) <= (await allowed()));
    expect(openDescriptors(pgmux)).toBeLessThanOrEqual(await allowed());
  });

  it('SIGTERM-style shutdown after a flood of cancels does not wait for phantoms', async () => {
    const other = await startPgmux({ ...trustSettings(), shutdown_timeout: 10 });
    try {
      await connectMany(other.port, 2000, cancelRequest(1, 2));
      const started = Date.now();
      await other.server.shutdown('clients');
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      await rm(path.dirname(other.server.currentConfig.auth_file!), { recursive: true, force: true });
    }
  });
});
