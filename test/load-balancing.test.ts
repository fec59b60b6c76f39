import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import pino from 'pino';
import postgres from 'postgres';
import { LocalCluster, type NodeInfo } from '../src/embedded/cluster.ts';
import { sleep, startPgmux, type RunningPgmux } from './helpers/pgmux.ts';
import { pgbench } from './helpers/clients.ts';
import { getCluster } from './cluster-context.ts';

const exec = promisify(execFile);
const PG_CTL = '/usr/lib/postgresql/15/bin/pg_ctl';

/** pg_ctl on a node's data directory, as the postgres OS user when run as root. */
async function pgCtl(node: NodeInfo, ...args: string[]): Promise<void> {
  const cmd = [PG_CTL, '-D', node.dataDir, '-w', ...args];
  if (process.getuid?.() === 0) await exec('runuser', ['-u', 'postgres', '--', ...cmd]);
  else await exec(cmd[0], cmd.slice(1));
}

/** Transactions committed in database appdb on each node. */
async function commits(cluster: LocalCluster): Promise<number[]> {
  const nodes = [cluster.primary, ...cluster.replicas];
  return Promise.all(
    nodes.map(async (n) => {
      const rows = await cluster.query("SELECT xact_commit::bigint AS n FROM pg_stat_database WHERE datname = 'appdb'", [], n);
      return Number(rows[0].n);
    }),
  );
}

/** Polls `f` until it returns true, up to `ms`. */
async function eventually(f: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(200);
  }
}

