import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { LocalCluster } from '../src/embedded/cluster.ts';
import { getCluster } from './cluster-context.ts';

/** Runs one query as `user` on a server and returns the rows. */
async function queryAs(node: { host: string; port: number }, user: string, password: string, sql: string, database = 'postgres'): Promise<any[]> {
  const client = new pg.Client({ host: node.host, port: node.port, user, password, database });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

// The harness's own methods (waitForReplicas, stop) live in the process that
// started the cluster, so they are checked on a private cluster.
describe('LocalCluster', () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ replicas: 1 });
  });
  afterAll(() => cluster?.stop());

  it('starts a primary that answers and a replica in recovery', async () => {
    expect(await cluster.query('SELECT pg_is_in_recovery() AS rec')).toEqual([{ rec: false }]);
    expect(await cluster.query('SELECT pg_is_in_recovery() AS rec', [], cluster.replicas[0])).toEqual([{ rec: true }]);
  });

  it('replays a row written on the primary on the replica after waitForReplicas', async () => {
    await cluster.query('CREATE TABLE t (v text)');
    await cluster.query('INSERT INTO t VALUES ($1)', ['written on the primary']);
    await cluster.waitForReplicas();
    expect(await cluster.query('SELECT v FROM t', [], cluster.replicas[0])).toEqual([{ v: 'written on the primary' }]);
  });

  it('creates SCRAM login roles that node-postgres can log in as', async () => {
    const verifier = await cluster.createRole('bob', "it's secret");
    expect(verifier).toMatch(/^SCRAM-SHA-256\$4096:/);
    expect(await queryAs(cluster.primary, 'bob', "it's secret", 'SELECT current_user AS u')).toEqual([{ u: 'bob' }]);
    const url = new URL(cluster.url(cluster.primary, 'bob', "it's secret"));
    expect(decodeURIComponent(url.password)).toBe("it's secret");
  });

  it('stops idempotently and removes its directory', async () => {
    await cluster.stop();
    await cluster.stop();
    expect(existsSync(cluster.baseDir)).toBe(false);
  });
});

describe('shared test cluster (global setup)', () => {
  const c = getCluster();

  it('has a primary and one streaming replica', async () => {
    const su = (node: { host: string; port: number }, sql: string) => queryAs(node, c.superuser, c.superuserPassword, sql);
    expect(await su(c.primary, 'SELECT pg_is_in_recovery() AS rec')).toEqual([{ rec: false }]);
    expect(c.replicas).toHaveLength(1);
    expect(await su(c.replicas[0], 'SELECT pg_is_in_recovery() AS rec')).toEqual([{ rec: true }]);
    expect(await su(c.primary, 'SELECT count(*)::int AS n FROM pg_stat_replication')).toEqual([{ n: 1 }]);
  });

  it('lets role app log in with SCRAM to its database appdb, on primary and replica', async () => {
    expect(c.roles.app.verifier).toMatch(/^SCRAM-SHA-256\$4096:/);
    for (const node of [c.primary, c.replicas[0]]) {
      const rows = await queryAs(node, 'app', c.roles.app.password, 'SELECT current_user AS u, current_database() AS db', 'appdb');
      expect(rows).toEqual([{ u: 'app', db: 'appdb' }]);
    }
    await expect(queryAs(c.primary, 'app', 'wrong', 'SELECT 1')).rejects.toThrow(/password authentication failed/);
    expect(await queryAs(c.primary, 'other', c.roles.other.password, 'SELECT current_user AS u')).toEqual([{ u: 'other' }]);
  });
});
