/**
 * workers = 2, real processes: connections land on both workers, pool
 * limits hold for the whole pgmux, grants move to where clients wait, a
 * killed worker is restarted without its neighbour's clients noticing,
 * SIGHUP reaches every worker, and a cancel works whichever worker it
 * lands on.
 */
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { keyOwner } from '../src/session/cancel-key.ts';
import { getCluster } from './cluster-context.ts';
import { onPrimary, sleep } from './helpers/pgmux.ts';
import { startWorkers, type RunningWorkers } from './helpers/workers.ts';

/** The worker serving a connected client: byte 3 of its BackendKeyData. */
function workerOf(client: pg.Client): number {
  const c = client as unknown as { processID: number; secretKey: number };
  return keyOwner({ processId: c.processID, secretKey: c.secretKey }).worker;
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  return client;
}

/** Clients until there are `n` on each of workers 0 and 1 (the kernel spreads connections by their addresses). */
async function clientsOnBoth(url: string, n: number): Promise<[pg.Client[], pg.Client[]]> {
  const on: [pg.Client[], pg.Client[]] = [[], []];
  const extra: pg.Client[] = [];
  for (let i = 0; i < 200 && (on[0].length < n || on[1].length < n); i++) {
    const c = await connect(url);
    const w = workerOf(c);
    if (on[w].length < n) on[w].push(c);
    else extra.push(c);
  }
  await Promise.all(extra.map((c) => c.end()));
  return on;
}

async function backends(): Promise<number> {
  const rows = await onPrimary<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE usename = 'app' AND backend_type = 'client backend'");
  return Number(rows[0].n);
}

describe('two workers', () => {
  let pgmux: RunningWorkers;

  beforeAll(async () => {
    pgmux = await startWorkers(2, ['--pool-mode', 'transaction', '--default-pool-size', '4', '--query-wait-timeout', '20']);
  }, 60_000);
  afterAll(async () => {
    await pgmux?.stop();
  });

  it('both workers accept connections, and say which they are', async () => {
    const [a, b] = await clientsOnBoth(pgmux.url(), 1);
    expect(a).toHaveLength(1);
    expect(b).toHaveLength(1);
    for (const c of [...a, ...b]) expect((await c.query('SELECT 1 AS x')).rows[0].x).toBe(1);
    await Promise.all([...a, ...b].map((c) => c.end()));
    const workers = new Set(pgmux.lines().filter((l) => l.msg === 'listening').map((l) => l.worker));
    expect(workers).toEqual(new Set([0, 1]));
  });

  it('clients waiting on one worker get the connections idle on the other', async () => {
    const [on0, on1] = await clientsOnBoth(pgmux.url(), 4);
    // Worker 0 takes the whole pool: four transactions at once, then idle.
    await Promise.all(on0.map((c) => c.query('BEGIN')));
    await Promise.all(on0.map((c) => c.query('SELECT pg_sleep(0.05)')));
    await Promise.all(on0.map((c) => c.query('COMMIT')));
    expect(await backends()).toBe(4);
    // Worker 1's four clients all need a connection at once: they get worker 0's.
    await Promise.all(on1.map((c) => c.query('BEGIN')));
    await Promise.all(on1.map((c) => c.query('SELECT 1')));
    expect(await backends()).toBeLessThanOrEqual(4);
    await Promise.all(on1.map((c) => c.query('COMMIT')));
    await Promise.all([...on0, ...on1].map((c) => c.end()));
  }, 60_000);

  it('holds default_pool_size over both workers under pgbench -c 20', async () => {
    const { execFile } = await import('node:child_process');
    const { tempDir } = await import('./helpers/temp.ts');
    const dir = await tempDir('pgmux-workers-');
    const script = `${dir}/sleep.sql`;
    await writeFile(script, 'SELECT pg_sleep(0.002);\n');
    let max = 0;
    let running = true;
    const watch = (async () => {
      while (running) {
        max = Math.max(max, await backends());
        await sleep(10);
      }
    })();
    const out = await new Promise<string>((resolve, reject) =>
      execFile('pgbench', ['-n', '-f', script, '-c', '20', '-j', '2', '-T', '5', pgmux.url()], (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout))),
    );
    running = false;
    await watch;
    const processed = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? '0');
    console.log(`pgbench -c 20 through two workers: ${processed} transactions, pg_stat_activity at most ${max} (default_pool_size 4)`);
    expect(processed).toBeGreaterThan(0);
    expect(max).toBeLessThanOrEqual(4);
  }, 60_000);

  it('a cancel of pg_sleep(30) works whichever worker accepts it (100 tries)', async () => {
    let cancelled = 0;
    const servedBy = [0, 0];
    const c = getCluster();
    const monitor = new pg.Client({ host: c.primary.host, port: c.primary.port, user: c.superuser, password: c.superuserPassword, database: 'postgres' });
    await monitor.connect();
    // One client on each worker, each cancelled in turn.
    const [on0, on1] = await clientsOnBoth(pgmux.url(), 1);
    const clients = [on0[0], on1[0]];
    for (let i = 0; i < 100; i++) {
      const client = clients[i % 2];
      const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
      const query = client.query('SELECT pg_sleep(30)').then(
        () => null,
        (err: { code?: string }) => err.code ?? 'no code',
      );
      // A cancel that comes before the statement runs cancels nothing, in PostgreSQL too.
      while (Number((await monitor.query("SELECT count(*) AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'")).rows[0].n) === 0) await sleep(5);
      // A bare CancelRequest on a connection of its own: the kernel picks the worker that accepts it.
      const sock = net.connect(pgmux.port, '127.0.0.1');
      const msg = Buffer.alloc(16);
      msg.writeInt32BE(16, 0);
      msg.writeInt32BE(80877102, 4);
      msg.writeInt32BE(processID, 8);
      msg.writeInt32BE(secretKey, 12);
      await new Promise<void>((resolve) => sock.once('connect', resolve));
      sock.end(msg);
      if ((await query) === '57014') cancelled++;
      servedBy[workerOf(client)]++;
      sock.destroy();
    }
    await Promise.all(clients.map((c) => c.end()));
    await monitor.end();
    console.log(`cancels: ${cancelled} of 100 (clients served by worker 0: ${servedBy[0]}, worker 1: ${servedBy[1]})`);
    expect(cancelled).toBe(100);
    expect(servedBy[0]).toBeGreaterThan(0);
    expect(servedBy[1]).toBeGreaterThan(0);
  }, 120_000);

  it('kill -9 of one worker: its clients drop, the other worker\'s keep working, and it is restarted', async () => {
    const [on0, on1] = await clientsOnBoth(pgmux.url(), 2);
    const victim = pgmux.pids()[1];
    const killedAt = Date.now();
    process.kill(victim, 'SIGKILL');
    for (const c of on1) await expect(c.query('SELECT 1')).rejects.toThrow();
    for (const c of on0) expect((await c.query('SELECT 2 AS x')).rows[0].x).toBe(2);
    const restarted = await pgmux.waitForLine((l) => l.msg === 'worker restarted' && l.worker === 1);
    console.log(`worker 1 restarted ${Date.now() - killedAt} ms after kill -9 (log line at pid ${String(restarted.pid)})`);
    expect(restarted.pid).not.toBe(victim);
    const [again0, again1] = await clientsOnBoth(pgmux.url(), 1);
    expect(again1).toHaveLength(1);
    expect((await again1[0].query('SELECT 3 AS x')).rows[0].x).toBe(3);
    await Promise.all([...on0, ...on1, ...again0, ...again1].map((c) => c.end().catch(() => {})));
  }, 60_000);
});

