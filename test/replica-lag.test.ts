import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { LocalCluster } from '../src/embedded/cluster.ts';
import { PrimaryWal } from '../src/routing/primary-wal.ts';
import { sleep, startPgmux, type RunningPgmux } from './helpers/pgmux.ts';
import { getCluster } from './cluster-context.ts';

describe('replica lag from the primary\'s WAL positions', () => {
  it('is zero once everything is replayed, and after a quiet spell counts from the write, not from the last replay', () => {
    const wal = new PrimaryWal(60_000);
    // Busy, then quiet for 20 s: the primary stays at 1000.
    for (let t = 0; t <= 1000; t += 100) wal.note(BigInt(t), t);
    for (let t = 1100; t <= 21_000; t += 100) wal.note(1000n, t);
    expect(wal.bytesBehind(1000n)).toBe(0);
    expect(wal.secondsBehind(1000n, 21_000)).toBe(0);
    // A write at 21.0 s is seen by the check sent at 21.1 s.
    wal.note(1200n, 21_100);
    expect(wal.bytesBehind(1000n)).toBe(200);
    expect(wal.secondsBehind(1000n, 21_300)).toBeCloseTo(0.2);
    expect(wal.secondsBehind(1200n, 21_300)).toBe(0);
    // A replica still at 500 misses WAL first seen at 0.6 s.
    expect(wal.secondsBehind(500n, 21_300)).toBeCloseTo(20.7);
  });

  it('read-your-writes: the position of the first check sent after a commit', () => {
    const wal = new PrimaryWal(60_000);
    wal.note(100n, 0);
    wal.note(100n, 100);
    // A check sent before the commit may already have seen it; the first one after it did.
    expect(wal.after(150)).toBeUndefined();
    wal.note(100n, 200);
    expect(wal.after(150)).toBe(100n);
    wal.note(300n, 300);
    expect(wal.after(250)).toBe(300n);
  });

  it('forgets old positions, yet a replica behind them still counts as late; a lower position (failover) starts afresh', () => {
    const wal = new PrimaryWal(1000);
    wal.note(100n, 0);
    wal.note(200n, 5000);
    wal.note(300n, 10_000);
    // Written before the forgotten position first seen at 5 s: late by more than the 1 s kept.
    expect(wal.secondsBehind(50n, 10_000)).toBeGreaterThan(1);
    wal.note(40n, 11_000);
    expect(wal.latest()).toBe(40n);
    expect(wal.secondsBehind(40n, 11_000)).toBe(0);
  });
});

describe('a replica after a quiet spell longer than max_replica_lag', () => {
  let cluster: LocalCluster;
  let pgmux: RunningPgmux;

  beforeAll(async () => {
    // The replica applies each transaction 1 s after it commits: long enough
    // to see reads follow the lag.
    cluster = await LocalCluster.start({ replicas: 1, replicaSettings: [{ recovery_min_apply_delay: '1s' }] });
    const c = getCluster();
    await cluster.query(`CREATE ROLE app LOGIN PASSWORD '${c.roles.app.password}'`);
    await cluster.query('CREATE DATABASE appdb OWNER app');
    const admin = new pg.Client({ connectionString: cluster.url(cluster.primary, cluster.superuser, undefined, 'appdb') });
    await admin.connect();
    await admin.query('CREATE TABLE t (n int); GRANT ALL ON t TO app');
    await admin.end();
    await cluster.waitForReplicas();
    pgmux = await startPgmux({
      endpoints: { main: { nodes: [cluster.primary, cluster.replicas[0]].map((n) => `postgresql://${n.host}:${n.port}`), weights: [0, 1] } },
      users: { app: { password: c.roles.app.password }, postgres: { password: cluster.superuserPassword } },
      health_check_user: 'postgres',
      pool_mode: 'transaction',
      load_balance: 'statement',
      max_replica_lag: 0.5,
    });
  }, 120_000);

  afterAll(async () => {
    await pgmux?.stop();
    await cluster?.stop();
  });

  const portOfRead = async () => {
    // A client that never wrote: read-your-writes does not hold it back.
    const c = new pg.Client({ connectionString: pgmux.url() });
    await c.connect();
    try {
      return (await c.query('SELECT inet_server_port() AS p')).rows[0].p as number;
    } finally {
      await c.end();
    }
  };

  it('keeps reads on the replica right after a write, moves them while it is really late, and brings them back once it has replayed', async () => {
    const replica = cluster.replicas[0].port;
    const primary = cluster.primary.port;
    // The cluster's setup ends with a commit the replica applies 1 s late.
    for (let i = 0; i < 50 && (await portOfRead()) !== replica; i++) await sleep(100);
    expect(await portOfRead()).toBe(replica);
    // Quiet for three times max_replica_lag.
    await sleep(1500);
    const writer = new pg.Client({ connectionString: pgmux.url() });
    await writer.connect();
    await writer.query('INSERT INTO t VALUES (1)');
    const wroteAt = Date.now();
    await writer.end();
    // Within max_replica_lag of the write: the replica may serve reads.
    await sleep(200);
    const soon = await portOfRead();
    expect(Date.now() - wroteAt).toBeLessThan(450);
    expect(soon).toBe(replica);
    // 0.5 s and more behind: reads go to the primary…
    await sleep(Math.max(0, wroteAt + 750 - Date.now()));
    expect(await portOfRead()).toBe(primary);
    // …until the replica has replayed the write (1 s after it).
    await sleep(Math.max(0, wroteAt + 1400 - Date.now()));
    expect(await portOfRead()).toBe(replica);
  }, 30_000);
});
