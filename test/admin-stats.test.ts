import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { ConfigSchema } from '../src/config/schema.ts';
import { PgmuxServer } from '../src/server.ts';
import { sleep, trustSettings, writeAuthFile } from './helpers/pgmux.ts';
import { getCluster } from './cluster-context.ts';

type Row = Record<string, string>;
const num = (row: Row | undefined, col: string) => Number(row?.[col]);

/** A pgmux whose stats period is `statsPeriodMs` (PgBouncer's stats_period). */
async function startWithPeriod(statsPeriodMs: number, overrides: Record<string, unknown> = {}) {
  const c = getCluster();
  const authFile = await writeAuthFile();
  const config = ConfigSchema.parse({
    listen: '127.0.0.1:0',
    endpoints: { main: { nodes: [`postgresql://${c.primary.host}:${c.primary.port}`] } },
    auth_file: authFile,
    admin_users: 'app',
    ...trustSettings(),
    stats_period: statsPeriodMs / 1000,
    ...overrides,
  });
  const server = new PgmuxServer(config, { logger: pino({ level: 'silent' }) });
  const { port } = await server.start();
  const url = (database: string) => `postgresql://app@127.0.0.1:${port}/${database}`;
  return {
    server,
    url,
    stop: async () => {
      await server.stop();
      await rm(path.dirname(authFile), { recursive: true, force: true });
    },
  };
}

describe('SHOW STATS: each database its own counts', () => {
  let pgmux: Awaited<ReturnType<typeof startWithPeriod>>;
  let admin: pg.Client;
  beforeAll(async () => {
    pgmux = await startWithPeriod(60_000, { default_pool_size: 1 });
    admin = new pg.Client({ connectionString: pgmux.url('pgmux') });
    await admin.connect();
  });
  afterAll(async () => {
    await admin.end();
    await pgmux.stop();
  });

  const statsRows = async (cmd = 'SHOW STATS') => (await admin.query(cmd)).rows as Row[];

  it('rows count their own transactions, queries and bytes, and add up to the process totals', async () => {
    const run = async (database: string, transactions: number) => {
      const c = new pg.Client({ connectionString: pgmux.url(database) });
      await c.connect();
      for (let i = 0; i < transactions; i++) {
        await c.query('BEGIN');
        await c.query('SELECT 1');
        await c.query('COMMIT');
      }
      await c.end();
    };
    await run('appdb', 5);
    await run('postgres', 2);
    await sleep(100);
    const rows = await statsRows();
    const appdb = rows.find((r) => r.database === 'appdb');
    const postgres = rows.find((r) => r.database === 'postgres');
    expect(num(appdb, 'total_xact_count')).toBe(5);
    expect(num(appdb, 'total_query_count')).toBe(15);
    expect(num(postgres, 'total_xact_count')).toBe(2);
    expect(num(postgres, 'total_query_count')).toBe(6);
    expect(num(appdb, 'total_server_assignment_count')).toBe(1);
    expect(num(appdb, 'total_received')).toBeGreaterThan(num(postgres, 'total_received'));
    expect(num(appdb, 'total_xact_time')).toBeGreaterThan(0);
    expect(num(appdb, 'total_query_time')).toBeGreaterThan(0);
    // An exporter adding the rows gets pgmux's own totals.
    const sum = (col: string) => rows.reduce((a, r) => a + num(r, col), 0);
    expect(sum('total_xact_count')).toBe(pgmux.server.ctx.stats.transactions);
    expect(sum('total_query_count')).toBe(pgmux.server.ctx.stats.queries);
    expect(sum('total_received')).toBe(pgmux.server.ctx.stats.bytesIn);
    expect(sum('total_sent')).toBe(pgmux.server.ctx.stats.bytesOut);
  });

  it('total_wait_time is the time clients waited for a server connection', async () => {
    const holder = new pg.Client({ connectionString: pgmux.url('appdb') });
    await holder.connect();
    const before = num((await statsRows()).find((r) => r.database === 'appdb'), 'total_wait_time');
    // The pool has one connection, which holder keeps (session pooling).
    const waiter = new pg.Client({ connectionString: pgmux.url('appdb') });
    const connecting = waiter.connect();
    await sleep(400);
    await holder.end();
    await connecting;
    await waiter.end();
    const waited = num((await statsRows()).find((r) => r.database === 'appdb'), 'total_wait_time') - before;
    expect(waited).toBeGreaterThanOrEqual(350_000);
    expect(waited).toBeLessThan(5_000_000);
  });

  it('STATS_TOTALS has the totals, STATS_AVERAGES the averages, in PgBouncer\'s columns', async () => {
    const totals = await admin.query('SHOW STATS_TOTALS');
    expect(totals.fields.map((f) => f.name)).toEqual([
      'database', 'server_assignment_count', 'xact_count', 'query_count', 'bytes_received', 'bytes_sent', 'xact_time', 'query_time', 'wait_time',
    ]);
    const stats = await statsRows();
    const appdb = (totals.rows as Row[]).find((r) => r.database === 'appdb');
    expect(num(appdb, 'xact_count')).toBe(num(stats.find((r) => r.database === 'appdb'), 'total_xact_count'));
    const averages = await admin.query('SHOW STATS_AVERAGES');
    expect(averages.fields.map((f) => f.name)).toEqual(totals.fields.map((f) => f.name));
    // No period has ended yet: no averages, not the totals again.
    expect(num((averages.rows as Row[]).find((r) => r.database === 'appdb'), 'xact_count')).toBe(0);
  });
});