describe('one server connection between two workers', () => {
  it('goes whole from worker to worker: clients of both see one backend, their prepared statements intact', async () => {
    const pgmux = await startWorkers(2, ['--pool-mode', 'transaction', '--default-pool-size', '1', '--query-wait-timeout', '20']);
    try {
      const [on0, on1] = await clientsOnBoth(pgmux.url(), 2);
      const clients = [...on0, ...on1];
      const pids = new Set<number>();
      // All four at once, 50 times: the one connection serves each in turn,
      // moving between the workers. Both workers number their statements
      // from 1, so a statement one left prepared would collide with the
      // other's (42P05) if it were not deallocated on the way.
      for (let round = 0; round < 50; round++) {
        const results = await Promise.all(
          clients.map((c, i) => c.query({ name: `q${i % 2}`, text: `SELECT pg_backend_pid() AS pid, $1::int + ${i % 2} AS v`, values: [round] })),
        );
        results.forEach((r, i) => {
          expect(r.rows[0].v).toBe(round + (i % 2));
          pids.add(r.rows[0].pid);
        });
      }
      // Handed over rather than closed and opened again: one backend throughout.
      expect(pids.size).toBe(1);
      expect(await backends()).toBe(1);
      await Promise.all(clients.map((c) => c.end()));
    } finally {
      await pgmux.stop();
    }
  }, 120_000);
});

describe('SIGHUP with two workers', () => {
  let pgmux: RunningWorkers;
  let file: string;
  let users: string;

  beforeAll(async () => {
    const { tempDir } = await import('./helpers/temp.ts');
    file = `${await tempDir('pgmux-workers-')}/pgmux.toml`;
    // The password pgmux logs in to the server with once clients are trusted.
    users = `[users.app]\npassword = "${getCluster().roles.app.password}"\n`;
    await writeFile(file, `auth_type = "scram-sha-256"\n${users}`);
    pgmux = await startWorkers(2, ['--config', file]);
  }, 60_000);
  afterAll(async () => {
    await pgmux?.stop();
  });

  it('reaches both workers: a reloaded setting is in effect on each', async () => {
    const wrong = pgmux.url('app', 'appdb', 'not the password');
    await expect(connect(wrong)).rejects.toThrow(/password authentication failed/);
    await writeFile(file, `auth_type = "trust"\n${users}`);
    pgmux.cli.signal('SIGHUP');
    for (const w of [0, 1]) await pgmux.waitForLine((l) => l.msg === 'configuration reloaded' && l.worker === w);
    // Any password now, on either worker.
    const on = [0, 0];
    for (let i = 0; i < 50 && (on[0] === 0 || on[1] === 0); i++) {
      const c = await connect(wrong);
      on[workerOf(c)]++;
      await c.end();
    }
    expect(on[0]).toBeGreaterThan(0);
    expect(on[1]).toBeGreaterThan(0);
  }, 60_000);
});
