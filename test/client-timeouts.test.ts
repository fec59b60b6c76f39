import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { onPrimary, sleep, startPgmux, type RunningPgmux } from './helpers/pgmux.ts';

type PgErr = Error & { code?: string; severity?: string };

/**
 * PgBouncer's client timeouts: client_idle_timeout, idle_transaction_timeout,
 * query_timeout and transaction_timeout, with real clients and a real
 * PostgreSQL. Timeouts are fractions of a second; waits are generous.
 */

const started: RunningPgmux[] = [];
async function pgmuxWith(overrides: Record<string, unknown>): Promise<RunningPgmux> {
  const p = await startPgmux(overrides);
  started.push(p);
  return p;
}

const clients: pg.Client[] = [];
/** A connected node-postgres client; `ended` resolves with the error that ended it (or null when it closed without one). */
async function connect(url: string): Promise<{ c: pg.Client; ended: Promise<PgErr | null> }> {
  const c = new pg.Client({ connectionString: url });
  clients.push(c);
  let error: PgErr | null = null;
  c.on('error', (e: PgErr) => (error ??= e));
  const ended = new Promise<PgErr | null>((resolve) => c.on('end', () => resolve(error)));
  await c.connect();
  return { c, ended };
}

/** Resolves with what `p` rejected with; fails the test if it resolves. */
const failure = (p: Promise<unknown>): Promise<PgErr> =>
  p.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: PgErr) => e,
  );

/** Resolves with the value of `p`, or 'pending' if it has not settled within `ms`. */
const within = <T>(p: Promise<T>, ms: number): Promise<T | 'pending'> => Promise.race([p, sleep(ms).then(() => 'pending' as const)]);

afterEach(async () => {
  for (const c of clients.splice(0)) await c.end().catch(() => {});
  for (const p of started.splice(0)) {
    await p.stop();
    await rm(path.dirname(p.server.currentConfig.auth_file!), { recursive: true, force: true });
  }
});

/** The row of SHOW POOLS for appdb and app. */
async function appPool(pgmux: RunningPgmux): Promise<{ cl_active: number; sv_active: number; sv_idle: number }> {
  const admin = new pg.Client({ connectionString: pgmux.url('app', 'pgmux') });
  await admin.connect();
  try {
    const row = (await admin.query('SHOW POOLS')).rows.find((r) => r.database === 'appdb' && r.user === 'app');
    return { cl_active: Number(row?.cl_active), sv_active: Number(row?.sv_active), sv_idle: Number(row?.sv_idle) };
  } finally {
    await admin.end();
  }
}

/** What pg_stat_activity says backend `pid` is doing, or null once it has gone. */
async function backendState(pid: number): Promise<{ state: string; query: string } | null> {
  const rows = await onPrimary<{ state: string; query: string }>('SELECT state, query FROM pg_stat_activity WHERE pid = $1', [pid]);
  return rows[0] ?? null;
}

