import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../src/config/load.ts';
import { getCluster } from './cluster-context.ts';
import { adminConsole, serversOpen, type AdminConsole, type PoolMatch } from './helpers/admin.ts';
import { onPrimary, sleep, startPgmux } from './helpers/pgmux.ts';
import { psql } from './helpers/clients.ts';
import { tempDir } from './helpers/temp.ts';

const FORCED = 'pgmux_limits_forced';
const FORCED_PASSWORD = 'limits-forced-secret';

beforeAll(async () => {
  await onPrimary(`DROP ROLE IF EXISTS ${FORCED}`);
  await onPrimary(`CREATE ROLE ${FORCED} LOGIN PASSWORD '${FORCED_PASSWORD}'`);
});

afterAll(async () => {
  await onPrimary('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [FORCED]);
  await onPrimary(`DROP ROLE IF EXISTS ${FORCED}`);
});

const primaryUrl = (database = '') => {
  const c = getCluster();
  return `postgresql://${c.primary.host}:${c.primary.port}${database === '' ? '' : `/${database}`}`;
};

/** Lets `app` read the admin console, where the tests count the pools' connections (of every worker). */
const CONSOLE = { stats_users: 'app' };

/** Server connections pgmux has open (in use, idle or opening) in the pools `match` picks, as SHOW POOLS counts them. */
async function openIn(admin: AdminConsole, match?: PoolMatch): Promise<number> {
  return serversOpen(await admin.show('POOLS'), match);
}

/** Runs `clients` clients at once, each one query; the most connections `sample` saw open meanwhile. */
async function peakWhile(clients: Promise<unknown>[], sample: () => Promise<number>): Promise<number> {
  let peak = 0;
  let done = false;
  const all = Promise.all(clients).finally(() => (done = true));
  while (!done) {
    peak = Math.max(peak, await sample());
    await sleep(10);
  }
  await all;
  return peak;
}

const sleepQuery = (url: string, seconds: number) => psql(url, `SELECT pg_sleep(${seconds})`);

/** Backends of `user` on the primary running pg_sleep right now. */
async function sleeping(user: string): Promise<number> {
  const rows = await onPrimary<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE usename = $1 AND query LIKE 'SELECT pg_sleep%' AND state = 'active'", [user]);
  return Number(rows[0].n);
}

describe('server-side limits', () => {
  it('max_db_connections: every user of a database together; a full database takes an idle connection of another user', async () => {
    const pgmux = await startPgmux({ ...CONSOLE, endpoints: { main: { nodes: [primaryUrl()], max_db_connections: 3 } }, default_pool_size: 10 });
    const admin = await adminConsole(pgmux);
    try {
      const runs = [...Array(4)].flatMap(() => [sleepQuery(pgmux.url('app'), 0.3), sleepQuery(pgmux.url('other'), 0.3)]);
      expect(await peakWhile(runs, () => openIn(admin))).toBeLessThanOrEqual(3);
      // app's idle connections are closed to make room for other's.
      expect(await openIn(admin)).toBeLessThanOrEqual(3);
      // Three clients of other at once, each holding a server connection (session pooling).
      const others = [...Array(3)].map(() => new pg.Client({ connectionString: pgmux.url('other') }));
      try {
        for (const c of others) {
          await c.connect();
          await c.query('SELECT 1');
        }
        expect(await openIn(admin, (k) => k.user === 'other')).toBe(3);
        expect(await openIn(admin, (k) => k.user === 'app')).toBe(0);
      } finally {
        await Promise.all(others.map((c) => c.end().catch(() => {})));
      }
    } finally {
      await admin.end();
      await pgmux.stop();
    }
  });

  it('max_user_connections: every database of a user together, per user in [users]', async () => {
    const pgmux = await startPgmux({
      ...CONSOLE,
      endpoints: { appdb: { nodes: [primaryUrl('appdb')] }, postgres: { nodes: [primaryUrl('postgres')] } },
      max_user_connections: 2,
      users: { other: { max_user_connections: 1 } },
    });
    const admin = await adminConsole(pgmux);
    try {
      const runs = [...Array(3)].flatMap(() => [sleepQuery(pgmux.url('app', 'appdb'), 0.3), sleepQuery(pgmux.url('app', 'postgres'), 0.3)]);
      expect(await peakWhile(runs, () => openIn(admin, (k) => k.user === 'app'))).toBeLessThanOrEqual(2);
      const others = [...Array(3)].map(() => sleepQuery(pgmux.url('other', 'postgres'), 0.2));
      expect(await peakWhile(others, () => openIn(admin, (k) => k.user === 'other'))).toBe(1);
    } finally {
      await admin.end();
      await pgmux.stop();
    }
  });

  it('per-endpoint and per-user pool sizes, the user\'s winning', async () => {
    const pgmux = await startPgmux({
      ...CONSOLE,
      endpoints: { main: { nodes: [primaryUrl()], default_pool_size: 3 } },
      users: { other: { default_pool_size: 1 } },
    });
    const admin = await adminConsole(pgmux);
    try {
      expect(await peakWhile([...Array(6)].map(() => sleepQuery(pgmux.url('app'), 0.2)), () => openIn(admin, (k) => k.user === 'app'))).toBe(3);
      expect(await peakWhile([...Array(3)].map(() => sleepQuery(pgmux.url('other'), 0.2)), () => openIn(admin, (k) => k.user === 'other'))).toBe(1);
    } finally {
      await admin.end();
      await pgmux.stop();
    }
  });

  it('reserve_pool_size: more connections once a client has waited reserve_pool_timeout', async () => {
    const pgmux = await startPgmux({ default_pool_size: 2, reserve_pool_size: 1, reserve_pool_timeout: 2 });
    try {
      let done = false;
      const runs = Promise.all([...Array(4)].map(() => sleepQuery(pgmux.url('app'), 8))).finally(() => (done = true));
      while (!done && (await sleeping('app')) < 2) await sleep(50);
      // Two clients hold the pool; the others wait.
      expect(await sleeping('app')).toBe(2);
      while (!done && (await sleeping('app')) < 3) await sleep(50);
      // One more runs on the reserve once it has waited; the fourth still waits.
      expect(await sleeping('app')).toBe(3);
      await runs;
    } finally {
      await pgmux.stop();
    }
  });

  it('min_pool_size: a pool in use is filled to it; an endpoint with a forced user is filled before any client', async () => {
    const pgmux = await startPgmux({
      ...CONSOLE,
      endpoints: {
        main: { nodes: [primaryUrl()], min_pool_size: 2 },
        forced: { nodes: [primaryUrl('appdb')], user: FORCED, password: FORCED_PASSWORD, min_pool_size: 3 },
      },
      default_endpoint: 'main',
    });
    const admin = await adminConsole(pgmux);
    try {
      const forcedOpen = async () => Number((await onPrimary<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE usename = $1', [FORCED]))[0].n);
      for (let i = 0; i < 100 && (await forcedOpen()) < 3; i++) await sleep(100);
      expect(await forcedOpen()).toBe(3);
      const main = (k: { endpoint: string }) => k.endpoint === 'main';
      expect(await openIn(admin, main)).toBe(0);
      const client = new pg.Client({ connectionString: pgmux.url('app') });
      await client.connect();
      try {
        for (let i = 0; i < 50 && (await openIn(admin, main)) < 2; i++) await sleep(100);
        expect(await openIn(admin, main)).toBe(2);
      } finally {
        await client.end();
      }
    } finally {
      await admin.end();
      await pgmux.stop();
    }
  });

  it('connect_query runs once on each new server connection; its error is logged, not the client\'s', async () => {
    const pgmux = await startPgmux({
      endpoints: {
        main: { nodes: [primaryUrl()], connect_query: "SELECT set_config('pgmux.connect_query', 'ran', false)" },
        failing: { nodes: [primaryUrl('appdb')], connect_query: 'SELECT 1/0' },
      },
      default_endpoint: 'main',
      server_reset_query: '',
    });
    try {
      expect(await psql(pgmux.url('app'), "SELECT current_setting('pgmux.connect_query', true)")).toBe('ran');
      expect(await psql(pgmux.url('app', 'failing'), 'SELECT 42')).toBe('42');
    } finally {
      await pgmux.stop();
    }
  });
});

describe('per-endpoint and per-user timeouts', () => {
  it('query_wait_timeout: the user\'s wins over the endpoint\'s, which wins over the global one', async () => {
    const pgmux = await startPgmux({
      endpoints: { main: { nodes: [primaryUrl()], default_pool_size: 1, query_wait_timeout: 0.5 } },
      users: { other: { query_wait_timeout: 10 } },
    });
    try {
      const blocker = sleepQuery(pgmux.url('app'), 1.5);
      await sleep(300);
      await expect(sleepQuery(pgmux.url('app'), 0)).rejects.toThrow(/query_wait_timeout/);
      await blocker;
      // other's pool is its own (size 1 too): its second client waits the first out.
      const first = sleepQuery(pgmux.url('other'), 1.5);
      await sleep(300);
      await sleepQuery(pgmux.url('other'), 0);
      await first;
    } finally {
      await pgmux.stop();
    }
  });

  it("server_lifetime of an endpoint: 0 uses each of its connections once; other endpoints keep the global one", async () => {
    const pgmux = await startPgmux({
      endpoints: { main: { nodes: [primaryUrl()], server_lifetime: 0 }, kept: { nodes: [primaryUrl('appdb')] } },
      default_endpoint: 'main',
    });
    try {
      const pid = (database: string) => psql(pgmux.url('app', database), 'SELECT pg_backend_pid()');
      expect(await pid('appdb')).not.toBe(await pid('appdb'));
      expect(await pid('kept')).toBe(await pid('kept'));
    } finally {
      await pgmux.stop();
    }
  });
});

describe('client-side limits', () => {
  it('max_db_client_connections (global, per endpoint) and max_user_client_connections (per user) in PgBouncer\'s words', async () => {
    const pgmux = await startPgmux({
      endpoints: { main: { nodes: [primaryUrl()], max_db_client_connections: 2 }, spare: { nodes: [primaryUrl('appdb')] } },
      default_endpoint: 'main',
      users: { other: { max_user_client_conn: 1 } },
    });
    const held: pg.Client[] = [];
    const hold = async (user: string, database: string) => {
      const c = new pg.Client({ connectionString: pgmux.url(user, database) });
      await c.connect();
      held.push(c);
    };
    try {
      await hold('app', 'appdb');
      await hold('app', 'appdb');
      await expect(psql(pgmux.url('app', 'appdb'), 'SELECT 1')).rejects.toThrow(/client connections exceeded \(max_db_client_connections\)/);
      // Another database of the same endpoint, and another endpoint, are counted apart.
      expect(await psql(pgmux.url('app', 'postgres'), 'SELECT 1')).toBe('1');
      expect(await psql(pgmux.url('app', 'spare'), 'SELECT 1')).toBe('1');
      await hold('other', 'spare');
      await expect(psql(pgmux.url('other', 'spare'), 'SELECT 1')).rejects.toThrow(/client connections exceeded \(max_user_client_connections\)/);
      const err = await new pg.Client({ connectionString: pgmux.url('other', 'spare') }).connect().then(() => null, (e: { code?: string }) => e);
      expect(err?.code).toBe('53300');
    } finally {
      await Promise.all(held.map((c) => c.end()));
      await pgmux.stop();
    }
  });
});

describe('pgbouncer.ini', () => {
  it('maps the limits of [pgbouncer], [databases] and [users]', async () => {
    const dir = await tempDir('pgmux-limits-');
    const file = path.join(dir, 'pgbouncer.ini');
    await writeFile(
      file,
      [
        '[pgbouncer]',
        'max_db_connections = 40',
        'max_user_connections = 30',
        'max_db_client_connections = 200',
        'max_user_client_connections = 100',
        'min_pool_size = 1',
        'reserve_pool_size = 2',
        'reserve_pool_timeout = 2.5',
        '[databases]',
        "appdb = host=127.0.0.1 pool_size=5 min_pool_size=2 reserve_pool=3 max_db_connections=8 max_db_client_connections=50 connect_query='SET x = 1' server_lifetime=60 query_wait_timeout=-1",
        '[users]',
        'app = pool_size=4 reserve_pool_size=1 max_user_connections=6 max_user_client_connections=9 query_wait_timeout=30',
      ].join('\n'),
    );
    const { config, warnings } = await loadConfig([file], {});
    expect(config).toMatchObject({
      max_db_connections: 40,
      max_user_connections: 30,
      max_db_client_connections: 200,
      max_user_client_conn: 100,
      min_pool_size: 1,
      reserve_pool_size: 2,
      reserve_pool_timeout: 2.5,
      users: { app: { default_pool_size: 4, reserve_pool_size: 1, max_user_connections: 6, max_user_client_conn: 9, query_wait_timeout: 30 } },
    });
    expect(config.endpoints.appdb).toMatchObject({
      default_pool_size: 5,
      min_pool_size: 2,
      reserve_pool_size: 3,
      max_db_connections: 8,
      max_db_client_connections: 50,
      connect_query: 'SET x = 1',
      server_lifetime: 60,
    });
    // -1 is PgBouncer's "not set".
    expect(config.endpoints.appdb.query_wait_timeout).toBeUndefined();
    expect(warnings).toEqual([]);
  });
});
