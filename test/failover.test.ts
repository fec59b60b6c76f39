import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import pg from 'pg';
import pino from 'pino';
import { LocalCluster, type NodeInfo } from '../src/embedded/cluster.ts';
import { sleep, startPgmux, testWorkers, type RunningPgmux } from './helpers/pgmux.ts';
import { getCluster } from './cluster-context.ts';

const exec = promisify(execFile);

/** pg_ctl on a node's data directory, as the postgres OS user when run as root. */
async function pgCtl(node: NodeInfo, ...args: string[]): Promise<void> {
  const cmd = ['/usr/lib/postgresql/15/bin/pg_ctl', '-D', node.dataDir, '-w', ...args];
  if (process.getuid?.() === 0) await exec('runuser', ['-u', 'postgres', '--', ...cmd]);
  else await exec(cmd[0], cmd.slice(1));
}

/** A logger whose lines (parsed) land in `lines`. */
function capture(lines: { level: number; msg: string; node?: number; endpoint?: string; worker?: number }[]): pino.Logger {
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line));
      cb();
    },
  });
  return pino({ level: 'info' }, sink);
}

const WARN = 40;

/**
 * Each pgmux process checks the nodes itself (each worker, under
 * PGMUX_TEST_WORKERS): the lines of `lines`, at most one a process.
 */
function onceAProcess(lines: { worker?: number }[]): void {
  expect(new Set(lines.map((l) => l.worker)).size).toBe(lines.length);
}
/** The serving node's port, by a read that calls no function (which needs no pg_proc look-up to go to a replica). */
const PORT_SQL = "SELECT setting::int AS p FROM pg_settings WHERE name = 'port'";

describe('a replica that is down, with no health_check_user configured', () => {
  let cluster: LocalCluster;
  let nodes: string[];

  beforeAll(async () => {
    cluster = await LocalCluster.start({ replicas: 1 });
    // The role's SCRAM verifier is the one in pgmux's auth_file: pgmux logs
    // in to the servers with the keys of the clients' own logins, no password.
    const c = getCluster();
    await cluster.query(`CREATE ROLE app LOGIN PASSWORD '${c.roles.app.verifier}'`);
    await cluster.query('CREATE DATABASE appdb OWNER app');
    await cluster.waitForReplicas();
    nodes = [cluster.primary, ...cluster.replicas].map((n) => `postgresql://${n.host}:${n.port}`);
  }, 120_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('serves every read from the primary, takes the replica out of rotation with a warning, and checks bring it back', async () => {
    const replica = cluster.replicas[0];
    await pgCtl(replica, 'stop', '-m', 'fast');
    const lines: { level: number; msg: string; node?: number; worker?: number }[] = [];
    // Reads go to the replica whenever it is usable (weight 0 on the primary).
    const pgmux = await startPgmux({ endpoints: { main: { nodes, weights: [0, 1] } }, admin_users: 'app' }, { logger: capture(lines) });
    try {
      const read = async () => {
        const c = new pg.Client({ connectionString: pgmux.url() });
        await c.connect();
        try {
          const began = performance.now();
          const port = (await c.query(PORT_SQL)).rows[0].p as number;
          return { port, ms: performance.now() - began };
        } finally {
          await c.end();
        }
      };
      // Eight sessions at once, as many as the clients that failed before.
      const reads = await Promise.allSettled(Array.from({ length: 8 }, read));
      const failed = reads.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
      expect(failed).toEqual([]);
      const served = reads.map((r) => (r as PromiseFulfilledResult<{ port: number; ms: number }>).value);
      expect(new Set(served.map((s) => s.port))).toEqual(new Set([cluster.primary.port]));
      console.log(`reads with the replica down: slowest ${Math.max(...served.map((s) => s.ms)).toFixed(1)} ms, median ${served.map((s) => s.ms).sort((a, b) => a - b)[4].toFixed(1)} ms`);
      const down = () => lines.filter((l) => l.level === WARN && l.msg === 'node left rotation');
      // Worker processes' lines come over a pipe, maybe after the answers.
      await vi.waitFor(() => expect(down().length).toBeGreaterThan(0), { timeout: 10_000 });
      expect(down().map((l) => l.node)).toEqual(down().map(() => 1));
      onceAProcess(down());
      // The health checks run as the clients' user, so they also see it come back.
      await pgCtl(replica, 'start', '-l', path.join(replica.dataDir, '..', 'restart.log'));
      let port = 0;
      for (let i = 0; i < 100 && port !== replica.port; i++) {
        await sleep(200);
        port = (await read()).port;
      }
      expect(port).toBe(replica.port);
      await vi.waitFor(() => expect(lines.some((l) => l.level === WARN && l.msg === 'node is back in rotation' && l.node === 1)).toBe(true), { timeout: 10_000 });
      // The admin console's view (of the process it reaches: each worker checks the nodes on its own, so it may see the replica a check later).
      const admin = new pg.Client({ connectionString: pgmux.url('app', 'pgmux') });
      await admin.connect();
      try {
        await vi.waitFor(
          async () => expect((await admin.query('SHOW NODES')).rows.filter((r) => r.endpoint === 'main').map((r) => [r.role, r.status])).toEqual([['primary', 'up'], ['replica', 'up']]),
          { timeout: 20_000, interval: 200 },
        );
      } finally {
        await admin.end();
      }
    } finally {
      await pgmux.stop();
      await pgCtl(replica, 'status').catch(() => pgCtl(replica, 'start', '-l', path.join(replica.dataDir, '..', 'restart.log')));
    }
  }, 60_000);

  it('falls back within one transaction-mode read when the replica stops under a running pgmux', async () => {
    const replica = cluster.replicas[0];
    const pgmux: RunningPgmux = await startPgmux({ endpoints: { main: { nodes, weights: [0, 1] } }, pool_mode: 'transaction', load_balance: 'statement' });
    const c = new pg.Client({ connectionString: pgmux.url() });
    try {
      await c.connect();
      let port = 0;
      for (let i = 0; i < 50 && port !== replica.port; i++) {
        port = (await c.query(PORT_SQL)).rows[0].p;
        if (port !== replica.port) await sleep(200);
      }
      expect(port).toBe(replica.port);
      // Nothing idle to the replica: the next read must connect to it.
      await pgCtl(replica, 'stop', '-m', 'fast');
      const began = performance.now();
      expect((await c.query(PORT_SQL)).rows[0].p).toBe(cluster.primary.port);
      console.log(`first read after the replica stopped: ${(performance.now() - began).toFixed(1)} ms`);
      for (let i = 0; i < 20; i++) expect((await c.query('SELECT $1::int AS i', [i])).rows[0].i).toBe(i);
    } finally {
      await c.end().catch(() => {});
      await pgmux.stop();
      await pgCtl(replica, 'start', '-l', path.join(replica.dataDir, '..', 'restart.log'));
    }
  }, 60_000);

  it('warns at startup when the health checks of a multi-node endpoint cannot log in', async () => {
    const lines: { level: number; msg: string; endpoint?: string; worker?: number }[] = [];
    const pgmux = await startPgmux({ endpoints: { main: { nodes } }, health_check_user: 'nobody' }, { logger: capture(lines) });
    try {
      const warned = lines.filter((l) => l.level === WARN && l.msg.startsWith('health checks cannot log in'));
      // One from each process that checks the nodes: pgmux, or each of its workers.
      expect(warned).toHaveLength(testWorkers);
      onceAProcess(warned);
      for (const w of warned) expect(w.endpoint).toBe('main');
    } finally {
      await pgmux.stop();
    }
  });
});