describe('client_idle_timeout', () => {
  it('closes a client idle outside a transaction block with FATAL 08P01 client_idle_timeout, and its server connection goes back to the pool', async () => {
    const pgmux = await pgmuxWith({ client_idle_timeout: 0.5, admin_users: 'app' });
    const { c, ended } = await connect(pgmux.url());
    await c.query('SELECT 1');
    const since = Date.now();
    const err = await within(ended, 5000);
    expect(err).toMatchObject({ code: '08P01', message: 'client_idle_timeout', severity: 'FATAL' });
    expect(Date.now() - since).toBeGreaterThanOrEqual(400);
    // Session pooling: reset and lent again, not closed.
    await sleep(200);
    expect(await appPool(pgmux)).toEqual({ cl_active: 0, sv_idle: 1, sv_active: 0 });
  });

  it('keeps a client that keeps working, and one idle inside a transaction block (idle_transaction_timeout is for that one)', async () => {
    const pgmux = await pgmuxWith({ client_idle_timeout: 0.8, pool_mode: 'transaction' });
    const busy = await connect(pgmux.url());
    const inTransaction = await connect(pgmux.url());
    await inTransaction.c.query('BEGIN');
    for (let i = 0; i < 10; i++) {
      await busy.c.query('SELECT 1');
      await sleep(150);
    }
    expect(await within(busy.ended, 0)).toBe('pending');
    expect(await within(inTransaction.ended, 0)).toBe('pending');
    await inTransaction.c.query('COMMIT');
    // Out of its transaction block, it is idle like any other.
    expect(await within(inTransaction.ended, 5000)).toMatchObject({ message: 'client_idle_timeout' });
  });

  it('per user: [users.NAME] client_idle_timeout wins over the global one, for the user the client logs in as', async () => {
    const pgmux = await pgmuxWith({ pool_mode: 'transaction', users: { app: { client_idle_timeout: 0.4 } } });
    const app = await connect(pgmux.url('app'));
    const other = await connect(pgmux.url('other'));
    expect(await within(app.ended, 5000)).toMatchObject({ code: '08P01', message: 'client_idle_timeout' });
    expect(await within(other.ended, 300)).toBe('pending');
    await other.c.query('SELECT 1');
  });

  it('SET on the admin console applies to clients already connected, and 0 turns it off again', async () => {
    const pgmux = await pgmuxWith({ admin_users: 'app' });
    const admin = await connect(pgmux.url('app', 'pgmux'));
    const { c, ended } = await connect(pgmux.url());
    await c.query('SELECT 1');
    await admin.c.query('SET client_idle_timeout = 0.4');
    expect((await admin.c.query('SHOW CONFIG')).rows.find((r) => r.key === 'client_idle_timeout')).toMatchObject({ value: '0.4', changeable: 'yes' });
    expect(await within(ended, 5000)).toMatchObject({ message: 'client_idle_timeout' });
    // The admin console is not a client of a database: no timeout closes it.
    expect(await within(admin.ended, 0)).toBe('pending');
    await admin.c.query('SET client_idle_timeout = 0');
    const later = await connect(pgmux.url());
    expect(await within(later.ended, 900)).toBe('pending');
  });
});

describe('idle_transaction_timeout', () => {
  beforeAll(async () => {
    await onPrimary('CREATE TABLE IF NOT EXISTS pgmux_timeouts (v int); GRANT ALL ON pgmux_timeouts TO app', [], 'appdb');
  });
  afterAll(async () => {
    await onPrimary('DROP TABLE IF EXISTS pgmux_timeouts', [], 'appdb');
  });

  for (const mode of ['session', 'transaction'] as const) {
    it(`${mode} pooling: a client idle inside a transaction block is disconnected; its transaction is rolled back and the server connection kept`, async () => {
      const pgmux = await pgmuxWith({ idle_transaction_timeout: 0.5, pool_mode: mode });
      const { c, ended } = await connect(pgmux.url());
      await c.query('BEGIN');
      await c.query(`INSERT INTO pgmux_timeouts VALUES (1)`);
      const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      expect(await within(ended, 5000)).toMatchObject({ code: '08P01', message: 'idle transaction timeout', severity: 'FATAL' });
      await sleep(300);
      expect(await onPrimary('SELECT * FROM pgmux_timeouts', [], 'appdb')).toEqual([]);
      expect(await backendState(pid)).toMatchObject({ state: 'idle' });
    });
  }

  it('a client that keeps working inside its transaction block is not idle', async () => {
    const pgmux = await pgmuxWith({ idle_transaction_timeout: 0.8, pool_mode: 'transaction' });
    const { c, ended } = await connect(pgmux.url());
    await c.query('BEGIN');
    for (let i = 0; i < 10; i++) {
      await c.query('SELECT 1');
      await sleep(150);
    }
    await c.query('COMMIT');
    expect(await within(ended, 0)).toBe('pending');
  });
});

