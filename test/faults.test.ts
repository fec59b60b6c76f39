import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import pg from 'pg';
import { LocalCluster } from '../src/embedded/cluster.ts';
import { onPrimary, sleep, startPgmux, type RunningPgmux } from './helpers/pgmux.ts';
import { RawClient, psql } from './helpers/clients.ts';
import { query } from '../src/protocol/messages.ts';
import { getCluster } from './cluster-context.ts';

const exec = promisify(execFile);

describe('faults on the shared cluster', () => {
  let pgmux: RunningPgmux;
  beforeAll(async () => {
    pgmux = await startPgmux({ pool_mode: 'transaction', default_pool_size: 3, server_connect_timeout: 1 });
  });
  afterAll(async () => {
    await pgmux.stop();
    await sleep(100);
  });

  it('a backend killed while serving a query: that client gets the server\'s error, a healthy one goes on, the pool recovers', async () => {
    const victim = new pg.Client({ connectionString: pgmux.url() });
    victim.on('error', () => {});
    const healthy = new pg.Client({ connectionString: pgmux.url() });
    await Promise.all([victim.connect(), healthy.connect()]);
    const running = victim.query('SELECT pg_sleep(30)').then(
      () => null,
      (e: { code?: string; message: string }) => e.code ?? e.message,
    );
    await sleep(300);
    const [row] = await onPrimary<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'");
    await onPrimary('SELECT pg_terminate_backend($1)', [row.pid]);
    expect(await running).toMatch(/57P01|terminat/);
    for (let i = 0; i < 20; i++) expect((await healthy.query('SELECT $1::int AS i', [i])).rows[0].i).toBe(i);
    await healthy.end();
    const after = await onPrimary<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'app' AND state <> 'idle'");
    expect(after[0].n).toBe(0);
  });

  it('an endpoint whose port is closed, and one that accepts but never answers, fail fast with a clear error', async () => {
    const silent = net.createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const closedPort = await new Promise<number>((r) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => r(p));
      });
    });
    const c = getCluster();
    const bad = await startPgmux({
      endpoints: {
        main: { nodes: [`postgresql://${c.primary.host}:${c.primary.port}`] },
        closed: { nodes: [`postgresql://127.0.0.1:${closedPort}`] },
        silent: { nodes: [`postgresql://127.0.0.1:${(silent.address() as net.AddressInfo).port}`] },
      },
      default_endpoint: 'main',
      users: { app: { password: c.roles.app.password } },
      server_connect_timeout: 1,
      pool_mode: 'transaction',
    });
    try {
      const url = (ep: string) => `${bad.url()}?options=${encodeURIComponent(`endpoint=${ep}`)}`;
      await expect(psql(url('closed'), 'SELECT 1')).rejects.toThrow(/could not connect to server|ECONNREFUSED/);
      const started = Date.now();
      await expect(psql(url('silent'), 'SELECT 1')).rejects.toThrow(/timed out/);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(await psql(url('main'), 'SELECT 1')).toBe('1');
    } finally {
      await bad.stop();
      silent.close();
    }
  });

  it('clients that vanish mid-pipeline and mid-COPY leave no server connection behind', async () => {
    await onPrimary('DROP TABLE IF EXISTS vanish; CREATE TABLE vanish (v text); GRANT ALL ON vanish TO app', [], 'appdb');
    for (const script of ['pipeline', 'copy']) {
      const c = new pg.Client({ connectionString: pgmux.url() });
      c.on('error', () => {});
      await c.connect();
      if (script === 'pipeline') {
        for (let i = 0; i < 20; i++) c.query('SELECT pg_sleep(0.05)').catch(() => {});
      } else {
        await c.query('BEGIN');
        c.query("COPY vanish FROM STDIN").catch(() => {});
      }
      await sleep(100);
      (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    }
    await sleep(2500);
    const rows = await onPrimary<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'app' AND state <> 'idle'");
    expect(rows[0].n).toBe(0);
    expect(await psql(pgmux.url(), 'SELECT count(*) FROM vanish')).toBe('0');
  });
});

describe('a server that half-writes a message and stalls', () => {
  it('holds only its own client; when that client leaves the connection is cancelled, then closed, never reused', async () => {
    // A PostgreSQL lookalike: logs anyone in, then answers a query with the
    // first three bytes of a RowDescription and nothing more.
    const closed: number[] = [];
    let opened = 0;
    const fake = net.createServer((sock) => {
      const n = ++opened;
      let started = false;
      sock.on('data', (d: Buffer) => {
        if (!started) {
          started = true;
          if (d.length >= 8 && d.readInt32BE(4) === 80877102) return void sock.end(); // CancelRequest
          const ok = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]);
          const key = Buffer.from([0x4b, 0, 0, 0, 12, 0, 0, 0, n, 0, 0, 0, 7]);
          const ready = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);
          sock.write(Buffer.concat([ok, key, ready]));
          return;
        }
        if (d[0] === 0x51) sock.write(Buffer.from([0x54, 0, 0]));
      });
      sock.on('close', () => closed.push(n));
      sock.on('error', () => {});
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    const c = getCluster();
    const pgmux = await startPgmux({
      endpoints: {
        main: { nodes: [`postgresql://${c.primary.host}:${c.primary.port}`] },
        halfway: { nodes: [`postgresql://127.0.0.1:${(fake.address() as net.AddressInfo).port}`] },
      },
      default_endpoint: 'main',
      auth_type: 'trust',
      users: { app: { password: c.roles.app.password } },
      pool_mode: 'transaction',
      default_pool_size: 2,
      // pgmux waits max(this, 5 s) for a cancelled statement's answers.
      server_connect_timeout: 2,
    });
    try {
      const stuck = await RawClient.login(pgmux.port, 'app', 'appdb', [['options', 'endpoint=halfway']]);
      stuck.write(query('SELECT 1'));
      await sleep(300);
      // Others on another endpoint do not notice.
      expect(await psql(pgmux.url('app', 'appdb', ''), 'SELECT 7')).toBe('7');
      stuck.close();
      for (let i = 0; i < 100 && !closed.includes(1); i++) await sleep(100);
      expect(closed).toContain(1);
      // The next client of that endpoint gets a fresh connection, not the broken one.
      const next = await RawClient.login(pgmux.port, 'app', 'appdb', [['options', 'endpoint=halfway']]);
      next.write(query('SELECT 1'));
      await sleep(300);
      expect(opened).toBeGreaterThanOrEqual(3);
      next.close();
    } finally {
      await pgmux.stop();
      fake.close();
    }
  }, 30_000);
});

