import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { loadConfig } from '../src/config/load.ts';
import { ConfigError } from '../src/config/errors.ts';
import { ConfigSchema } from '../src/config/schema.ts';
import { freePort } from '../src/embedded/cluster.ts';
import { show } from './helpers/admin.ts';
import { psql } from './helpers/clients.ts';
import { startPgmux, type RunningPgmux } from './helpers/pgmux.ts';
import { tempDir } from './helpers/temp.ts';
import { getCluster } from './cluster-context.ts';

/** A TCP relay to the test primary that counts the connections it carries: a stand-in for one more server. */
interface Relay {
  host: string;
  port: number;
  accepted: number;
  close(): Promise<void>;
}

const relays: Relay[] = [];
const started: RunningPgmux[] = [];
afterEach(async () => {
  for (const p of started.splice(0)) await p.stop();
  for (const r of relays.splice(0)) await r.close();
});

async function relay(host = '127.0.0.1'): Promise<Relay> {
  const c = getCluster();
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((client) => {
    r.accepted++;
    const server = net.connect(c.primary.port, c.primary.host);
    for (const s of [client, server]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(server).pipe(client);
  });
  await new Promise<void>((resolve) => srv.listen(0, host, resolve));
  const r: Relay = {
    host,
    port: (srv.address() as net.AddressInfo).port,
    accepted: 0,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => srv.close(() => resolve()));
    },
  };
  relays.push(r);
  return r;
}

const at = (host: string, port: number) => `${host.includes(':') ? `[${host}]` : host}:${port}`;

async function pgmuxWith(nodes: string[], overrides: Record<string, unknown> = {}): Promise<RunningPgmux> {
  const p = await startPgmux({ endpoints: { main: { nodes } }, ...overrides });
  started.push(p);
  return p;
}

/** `n` clients logged in at once (session pooling: a server connection each), then let go. */
async function clientsAtOnce(p: RunningPgmux, n: number): Promise<void> {
  const clients = Array.from({ length: n }, () => new pg.Client({ connectionString: p.url() }));
  try {
    for (const c of clients) {
      await c.connect();
      await c.query('SELECT 1');
    }
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  }
}

describe('IPv6 server addresses', () => {
  it('an endpoint node at [::1], and a pgbouncer.ini [databases] host=::1, are reached over IPv6', async () => {
    const v6 = await relay('::1');
    const p = await pgmuxWith([`postgresql://[::1]:${v6.port}/appdb`]);
    expect(await psql(p.url(), 'SELECT current_database()')).toBe('appdb');
    expect(v6.accepted).toBe(1);

    const dir = await tempDir('pgmux-hosts-');
    const ini = path.join(dir, 'pgbouncer.ini');
    await writeFile(ini, `[databases]\nappdb = host=::1 port=${v6.port}\n[pgbouncer]\nlisten_port = 6432\n`);
    const { config } = await loadConfig([ini], {});
    const q = await pgmuxWith(config.endpoints.appdb.nodes);
    expect(await psql(q.url(), 'SELECT current_database()')).toBe('appdb');
    expect(v6.accepted).toBe(2);
  });
});

describe('a node with a host list (PgBouncer\'s host=a,b with load_balance_hosts)', () => {
  it('round-robin: each new server connection goes to the next host, and all of them serve reads and writes alike', async () => {
    const [a, b] = [await relay(), await relay()];
    const p = await pgmuxWith([`postgresql://${at(a.host, a.port)},${at(b.host, b.port)}/appdb?load_balance_hosts=round-robin`], { stats_users: 'app' });
    // One node, so no read/write split: nothing is routed by statement.
    expect((await show(p, 'NODES')).filter((r) => r.endpoint === 'main')).toHaveLength(1);
    expect((await show(p, 'ENDPOINTS')).find((r) => r.endpoint === 'main')).toMatchObject({ load_balance: 'off' });
    await clientsAtOnce(p, 4);
    expect([a.accepted, b.accepted]).toEqual([2, 2]);
    // A connection given back is lent again wherever it is: no new ones.
    await clientsAtOnce(p, 4);
    expect([a.accepted, b.accepted]).toEqual([2, 2]);
  });

  it('round-robin: a host that cannot be reached is skipped for that connection; clients do not see it', async () => {
    const down = await freePort();
    const b = await relay();
    const p = await pgmuxWith([`postgresql://127.0.0.1:${down},${at(b.host, b.port)}/appdb?load_balance_hosts=round-robin`]);
    await clientsAtOnce(p, 3);
    expect(b.accepted).toBe(3);
  });

  it('disable: new connections stay on the host that works; the first one that cannot be reached is left for the next', async () => {
    const down = await freePort();
    const [a, b] = [await relay(), await relay()];
    const p = await pgmuxWith([`postgresql://127.0.0.1:${down},${at(a.host, a.port)},${at(b.host, b.port)}/appdb?load_balance_hosts=disable`]);
    await clientsAtOnce(p, 3);
    expect([a.accepted, b.accepted]).toEqual([3, 0]);
  });

  it('a login the server refuses is its answer: no other host is tried', async () => {
    const [a, b] = [await relay(), await relay()];
    const p = await pgmuxWith([`postgresql://${at(a.host, a.port)},${at(b.host, b.port)}/no_such_database?load_balance_hosts=round-robin`]);
    await expect(psql(p.url('app', 'main'), 'SELECT 1')).rejects.toThrow('database "no_such_database" does not exist');
    expect(a.accepted + b.accepted).toBe(1);
  });

  it('in the configuration: a URL with several hosts needs load_balance_hosts, which takes round-robin or disable; --endpoint keeps such a URL one node', async () => {
    const parsed = ConfigSchema.safeParse({ endpoints: { x: { nodes: ['postgresql://h1,h2/db?load_balance_hosts=random'] } } });
    expect(parsed.success).toBe(false);
    expect(JSON.stringify(parsed.error?.issues)).toContain('load_balance_hosts: expected round-robin or disable, got \\"random\\"');
    const one = await loadConfig(['--endpoint', 'main=postgresql://h1:5432,[::1]:5433/db?load_balance_hosts=disable'], {});
    expect(one.config.endpoints.main.nodes).toEqual(['postgresql://h1:5432,[::1]:5433/db?load_balance_hosts=disable']);
    const two = await loadConfig(['--endpoint', 'main=postgresql://h1:5432,h2:5432/db'], {});
    expect(two.config.endpoints.main.nodes).toHaveLength(2);
    await expect(loadConfig(['--endpoint', 'main=h1,h2?load_balance_hosts=sometimes'], {})).rejects.toThrow(ConfigError);
  });
});