describe('reads over a primary and two streaming replicas', () => {
  let cluster: LocalCluster;
  let nodes: string[];
  /** The per-node statement lines, with the worker process that wrote each (none: pgmux in this process). */
  const traces: { msg: string; worker?: number }[] = [];
  let pgmux: RunningPgmux;

  const start = (overrides: Record<string, unknown> = {}, logger?: pino.Logger) => {
    const c = getCluster();
    return startPgmux(
      {
        endpoints: { main: { nodes, weights: [1, 1, 2] } },
        users: { app: { password: c.roles.app.password }, postgres: { password: cluster.superuserPassword } },
        health_check_user: 'postgres',
        health_check_period: 0.5,
        health_check_timeout: 1,
        health_check_max_retries: 0,
        ...overrides,
      },
      { logger },
    );
  };

  beforeAll(async () => {
    cluster = await LocalCluster.start({ replicas: 2, settings: { log_statement: 'all' }, replicaSettings: [{}, { recovery_min_apply_delay: '2s' }] });
    const c = getCluster();
    await cluster.query(`CREATE ROLE app LOGIN PASSWORD '${c.roles.app.password}'`);
    await cluster.query('CREATE DATABASE appdb OWNER app');
    nodes = [cluster.primary, ...cluster.replicas].map((n) => `postgresql://${n.host}:${n.port}`);
    const appdb = (n: NodeInfo = cluster.primary) => cluster.url(n, cluster.superuser, undefined, 'appdb');
    await pgbench(['-i', '-s', '1', '-q', appdb()]);
    const admin = new pg.Client({ connectionString: appdb() });
    await admin.connect();
    await admin.query(`GRANT ALL ON ALL TABLES IN SCHEMA public TO app;
      CREATE TABLE ryw (id int PRIMARY KEY, v text); GRANT ALL ON ryw TO app;
      CREATE TABLE bumps (n int); GRANT ALL ON bumps TO app;
      CREATE FUNCTION bump() RETURNS int VOLATILE LANGUAGE sql AS 'INSERT INTO bumps VALUES (1) RETURNING n';
      CREATE FUNCTION port_of_node() RETURNS int STABLE LANGUAGE sql AS 'SELECT inet_server_port()';
      CREATE SEQUENCE sneaky_seq; GRANT USAGE ON sneaky_seq TO app;
      CREATE FUNCTION sneaky() RETURNS bigint STABLE LANGUAGE plpgsql AS $$ BEGIN RETURN nextval('sneaky_seq'); END $$;`);
    await admin.end();
    await cluster.waitForReplicas();
    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const line of chunk.toString().split('\n')) if (line.includes('statement:')) traces.push(JSON.parse(line));
        cb();
      },
    });
    pgmux = await start({ pool_mode: 'transaction', load_balance: 'statement', log_per_node_statement: true }, pino({ level: 'info' }, sink));
  }, 120_000);

  afterAll(async () => {
    await pgmux?.stop();
    await cluster?.stop();
  });

  it('spreads pgbench -S over the nodes by weight, within 10 %', async () => {
    // Backends report their statistics when they exit at the latest: this
    // pgmux's server connections end with it, before the counts are read.
    const own = await start({ pool_mode: 'transaction', load_balance: 'statement' });
    const before = await commits(cluster);
    const r = await pgbench(['-S', '-c', '20', '-j', '2', '-T', '10', '-n', own.url()]);
    await own.stop();
    expect(r.failed).toBe(0);
    await sleep(1000);
    const after = await commits(cluster);
    const per = after.map((a, i) => a - before[i]);
    const total = per.reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThan(r.processed * 0.9);
    const shares = per.map((n) => n / total);
    [0.25, 0.25, 0.5].forEach((want, i) => expect(Math.abs(shares[i] - want), `shares ${shares.join(', ')}`).toBeLessThan(0.1 * want + 0.02));
  }, 60_000);

  it('sends Parse, Bind, Execute and Sync of each statement to one node, and no Sync alone', async () => {
    traces.length = 0;
    const clients = await Promise.all(Array.from({ length: 6 }, () => new pg.Client({ connectionString: pgmux.url() })));
    await Promise.all(clients.map((c) => c.connect()));
    for (let i = 0; i < 20; i++) await Promise.all(clients.map((c) => c.query('SELECT $1::int AS n', [i])));
    await Promise.all(clients.map((c) => c.end()));
    const parsed = () => traces.map((t) => ({ worker: t.worker, m: /^node (\d+) statement: (\w+)/.exec(t.msg)! }));
    // One Sync for each query; worker processes' lines come over a pipe, maybe after the answers.
    await vi.waitFor(() => expect(parsed().filter((l) => l.m[2] === 'Sync').length).toBeGreaterThanOrEqual(6 * 20), { timeout: 10_000 });
    const lines = parsed();
    // Each Sync closes a batch whose every message went to the Sync's node: a
    // process's batches, as it wrote them (worker processes write theirs in turns).
    const batches = new Map<number | undefined, RegExpExecArray[]>();
    const usedNodes = new Set<string>();
    for (const { worker, m: l } of lines) {
      const batch = batches.get(worker) ?? [];
      batches.set(worker, batch);
      batch.push(l);
      if (l[2] !== 'Sync') continue;
      expect(batch.length, batch.map((b) => b[0]).join(' | ')).toBeGreaterThan(1);
      expect(new Set(batch.map((b) => b[1])).size).toBe(1);
      usedNodes.add(l[1]);
      batch.length = 0;
    }
    expect(usedNodes.size).toBeGreaterThan(1);
  });

  it('runs pgbench TPC-B on the primary only, and a VOLATILE function in a SELECT too', async () => {
    const r = await pgbench(['-c', '4', '-T', '3', '-n', pgmux.url()]);
    expect(r.failed).toBe(0);
    expect(r.processed).toBeGreaterThan(0);
    const c = new pg.Client({ connectionString: pgmux.url() });
    await c.connect();
    for (let i = 0; i < 30; i++) await c.query('SELECT bump()');
    const ports = new Set<number>();
    for (let i = 0; i < 30; i++) ports.add((await c.query('SELECT port_of_node() AS p')).rows[0].p);
    await c.end();
    expect(ports.size).toBeGreaterThan(1);
    // A replica would have refused the INSERT inside bump() with 25006.
    const admin = new pg.Client({ connectionString: cluster.url(cluster.primary, cluster.superuser, undefined, 'appdb') });
    await admin.connect();
    expect(Number((await admin.query('SELECT count(*) AS n FROM bumps')).rows[0].n)).toBe(30);
    await admin.end();
  });

  it('reads your own writes even from a replica 2 s behind, and still reads from replicas', async () => {
    const delayed = await start({ pool_mode: 'transaction', endpoints: { main: { nodes: [nodes[0], nodes[2]], weights: [0, 1] } } });
    try {
      const c = new pg.Client({ connectionString: delayed.url() });
      await c.connect();
      // Before any write this client reads from the replica.
      expect((await c.query('SELECT inet_server_port() AS p')).rows[0].p).toBe(cluster.replicas[1].port);
      let seen = 0;
      for (let i = 0; i < 500; i++) {
        await c.query('INSERT INTO ryw VALUES ($1, $2)', [i, `row ${i}`]);
        const r = await c.query('SELECT v FROM ryw WHERE id = $1', [i]);
        if (r.rows[0]?.v === `row ${i}`) seen++;
      }
      expect(seen).toBe(500);
      await c.end();
      const fresh = new pg.Client({ connectionString: delayed.url() });
      await fresh.connect();
      expect((await fresh.query('SELECT inet_server_port() AS p')).rows[0].p).toBe(cluster.replicas[1].port);
      await fresh.end();
    } finally {
      await delayed.stop();
    }
  }, 60_000);

  it('re-runs on the primary, unseen, a read that a replica refuses with 25006', async () => {
    // Declared STABLE, yet it calls nextval: a replica refuses it.
    const c = new pg.Client({ connectionString: pgmux.url() });
    await c.connect();
    const values: number[] = [];
    for (let i = 0; i < 20; i++) values.push(Number((await c.query('SELECT sneaky() AS v')).rows[0].v));
    for (let i = 0; i < 20; i++) values.push(Number((await c.query({ name: 'sneaky', text: 'SELECT sneaky() AS v' })).rows[0].v));
    expect(values).toEqual([...values].sort((a, b) => a - b));
    expect(new Set(values).size).toBe(40);
    // Reads that go well on replicas are not held back: they still land there.
    const ports = new Set<number>();
    for (let i = 0; i < 30; i++) ports.add((await c.query('SELECT inet_server_port() AS p')).rows[0].p);
    expect(ports.size).toBeGreaterThan(1);
    await c.end();
  });

  it('re-runs a refused read unseen also when the connection first gets the client\'s settings', async () => {
    // Two clients of different settings take turns: the connection each is
    // lent was the other's, so pgmux sets the client's settings on it first,
    // a query of its own just ahead of the read the replica refuses.
    const a = new pg.Client({ connectionString: `${pgmux.url()}?application_name=alpha` });
    const b = new pg.Client({ connectionString: `${pgmux.url()}?application_name=beta` });
    await Promise.all([a.connect(), b.connect()]);
    try {
      const values: number[] = [];
      for (let i = 0; i < 20; i++) {
        const c = i % 2 === 0 ? a : b;
        const r = (await c.query("SELECT sneaky() AS v, current_setting('application_name') AS app")).rows[0];
        expect(r.app).toBe(i % 2 === 0 ? 'alpha' : 'beta');
        values.push(Number(r.v));
      }
      expect(new Set(values).size).toBe(20);
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  });

  it('returns the results of a pipeline of reads and writes in order', async () => {
    const sql = postgres(pgmux.url(), { max: 1 });
    try {
      await sql`DELETE FROM ryw WHERE id >= 10000`;
      const ops = Array.from({ length: 60 }, (_, i) =>
        i % 3 === 0 ? sql`INSERT INTO ryw VALUES (${10000 + i}, ${'p' + i}) RETURNING id` : sql`SELECT ${i}::int AS i, inet_server_port() AS port`,
      );
      const out = await Promise.all(ops);
      out.forEach((r, i) => {
        if (i % 3 === 0) expect(r[0].id).toBe(10000 + i);
        else expect(r[0].i).toBe(i);
      });
    } finally {
      await sql.end();
    }
  });

  it('keeps serving while a replica stops, and uses it again once it is back', async () => {
    const replica = cluster.replicas[0];
    // pgbench exits non-zero when a client aborts: keep its output either way.
    const bench = pgbench(['-S', '-c', '8', '-j', '2', '-T', '8', '-n', pgmux.url()]).catch((e: { stdout?: string }) => ({
      stdout: e.stdout ?? '',
      failed: 0,
      processed: Number(/actually processed: (\d+)/.exec(e.stdout ?? '')?.[1] ?? 0),
    }));
    await sleep(2000);
    await pgCtl(replica, 'stop', '-m', 'fast');
    const r = await bench;
    expect(r.processed).toBeGreaterThan(100);
    // Those aborted were at most the clients with a statement on that replica.
    const aborted = (r.stdout.match(/aborted/g) ?? []).length;
    expect(aborted).toBeLessThanOrEqual(8);
    await pgCtl(replica, 'start', '-l', path.join(replica.dataDir, '..', 'restart.log'));
    const c = new pg.Client({ connectionString: pgmux.url() });
    await c.connect();
    await eventually(async () => {
      const ports = new Set<number>();
      for (let i = 0; i < 40; i++) ports.add((await c.query('SELECT inet_server_port() AS p')).rows[0].p);
      return ports.has(replica.port);
    }, 40_000);
    await c.end();
  }, 90_000);
});

