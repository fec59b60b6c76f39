/**
 * Cancels across pgmux instances with PgBouncer's peering (peer_id and
 * [peers]), between pgmux instances and with a real PgBouncer in the same
 * group; and across the workers of one instance, through the worker link.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmod, chown, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import pino from 'pino';
import pg from 'pg';
import { startPgmux, trustSettings, sleep, type RunningPgmux } from './helpers/pgmux.ts';
import { freePort } from './helpers/redis-server.ts';
import { tempDir } from './helpers/temp.ts';
import { cancelsAcross, capture, logged, outcome, sendCancel, sleepingClient, withPeer, withTtl, type LogLine } from './helpers/cancels.ts';
import { getCluster } from './cluster-context.ts';
import { CancelRegistry } from '../src/session/cancel-registry.ts';
import { ConfigSchema } from '../src/config/schema.ts';
import { pgbouncerIniToConfig } from '../src/config/pgbouncer-ini.ts';
import { ConfigError } from '../src/config/errors.ts';
import { loadConfig } from '../src/config/load.ts';
import type { WorkerLink } from '../src/workers/link.ts';
import { query } from '../src/protocol/messages.ts';

const CANCELED = '57014';

describe('two pgmux instances peered (peer_id and [peers])', () => {
  let a: RunningPgmux;
  let b: RunningPgmux;
  const logsA: LogLine[] = [];
  const logsB: LogLine[] = [];

  beforeAll(async () => {
    const [portA, portB] = [await freePort(), await freePort()];
    // B is reached over TCP; A over its Unix socket, as PgBouncer's docs set peers up.
    const dirA = await tempDir('pgmux-peer-a-');
    const peers = { 1: { host: dirA, port: portA }, 2: { host: '127.0.0.1', port: portB } };
    a = await startPgmux({ ...trustSettings(), listen: `127.0.0.1:${portA}`, unix_socket_dir: dirA, peer_id: 1, peers, admin_users: 'app' }, { logger: capture(logsA) });
    b = await startPgmux({ ...trustSettings(), listen: `127.0.0.1:${portB}`, pool_mode: 'transaction', peer_id: 2, peers }, { logger: capture(logsB) });
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  it("a CancelRequest for a client of A sent to B cancels its pg_sleep(30), and one of B's sent to A", async () => {
    const ca = await sleepingClient(a.port);
    const cb = await sleepingClient(b.port);
    const { foreign: viaPeer, back, local } = await cancelsAcross(a.port, b.port, ca, cb);
    expect(viaPeer.code).toBe(CANCELED);
    expect(back.code).toBe(CANCELED);
    // The same clients go on, and a cancel sent to their own instance still works.
    expect(local.code).toBe(CANCELED);
    console.log(`cancel latency: same instance ${local.ms.toFixed(1)} ms, via a peer ${viaPeer.ms.toFixed(1)} ms`);
    ca.close();
    cb.close();
  });

  it('a key forwarded as often as it may be is dropped with a log line; one with a forward left still cancels', async () => {
    const ca = await sleepingClient(a.port, 1);
    await sendCancel(b.port, withTtl(ca.backendKey!, 0));
    expect(await logged(logsB, (l) => /TTL exhausted/.test(l.msg))).toBeDefined();
    const done = await outcome(ca, performance.now());
    expect(done.code).toBeUndefined();

    // Its last forward: B sends it to A with none left, and A still knows its client.
    ca.write(query('SELECT pg_sleep(30)'));
    await sleep(300);
    await sendCancel(b.port, withTtl(ca.backendKey!, 1));
    expect((await outcome(ca, performance.now())).code).toBe(CANCELED);
    ca.close();
  });

  it('a key naming a peer nobody configured is dropped with a log line, and both instances go on serving', async () => {
    const ca = await sleepingClient(a.port, 1);
    await sendCancel(b.port, withPeer(ca.backendKey!, 77));
    expect(await logged(logsB, (l) => /names no configured peer/.test(l.msg) && l.peer === 77)).toBeDefined();
    expect((await outcome(ca, performance.now())).code).toBeUndefined();
    ca.close();
    for (const p of [a, b]) {
      const c = new pg.Client({ connectionString: p.url() });
      await c.connect();
      expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      await c.end();
    }
  });

  it('SHOW PEERS and SHOW PEER_POOLS list the configured peers, as PgBouncer\'s console does', async () => {
    const c = new pg.Client({ connectionString: a.url('app', 'pgbouncer') });
    await c.connect();
    try {
      const peers = await c.query('SHOW PEERS');
      expect(peers.fields.map((f) => f.name)).toEqual(['peer_id', 'host', 'port', 'pool_size']);
      expect(peers.rows.map((r) => [r.peer_id, r.port, r.pool_size])).toEqual([
        [1, a.port, 20],
        [2, b.port, 20],
      ]);
      const pools = await c.query('SHOW PEER_POOLS');
      expect(pools.fields.map((f) => f.name)).toEqual(['peer_id', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active_cancel', 'sv_login']);
      expect(pools.rows).toEqual([
        { peer_id: 1, cl_active_cancel_req: 0, cl_waiting_cancel_req: 0, sv_active_cancel: 0, sv_login: 0 },
        { peer_id: 2, cl_active_cancel_req: 0, cl_waiting_cancel_req: 0, sv_active_cancel: 0, sv_login: 0 },
      ]);
    } finally {
      await c.end();
    }
  });

  it('a peer that cannot be reached costs one log line and nothing else', async () => {
    const port = await freePort();
    const c = await startPgmux({ ...trustSettings(), peer_id: 5, peers: { 9: { host: '127.0.0.1', port } } }, { logger: capture(logsB) });
    try {
      const cc = await sleepingClient(c.port, 1);
      await sendCancel(c.port, withPeer(cc.backendKey!, 9));
      expect(await logged(logsB, (l) => /not forwarded to peer/.test(l.msg) && l.peer === 9)).toBeDefined();
      expect((await outcome(cc, performance.now())).code).toBeUndefined();
      cc.close();
    } finally {
      await c.stop();
    }
  });
});

const PGBOUNCER = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer'].find((p) => existsSync(p));

/** Whether that PgBouncer has peering (1.19 and later; Debian 12 ships 1.18). */
function pgbouncerPeers(): boolean {
  if (PGBOUNCER === undefined) return false;
  const m = /PgBouncer (\d+)\.(\d+)/.exec(execFileSync(PGBOUNCER, ['--version'], { encoding: 'utf8' }));
  return m !== null && (Number(m[1]) > 1 || Number(m[2]) >= 19);
}