describe('SHOW STATS_AVERAGES: the last stats period', () => {
  it('per-second rates, and times per query, transaction and assignment', async () => {
    const periodMs = 500;
    const pgmux = await startWithPeriod(periodMs, { pool_mode: 'transaction' });
    const admin = new pg.Client({ connectionString: pgmux.url('pgmux') });
    const client = new pg.Client({ connectionString: pgmux.url('appdb') });
    await Promise.all([admin.connect(), client.connect()]);
    try {
      // Queries of 50 ms one after another for three periods and more.
      const until = Date.now() + periodMs * 3.5;
      while (Date.now() < until) await client.query('SELECT pg_sleep(0.05)');
      const avg = ((await admin.query('SHOW STATS_AVERAGES')).rows as Row[]).find((r) => r.database === 'appdb');
      const rate = num(avg, 'query_count');
      // Each query takes a little over 50 ms: under 20 a second, and some.
      expect(rate).toBeGreaterThan(5);
      expect(rate).toBeLessThanOrEqual(20);
      expect(num(avg, 'xact_count')).toBe(rate);
      expect(num(avg, 'query_time')).toBeGreaterThanOrEqual(50_000);
      expect(num(avg, 'query_time')).toBeLessThan(200_000);
      expect(num(avg, 'xact_time')).toBeGreaterThanOrEqual(50_000);
      expect(num(avg, 'bytes_received')).toBeGreaterThan(0);
      // Transaction pooling lends a connection per transaction, at once here.
      // The lending is counted when a transaction starts and the query when
      // it ends, so one transaction may straddle the period's edge: one
      // transaction in a half-second period is 2 a second either way.
      const assigned = num(avg, 'server_assignment_count');
      expect(Math.abs(assigned - rate)).toBeLessThanOrEqual(2);
      expect(num(avg, 'wait_time')).toBeLessThan(50_000);
      // SHOW STATS carries the same averages next to the totals.
      const stats = ((await admin.query('SHOW STATS')).rows as Row[]).find((r) => r.database === 'appdb');
      expect(num(stats, 'total_query_count')).toBeGreaterThan(rate);
      expect(num(stats, 'avg_query_count')).toBe(rate);
      // A period without queries: the rates fall to zero.
      await sleep(periodMs * 2.5);
      const quiet = ((await admin.query('SHOW STATS_AVERAGES')).rows as Row[]).find((r) => r.database === 'appdb');
      expect(num(quiet, 'query_count')).toBe(0);
      expect(num(quiet, 'query_time')).toBe(0);
    } finally {
      await Promise.all([admin.end(), client.end()]);
      await pgmux.stop();
    }
  });
});
