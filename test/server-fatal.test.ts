import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { onPrimary, sleep, startPgmux, trustSettings, type RunningPgmux } from './helpers/pgmux.ts';
import { RawClient } from './helpers/clients.ts';
import { getCluster } from './cluster-context.ts';
import { parseErrorFields, query } from '../src/protocol/messages.ts';

/** Ends a backend as an operator would, from a superuser connection of its own. */
async function terminate(pid: number): Promise<void> {
  const rows = await onPrimary<{ ok: boolean }>('SELECT pg_terminate_backend($1) AS ok', [pid]);
  expect(rows[0].ok).toBe(true);
}

/** What a node-postgres client reports when its backend is terminated while it is idle. */
async function eventsOnTermination(config: pg.ClientConfig): Promise<string[]> {
  const events: string[] = [];
  const client = new pg.Client(config);
  client.on('error', (err: Error & { code?: string }) => events.push(`error ${err.code ?? ''} ${err.message}`.replace(/ {2}/, ' ')));
  client.on('end', () => events.push('end'));
  await client.connect();
  const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
  await terminate(pid);
  for (let i = 0; i < 50 && !events.includes('end'); i++) await sleep(20);
  await sleep(100);
  return events;
}

/**
 * Logs in, runs `sql` (which must report pg_backend_pid() in its first
 * row), terminates that backend and returns the ErrorResponses the client
 * got after it, as [severity, code], once its connection has closed.
 */
async function errorsAfterTermination(port: number, sql: string): Promise<string[][]> {
  const c = await RawClient.login(port, 'app', 'appdb');
  c.write(query(sql));
  const row = await c.until((m) => m.type === 'D');
  const pid = Number(row!.body.subarray(6).toString());
  await c.until((m) => m.type === 'Z');
  c.messages.length = 0;
  await terminate(pid);
  await c.until(() => false, 3000).catch(() => null);
  expect(c.closed).toBe(true);
  return c.messages.filter((m) => m.type === 'E').map((m) => parseErrorFields(m.body)).map((f) => [f.get('V')!, f.get('C')!]);
}

describe('a server FATAL reaches the client once, and nothing follows it', () => {
  let pgmux: RunningPgmux;
  beforeAll(async () => {
    pgmux = await startPgmux({ ...trustSettings(), pool_mode: 'session' });
  });
  afterAll(async () => {
    await pgmux.stop();
    await rm(path.dirname(pgmux.server.currentConfig.auth_file!), { recursive: true, force: true });
  });

  it('session pooling: exactly the server\'s one ErrorResponse, then the connection closes', async () => {
    expect(await errorsAfterTermination(pgmux.port, 'SELECT pg_backend_pid() AS pid')).toEqual([['FATAL', '57P01']]);
  });

  it('node-postgres sees what it sees connected to PostgreSQL directly', async () => {
    const cluster = getCluster();
    const direct = await eventsOnTermination({
      host: cluster.primary.host,
      port: cluster.primary.port,
      user: 'app',
      password: cluster.roles.app.password,
      database: 'appdb',
    });
    const through = await eventsOnTermination({ connectionString: pgmux.url() });
    expect(direct[0]).toMatch(/^error 57P01 terminating connection due to administrator command$/);
    expect(through).toEqual(direct);
  });

  it('a pool with an idle client whose backend is terminated: one error event, and the pool goes on', async () => {
    const pool = new pg.Pool({ connectionString: pgmux.url(), max: 1 });
    const errors: string[] = [];
    pool.on('error', (err: Error & { code?: string }) => errors.push(`${err.code} ${err.message}`));
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', onUncaught);
    try {
      const client = await pool.connect();
      const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      client.release();
      await terminate(pid);
      await sleep(500);
      expect(errors).toEqual(['57P01 terminating connection due to administrator command']);
      expect(uncaught).toEqual([]);
      expect((await pool.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    } finally {
      process.off('uncaughtException', onUncaught);
      await pool.end();
    }
  });
});

describe('a server FATAL in the message-level loop (transaction pooling)', () => {
  let pgmux: RunningPgmux;
  beforeAll(async () => {
    pgmux = await startPgmux({ ...trustSettings(), pool_mode: 'transaction', default_pool_size: 1 });
  });
  afterAll(async () => {
    await pgmux.stop();
    await rm(path.dirname(pgmux.server.currentConfig.auth_file!), { recursive: true, force: true });
  });

  it('a client idle in a transaction block whose backend is terminated reads the one FATAL, and the pool serves the next client', async () => {
    expect(await errorsAfterTermination(pgmux.port, 'BEGIN; SELECT pg_backend_pid() AS pid')).toEqual([['FATAL', '57P01']]);
    const next = await RawClient.login(pgmux.port, 'app', 'appdb');
    next.write(query('SELECT 1'));
    await next.until((m) => m.type === 'Z');
    expect(next.messages.map((m) => m.type)).toEqual(['T', 'D', 'C', 'Z']);
    next.close();
  });
});

describe('a pooled backend terminated while its client is idle between transactions', () => {
  for (const pool_mode of ['transaction', 'statement'] as const) {
    it(`${pool_mode} pooling: the client holds no backend, is told nothing and is served on another`, async () => {
      const pgmux = await startPgmux({ ...trustSettings(), pool_mode, default_pool_size: 1 });
      try {
        const c = await RawClient.login(pgmux.port, 'app', 'appdb');
        c.write(query('SELECT pg_backend_pid() AS pid'));
        const row = await c.until((m) => m.type === 'D');
        const pid = Number(row!.body.subarray(6).toString());
        await c.until((m) => m.type === 'Z');
        c.messages.length = 0;
        await terminate(pid);
        await sleep(300);
        expect(c.closed).toBe(false);
        expect(c.messages.filter((m) => m.type === 'E')).toEqual([]);
        c.write(query('SELECT pg_backend_pid() AS pid'));
        const again = await c.until((m) => m.type === 'D');
        expect(Number(again!.body.subarray(6).toString())).not.toBe(pid);
        await c.until((m) => m.type === 'Z');
        c.close();
      } finally {
        await pgmux.stop();
        await rm(path.dirname(pgmux.server.currentConfig.auth_file!), { recursive: true, force: true });
      }
    });
  }
});