describe('query_timeout', () => {
  it('a statement running too long: its client gets FATAL 08P01 query timeout and the statement is cancelled', async () => {
    const pgmux = await pgmuxWith({ query_timeout: 0.5 });
    const { c } = await connect(pgmux.url());
    const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    const since = Date.now();
    expect(await failure(c.query('SELECT pg_sleep(30)'))).toMatchObject({ code: '08P01', message: 'query timeout', severity: 'FATAL' });
    expect(Date.now() - since).toBeLessThan(5000);
    // Cancelled half a second later, as for any client that leaves mid-statement.
    await sleep(1500);
    expect((await backendState(pid))?.state ?? 'gone').not.toBe('active');
  });

  it('a client waiting for a server connection is told query_timeout, as PgBouncer words it', async () => {
    const pgmux = await pgmuxWith({ query_timeout: 0.6, pool_mode: 'transaction', default_pool_size: 1, query_wait_timeout: 30 });
    const holder = await connect(pgmux.url());
    const waiter = await connect(pgmux.url());
    const held = failure(holder.c.query('SELECT pg_sleep(30)'));
    await sleep(100);
    expect(await failure(waiter.c.query('SELECT 1'))).toMatchObject({ code: '08P01', message: 'query_timeout' });
    expect(await held).toMatchObject({ message: 'query timeout' });
  });

  it('counts from the statement, not from an error pgmux answered alone before it', async () => {
    const pgmux = await pgmuxWith({ query_timeout: 0.6, pool_mode: 'statement' });
    const { c, ended } = await connect(pgmux.url());
    // Refused by pgmux itself: the ReadyForQuery after it is pgmux's own.
    expect(await failure(c.query('BEGIN'))).toMatchObject({ severity: 'ERROR' });
    await sleep(900);
    expect((await c.query('SELECT 1 AS ok FROM pg_sleep(0.2)')).rows).toEqual([{ ok: 1 }]);
    expect(await within(ended, 0)).toBe('pending');
  });

  it('statements that each finish in time run for as long as the client likes', async () => {
    const pgmux = await pgmuxWith({ query_timeout: 1, users: { other: { query_timeout: 0.1 } } });
    const { c, ended } = await connect(pgmux.url());
    for (let i = 0; i < 8; i++) await c.query('SELECT pg_sleep(0.15)');
    expect(await within(ended, 0)).toBe('pending');
    // Per user: the user pgmux logs in to the servers as.
    const other = await connect(pgmux.url('other'));
    expect(await failure(other.c.query('SELECT pg_sleep(0.5)'))).toMatchObject({ message: 'query timeout' });
  });
});

describe('transaction_timeout', () => {
  it('a transaction block lasting too long is ended, however busy its client', async () => {
    const pgmux = await pgmuxWith({ transaction_timeout: 0.8, pool_mode: 'transaction' });
    const { c, ended } = await connect(pgmux.url());
    await c.query('BEGIN');
    let done = 0;
    await failure(
      (async () => {
        for (;;) {
          await c.query('SELECT 1');
          done++;
          await sleep(100);
        }
      })(),
    );
    // Ended in a statement or between two: the error is the client's last word either way.
    expect(await ended).toMatchObject({ code: '08P01', message: 'transaction timeout', severity: 'FATAL' });
    expect(done).toBeGreaterThanOrEqual(3);
  });

  it('statements outside transaction blocks are transactions of their own', async () => {
    const pgmux = await pgmuxWith({ transaction_timeout: 0.8, pool_mode: 'transaction' });
    const { c, ended } = await connect(pgmux.url());
    for (let i = 0; i < 12; i++) {
      await c.query('SELECT 1');
      await sleep(100);
    }
    expect(await within(ended, 0)).toBe('pending');
    expect(await failure(c.query('SELECT pg_sleep(5)'))).toMatchObject({ message: 'transaction timeout' });
  });
});
