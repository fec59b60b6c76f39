import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { LocalCluster } from '../src/embedded/cluster.ts';
import { sleep, startPgmux } from './helpers/pgmux.ts';
import { pgbench, psql } from './helpers/clients.ts';
import { tempDir } from './helpers/temp.ts';

describe('limits', () => {
  it('refuses an address after auth_failure_limit failed logins, whatever the user or password', async () => {
    const pgmux = await startPgmux({ auth_failure_limit: 3 });
    try {
      for (let i = 0; i < 3; i++) await expect(psql(pgmux.url('app', 'appdb', `wrong-${i}`), 'SELECT 1')).rejects.toThrow(/password authentication failed/);
      await expect(psql(pgmux.url(), 'SELECT 1')).rejects.toThrow(/too many failed logins from this address/);
      await expect(psql(pgmux.url('nobody', 'appdb', 'x'), 'SELECT 1')).rejects.toThrow(/too many failed logins from this address/);
    } finally {
      await pgmux.stop();
    }
  });

  it('enforces max_user_client_conn per user and max_client_conn overall', async () => {
    const pgmux = await startPgmux({ max_user_client_conn: 2, max_client_conn: 3 });
    try {
      const held = [new pg.Client({ connectionString: pgmux.url() }), new pg.Client({ connectionString: pgmux.url() })];
      await Promise.all(held.map((c) => c.connect()));
      await expect(psql(pgmux.url(), 'SELECT 1')).rejects.toThrow(/client connections exceeded \(max_user_client_connections\)/);
      const other = new pg.Client({ connectionString: pgmux.url('other') });
      await other.connect();
      await expect(psql(pgmux.url('other'), 'SELECT 1')).rejects.toThrow(/no more connections allowed \(max_client_conn\)/);
      await Promise.all([...held, other].map((c) => c.end()));
    } finally {
      await pgmux.stop();
    }
  });

  it('500 clients over a pool of 10 in transaction mode: no errors', async () => {
    const pgmux = await startPgmux({ pool_mode: 'transaction', default_pool_size: 10, max_client_conn: 600 });
    try {
      const dir = await tempDir('pgmux-load-');
      const script = path.join(dir, 'txn.sql');
      await writeFile(script, 'BEGIN;\nSELECT pg_backend_pid();\nCOMMIT;\n');
      const r = await pgbench(['-f', script, '-c', '500', '-j', '2', '-T', '5', '-n', pgmux.url()]).catch((e: { stdout?: string; stderr?: string }) => ({
        failed: -1,
        processed: 0,
        stdout: e.stdout ?? '',
        stderr: e.stderr ?? '',
      }));
      expect(r.failed, r.stderr).toBe(0);
      expect(r.processed).toBeGreaterThan(500);
    } finally {
      await pgmux.stop();
    }
  }, 60_000);
});

describe('no cross-tenant reuse', () => {
  const users = ['u1', 'u2', 'u3'];
  const dbs = ['d1', 'd2'];
  const clusters: LocalCluster[] = [];
  let userlist = '';

  beforeAll(async () => {
    const lines: string[] = [];
    for (const name of ['A', 'B']) {
      const c = await LocalCluster.start({});
      clusters.push(c);
      for (const u of users) {
        const verifier = await c.createRole(u, `${u}-secret`);
        if (name === 'A') lines.push(`"${u}" "${verifier}"`);
      }
      for (const d of dbs) {
        await c.query(`CREATE DATABASE ${d}`);
        const admin = new pg.Client({ connectionString: c.url(c.primary, c.superuser, undefined, d) });
        await admin.connect();
        await admin.query(`CREATE TABLE marker (v text); INSERT INTO marker VALUES ('${name}-${d}'); GRANT SELECT ON marker TO ${users.join(', ')}`);
        await admin.end();
      }
    }
    const dir = await tempDir('pgmux-tenants-');
    userlist = path.join(dir, 'userlist.txt');
    await writeFile(userlist, lines.join('\n') + '\n', { mode: 0o600 });
  }, 60_000);
  afterAll(async () => {
    await Promise.all(clusters.map((c) => c.stop()));
  });

  it('10,000 randomly interleaved transactions of 3 users on 2 endpoints and 2 databases each run as their own user, on their own endpoint and database', async () => {
    const node = (c: LocalCluster) => `postgresql://${c.primary.host}:${c.primary.port}`;
    const pgmux = await startPgmux({
      endpoints: { 'ep-a': { nodes: [node(clusters[0])] }, 'ep-b': { nodes: [node(clusters[1])] } },
      auth_file: userlist,
      users: Object.fromEntries(users.map((u) => [u, { password: `${u}-secret` }])),
      pool_mode: 'transaction',
      default_pool_size: 2,
    });
    try {
      const combos = users.flatMap((u) => ['ep-a', 'ep-b'].flatMap((ep) => dbs.map((d) => ({ u, ep, d }))));
      const clients = await Promise.all(
        combos.map(async ({ u, ep, d }) => {
          const c = new pg.Client({ connectionString: `postgresql://${u}:${u}-secret@127.0.0.1:${pgmux.port}/${d}?options=${encodeURIComponent(`endpoint=${ep}`)}` });
          await c.connect();
          return { c, want: [u, d, `${ep === 'ep-a' ? 'A' : 'B'}-${d}`] };
        }),
      );
      const wrong: string[] = [];
      let done = 0;
      await Promise.all(
        clients.map(async ({ c, want }) => {
          while (done < 10_000) {
            done++;
            const r = (await c.query('SELECT current_user AS u, current_database() AS d, (SELECT v FROM marker) AS m')).rows[0];
            if (r.u !== want[0] || r.d !== want[1] || r.m !== want[2]) wrong.push(`${want.join('/')} got ${r.u}/${r.d}/${r.m}`);
            if (Math.random() < 0.05) await sleep(1);
          }
        }),
      );
      expect(done).toBeGreaterThanOrEqual(10_000);
      expect(wrong).toEqual([]);
      await Promise.all(clients.map(({ c }) => c.end()));
    } finally {
      await pgmux.stop();
    }
  }, 60_000);
});