describe('a backend that stalls (SIGSTOP)', () => {
  it('stalls only its own client; others are served, waiters give up after query_wait_timeout, and it resumes on SIGCONT', async () => {
    const pgmux = await startPgmux({ pool_mode: 'transaction', default_pool_size: 2, query_wait_timeout: 1 });
    const stalled = new pg.Client({ connectionString: pgmux.url() });
    const holder = new pg.Client({ connectionString: pgmux.url() });
    const others = new pg.Client({ connectionString: pgmux.url() });
    for (const c of [stalled, holder, others]) c.on('error', () => {});
    await Promise.all([stalled.connect(), holder.connect(), others.connect()]);
    await stalled.query('BEGIN');
    const pid = (await stalled.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    process.kill(pid, 'SIGSTOP');
    try {
      const hung = stalled.query('SELECT 1 AS one');
      // The other server connection serves everyone else.
      for (let i = 0; i < 10; i++) expect((await others.query('SELECT $1::int AS i', [i])).rows[0].i).toBe(i);
      // With it held too, the next client waits, then gets query_wait_timeout.
      await holder.query('BEGIN');
      await holder.query('SELECT 1');
      await expect(others.query('SELECT 2')).rejects.toMatchObject({ message: 'query_wait_timeout' });
      await holder.query('COMMIT');
      process.kill(pid, 'SIGCONT');
      expect((await hung).rows[0].one).toBe(1);
      await stalled.query('COMMIT');
    } finally {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // already running again
      }
      await Promise.all([stalled, holder, others].map((c) => c.end().catch(() => {})));
      await pgmux.stop();
    }
  }, 30_000);
});

describe('nothing lost across a primary restart', () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = await LocalCluster.start({});
    const c = getCluster();
    await cluster.query(`CREATE ROLE app LOGIN PASSWORD '${c.roles.app.password}'`);
    await cluster.query('CREATE DATABASE appdb OWNER app');
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('every id whose COMMIT a client saw is in the table exactly once, through backend kills and a primary restart', async () => {
    const c = getCluster();
    const pgmux = await startPgmux({
      endpoints: { main: { nodes: [`postgresql://${cluster.primary.host}:${cluster.primary.port}`] } },
      users: { app: { password: c.roles.app.password } },
      pool_mode: 'transaction',
      default_pool_size: 4,
    });
    const admin = new pg.Client({ connectionString: cluster.url(cluster.primary, cluster.superuser, undefined, 'appdb') });
    await admin.connect();
    await admin.query('CREATE TABLE ids (id int PRIMARY KEY); GRANT ALL ON ids TO app');
    await admin.end();
    const acked: number[] = [];
    let stop = false;
    const worker = async (w: number) => {
      let next = w * 1_000_000;
      while (!stop) {
        const client = new pg.Client({ connectionString: pgmux.url() });
        client.on('error', () => {});
        try {
          await client.connect();
          while (!stop) {
            const id = next++;
            await client.query('BEGIN');
            await client.query('INSERT INTO ids VALUES ($1)', [id]);
            await client.query('COMMIT');
            acked.push(id);
          }
        } catch {
          // Connection lost mid-transaction: whatever was not acknowledged may or may not be there.
        } finally {
          await client.end().catch(() => {});
        }
        await sleep(50);
      }
    };
    const workers = Array.from({ length: 5 }, (_, i) => worker(i));
    await sleep(500);
    // Backends killed under the clients first, then the whole primary restarted.
    const killer = new pg.Client({ connectionString: cluster.url(cluster.primary, cluster.superuser, undefined, 'appdb') });
    await killer.connect();
    for (let i = 0; i < 5; i++) {
      await killer.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app' AND pid IN (SELECT pid FROM pg_stat_activity WHERE usename = 'app' ORDER BY random() LIMIT 1)");
      await sleep(150);
    }
    await killer.end();
    const before = acked.length;
    const ctl = ['/usr/lib/postgresql/15/bin/pg_ctl', '-D', cluster.primary.dataDir, '-w', 'restart', '-m', 'fast', '-l', `${cluster.primary.dataDir}/../restart.log`];
    if (process.getuid?.() === 0) await exec('runuser', ['-u', 'postgres', '--', ...ctl]);
    else await exec(ctl[0], ctl.slice(1));
    await sleep(1500);
    stop = true;
    await Promise.all(workers);
    expect(acked.length).toBeGreaterThan(before);
    const check = new pg.Client({ connectionString: cluster.url(cluster.primary, cluster.superuser, undefined, 'appdb') });
    await check.connect();
    const present = new Set<number>((await check.query('SELECT id FROM ids')).rows.map((r) => r.id));
    const dupes = (await check.query('SELECT count(*) - count(DISTINCT id) AS d FROM ids')).rows[0].d;
    await check.end();
    expect(Number(dupes)).toBe(0);
    expect(acked.filter((id) => !present.has(id))).toEqual([]);
    await pgmux.stop();
  }, 60_000);
});