/** PgBouncer (Debian's package) with peer_id 3, trusting its clients; stopped by its pid. */
async function startPgbouncer(port: number, peers: string[]): Promise<{ stop(): Promise<void> }> {
  const c = getCluster();
  const dir = await tempDir('pgmux-pgbouncer-', 0o755);
  const ini = path.join(dir, 'pgbouncer.ini');
  const userlist = path.join(dir, 'userlist.txt');
  const pidfile = path.join(dir, 'pgbouncer.pid');
  await writeFile(userlist, `"app" "${c.roles.app.password}"\n`, { mode: 0o600 });
  await writeFile(
    ini,
    [
      '[databases]',
      `appdb = host=${c.primary.host} port=${c.primary.port} dbname=appdb`,
      '[peers]',
      ...peers,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${userlist}`,
      'peer_id = 3',
      `logfile = ${path.join(dir, 'pgbouncer.log')}`,
      `pidfile = ${pidfile}`,
      '',
    ].join('\n'),
  );
  let argv = [PGBOUNCER!, ini];
  if (process.getuid?.() === 0) {
    // PgBouncer will not run as root; it runs as postgres, which owns its files.
    const pw = (await readFile('/etc/passwd', 'utf8')).split('\n').find((l) => l.startsWith('postgres:'))!.split(':');
    for (const f of [dir, ini, userlist]) await chown(f, Number(pw[2]), Number(pw[3]));
    await chmod(userlist, 0o600);
    argv = ['/usr/bin/setpriv', `--reuid=${pw[2]}`, `--regid=${pw[3]}`, '--clear-groups', ...argv];
  }
  const child: ChildProcess = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (up) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`pgbouncer did not start: ${stderr}${await readFile(path.join(dir, 'pgbouncer.log'), 'utf8').catch(() => '')}`);
    }
    await sleep(50);
  }
  return {
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

describe.skipIf(!pgbouncerPeers())('pgmux and PgBouncer (1.19 or later) in one peer group', () => {
  let a: RunningPgmux;
  let bouncer: { stop(): Promise<void> };
  let bouncerPort: number;

  beforeAll(async () => {
    const portA = await freePort();
    bouncerPort = await freePort();
    bouncer = await startPgbouncer(bouncerPort, [`1 = host=127.0.0.1 port=${portA}`, `3 = host=127.0.0.1 port=${bouncerPort}`]);
    a = await startPgmux({ ...trustSettings(), listen: `127.0.0.1:${portA}`, peer_id: 1, peers: { 1: { host: '127.0.0.1', port: portA }, 3: { host: '127.0.0.1', port: bouncerPort } } });
  });
  afterAll(async () => {
    await a?.stop();
    await bouncer?.stop();
  });

  it("PgBouncer forwards a pgmux client's cancel to pgmux, and pgmux forwards a PgBouncer client's to PgBouncer", async () => {
    const ca = await sleepingClient(a.port);
    await sendCancel(bouncerPort, ca.backendKey!);
    expect((await outcome(ca, performance.now())).code).toBe(CANCELED);
    ca.close();

    const cb = await sleepingClient(bouncerPort);
    await sendCancel(a.port, cb.backendKey!);
    expect((await outcome(cb, performance.now())).code).toBe(CANCELED);
    cb.close();
  });
});

/** Two workers of one pgmux in this process: what one tells the other arrives as the supervisor would pass it. */
class PairLink implements WorkerLink {
  readonly count = 2;
  other!: PairLink;
  readonly id: number;
  private readonly handlers = new Map<string, (payload: unknown, from: number) => unknown>();
  constructor(id: number) {
    this.id = id;
  }
  handle(topic: string, handler: (payload: unknown, from: number) => unknown): void {
    this.handlers.set(topic, handler);
  }
  private target(worker: number): PairLink {
    return worker === this.id ? this : this.other;
  }
  async ask<T>(worker: number, topic: string, payload?: unknown): Promise<T> {
    return (await this.target(worker).handlers.get(topic)!(structuredClone(payload), this.id)) as T;
  }
  async askAll<T>(topic: string, payload?: unknown): Promise<{ worker: number; answer: T }[]> {
    return Promise.all([0, 1].map(async (worker) => ({ worker, answer: await this.ask<T>(worker, topic, payload) })));
  }
  tell(worker: number, topic: string, payload?: unknown): void {
    setImmediate(() => this.target(worker).handlers.get(topic)?.(structuredClone(payload), this.id));
  }
}

describe('workers of one instance', () => {
  it("a CancelRequest that lands on another worker than its client's is handed to that worker", async () => {
    const c = getCluster();
    const links = [new PairLink(0), new PairLink(1)];
    links[0].other = links[1];
    links[1].other = links[0];
    const config = ConfigSchema.parse({});
    const registries = links.map((link) => new CancelRegistry({ config: () => config, log: pino({ level: 'silent' }), link }));
    // A real backend stands for the client's server connection.
    const backend = new pg.Client({ host: c.primary.host, port: c.primary.port, user: 'app', password: c.roles.app.password, database: 'appdb' });
    await backend.connect();
    const { processID, secretKey } = backend as unknown as { processID: number; secretKey: number };
    const key = registries[0].register({ currentServer: () => ({ host: c.primary.host, port: c.primary.port, processId: processID, secretKey }) });
    const running = backend.query('SELECT pg_sleep(30)').then(
      () => undefined,
      (err: { code?: string }) => err.code,
    );
    await sleep(300);
    registries[1].cancel(key.processId, key.secretKey);
    expect(await running).toBe(CANCELED);
    // A key of no client cancels nothing, wherever it lands.
    registries[1].unregister(key);
    registries[0].unregister(key);
    expect(registries[0].size).toBe(0);
    await backend.end();
    for (const r of registries) await r.close();
  });
});

describe('pgbouncer.ini [peers]', () => {
  const ini = (peers: string[], extra: string[] = []) =>
    ['[databases]', 'appdb = host=127.0.0.1 port=5432', '[pgbouncer]', 'peer_id = 1', ...extra, '[peers]', ...peers, ''].join('\n');

  it('loads as PgBouncer reads it: peer_id, host (or a Unix-socket directory), port and pool_size', () => {
    const { config, ignored } = pgbouncerIniToConfig(ini(['1 = host=/tmp/pgbouncer1', '2 = host=10.0.0.2 port=6433 pool_size=4']), 'pgbouncer.ini');
    expect(ignored).not.toContain('[peers]');
    const parsed = ConfigSchema.parse(config);
    expect(parsed.peer_id).toBe(1);
    expect(parsed.peers).toEqual({ 1: { host: '/tmp/pgbouncer1', port: 6432 }, 2: { host: '10.0.0.2', port: 6433, pool_size: 4 } });
  });

  it('is read as strictly as the rest of the file', () => {
    const problems = (peers: string[], extra: string[] = []) => {
      try {
        pgbouncerIniToConfig(ini(peers, extra), 'pgbouncer.ini');
        return [];
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as ConfigError).message.split('\n');
      }
    };
    expect(problems(['1 = host=a pool_sise=3'])).toEqual(expect.arrayContaining([expect.stringMatching(/unknown parameter in \[peers\] 1 "pool_sise", did you mean "pool_size"\?/)]));
    expect(problems(['x = host=a'])).toEqual(expect.arrayContaining([expect.stringMatching(/peer_id = "x": expected an integer/)]));
    expect(problems(['20000 = host=a'])).toEqual(expect.arrayContaining([expect.stringMatching(/\[peers\] 20000: expected a peer_id 1-16383/)]));
    expect(problems(['2 = host=a port=six'])).toEqual(expect.arrayContaining([expect.stringMatching(/port = "six": expected an integer/)]));
    expect(problems(['2 = host=a port=70000'])).toEqual(expect.arrayContaining([expect.stringMatching(/port = 70000: expected 1-65535/)]));
    expect(problems(['2 = port=6432'])).toEqual(expect.arrayContaining([expect.stringMatching(/\[peers\] 2: host is required/)]));
    expect(problems(['2 = host=a pool_size=0'])).toEqual(expect.arrayContaining([expect.stringMatching(/pool_size = 0: expected 1 or more/)]));
    // peer_id is read as PgBouncer reads it, and checked as the schema says.
    expect(() => ConfigSchema.parse(pgbouncerIniToConfig(ini([], ['peer_id = 16384']), 'pgbouncer.ini').config)).toThrow();
  });

  it('--peer and PGMUX_PEERS give [peers] entries as id=host:port, added to the file\'s', async () => {
    const { config } = await loadConfig(['--peer', '2=10.0.0.2:6433', '--peer', '3=/run/pgmux-3:6433,4=[::1]:7000', '--peer-id', '1'], { PGMUX_PEERS: '5=db5', PGMUX_CANCEL_STORE: 'redis://:pw@127.0.0.1:6379/2' });
    expect(config.peer_id).toBe(1);
    expect(config.peers).toEqual({
      2: { host: '10.0.0.2', port: 6433 },
      3: { host: '/run/pgmux-3', port: 6433 },
      4: { host: '::1', port: 7000 },
      5: { host: 'db5', port: 6432 },
    });
    expect(config.cancel_store).toBe('redis://:pw@127.0.0.1:6379/2');
    await expect(loadConfig(['--peer', 'db5'], {})).rejects.toThrow(/--peer: expected peer_id=host:port/);
    await expect(loadConfig(['--peer', '2=a:six'], {})).rejects.toThrow(/peers\.2\.port.*from --peer/);
  });

  it('the TOML form is checked too: a peer_id out of range, an unknown key', () => {
    expect(() => ConfigSchema.parse({ peers: { 0: { host: 'a' } } })).toThrow(/peer_id/);
    expect(() => ConfigSchema.parse({ peers: { 2: { host: 'a', prot: 1 } } })).toThrow();
    expect(() => ConfigSchema.parse({ cancel_store: 'http://x' })).toThrow(/redis:\/\//);
  });
});
