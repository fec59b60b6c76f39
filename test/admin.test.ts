import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { configForReload } from './helpers/admin.ts';
import { backendsOf, sleep, startPgmux, type RunningPgmux } from './helpers/pgmux.ts';
import { psql, accepting } from './helpers/clients.ts';

describe('admin console', () => {
  let pgmux: RunningPgmux;
  beforeAll(async () => {
    pgmux = await startPgmux({ admin_users: 'app', stats_users: 'other', pool_mode: 'transaction', default_pool_size: 4 });
  });
  afterAll(async () => {
    await pgmux.stop();
    await sleep(100);
  });

  const admin = (db = 'pgmux') => pgmux.url('app', db);

  it('answers SHOW commands with PgBouncer\'s columns, in psql\'s aligned, expanded and unaligned output', async () => {
    const busy = new pg.Client({ connectionString: pgmux.url() });
    await busy.connect();
    await busy.query('SELECT 1');
    const pools = await psql(admin(), 'SHOW POOLS', ['-P', 'tuples_only=off', '-P', 'footer=off']);
    const [header, ...rows] = pools.split('\n');
    expect(header.split('|').slice(0, 16)).toEqual([
      'database', 'user', 'cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active', 'sv_active_cancel',
      'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us', 'pool_mode',
    ]);
    expect(rows.some((r) => r.startsWith('appdb|app|'))).toBe(true);
    expect(await psql(admin('pgbouncer'), 'SHOW VERSION', ['-t'])).toMatch(/^pgmux \d+\.\d+\.\d+$/);
    const expanded = await psql(admin(), 'SHOW LISTS', ['-x', '-P', 'format=aligned', '-P', 'tuples_only=off']);
    expect(expanded).toMatch(/list\s+\| used_clients/);
    const aligned = await psql(admin(), 'SHOW USERS', ['-P', 'format=aligned', '-P', 'tuples_only=off']);
    expect(aligned.split('\n')[0].split('|').map((h) => h.trim())).toEqual([
      'name', 'pool_size', 'reserve_pool_size', 'pool_mode', 'max_user_connections', 'current_connections', 'max_user_client_connections', 'current_client_connections',
    ]);
    const c = new pg.Client({ connectionString: admin() });
    await c.connect();
    const r = await c.query('SHOW CLIENTS');
    expect(r.fields.map((f) => f.name).slice(0, 5)).toEqual(['type', 'user', 'database', 'replication', 'state']);
    expect(r.fields.find((f) => f.name === 'port')!.dataTypeID).toBe(23);
    expect(r.rows.some((row) => row.database === 'appdb')).toBe(true);
    const nodes = await c.query('SHOW NODES');
    expect(nodes.rows[0]).toMatchObject({ endpoint: 'main', role: 'primary', status: 'up' });
    const stats = await c.query('SHOW STATS');
    expect(Number(stats.rows.find((x) => x.database === 'appdb')?.total_query_count)).toBeGreaterThan(0);
    await c.end();
    await busy.end();
  });

  it('lets admins SET and RELOAD; stats users may only SHOW; others are refused', async () => {
    const c = new pg.Client({ connectionString: admin() });
    await c.connect();
    await c.query('SET default_pool_size = 7');
    const config = (await c.query('SHOW CONFIG')).rows;
    expect(config.find((row) => row.key === 'default_pool_size')).toMatchObject({ value: '7', default: '20', changeable: 'yes' });
    await c.query('RELOAD');
    await expect(c.query('SET listen = x')).rejects.toMatchObject({ code: '55P02' });
    await expect(c.query('SHOW NONSENSE')).rejects.toMatchObject({ code: '42601' });
    await expect(c.query('DROP TABLE x')).rejects.toMatchObject({ code: '42601' });
    await c.end();

    const stats = new pg.Client({ connectionString: pgmux.url('other', 'pgmux') });
    await stats.connect();
    expect((await stats.query('SHOW VERSION')).rows).toHaveLength(1);
    await expect(stats.query('RELOAD')).rejects.toMatchObject({ code: '42501' });
    await stats.end();

    const plain = await startPgmux({});
    try {
      await expect(psql(plain.url('app', 'pgmux'), 'SHOW POOLS')).rejects.toThrow(/may not use the admin console/);
    } finally {
      await plain.stop();
    }
  });

  it('PAUSE waits for running transactions and holds new queries; RESUME releases them', async () => {
    const a = new pg.Client({ connectionString: pgmux.url() });
    const b = new pg.Client({ connectionString: pgmux.url() });
    const c = new pg.Client({ connectionString: admin() });
    await Promise.all([a.connect(), b.connect(), c.connect()]);
    await a.query('BEGIN');
    await a.query('SELECT 1');
    let paused = false;
    const pause = c.query('PAUSE appdb').then(() => (paused = true));
    await sleep(200);
    expect(paused).toBe(false);
    await a.query('COMMIT');
    await pause;
    let answered = false;
    const held = b.query('SELECT 7 AS seven').then((r) => {
      answered = true;
      return r.rows[0].seven;
    });
    await sleep(300);
    expect(answered).toBe(false);
    expect((await c.query('SHOW POOLS')).rows.find((r) => r.database === 'appdb')).toMatchObject({ paused: 1, cl_waiting: 1 });
    await c.query('RESUME appdb');
    expect(await held).toBe(7);
    await Promise.all([a.end(), b.end(), c.end()]);
  });

  it('SHOW POOLS follows clients as they come and go', async () => {
    const c = new pg.Client({ connectionString: admin() });
    await c.connect();
    const row = async () => (await c.query('SHOW POOLS')).rows.find((r) => r.database === 'appdb' && r.user === 'app');
    const a = new pg.Client({ connectionString: pgmux.url() });
    await a.connect();
    await a.query('BEGIN');
    await a.query('SELECT 1');
    expect(await row()).toMatchObject({ sv_active: 1 });
    const withA = (await row()).cl_active;
    await a.query('COMMIT');
    expect((await row()).sv_active).toBe(0);
    expect((await row()).sv_idle).toBeGreaterThan(0);
    await a.end();
    await sleep(100);
    expect((await row()).cl_active).toBe(withA - 1);
    await c.end();
  });

  it('RELOAD adds an endpoint without dropping clients of the others', async () => {
    const cfg = pgmux.server.currentConfig;
    const client = new pg.Client({ connectionString: pgmux.url() });
    await client.connect();
    await client.query('BEGIN');
    await configForReload(pgmux, { ...cfg, default_endpoint: 'main', endpoints: { ...cfg.endpoints, extra: { nodes: cfg.endpoints.main.nodes.map((n) => `${n}/appdb`) } } });
    const c = new pg.Client({ connectionString: admin() });
    await c.connect();
    await c.query('RELOAD');
    expect((await c.query('SHOW ENDPOINTS')).rows.map((r) => r.endpoint).sort()).toEqual(['extra', 'main']);
    await client.query('COMMIT');
    expect((await client.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    expect(await psql(pgmux.url('app', 'extra'), 'SELECT current_database()')).toBe('appdb');
    await Promise.all([client.end(), c.end()]);
  });

  it('SHUTDOWN WAIT_FOR_CLIENTS lets a running transaction finish', async () => {
    // Its own user, whose server connections on the primary are this pgmux's alone.
    const own = await startPgmux({ admin_users: 'other', pool_mode: 'transaction' });
    const client = new pg.Client({ connectionString: own.url('other') });
    client.on('error', () => {});
    await client.connect();
    await client.query('BEGIN');
    const c = new pg.Client({ connectionString: own.url('other', 'pgmux') });
    c.on('error', () => {});
    await c.connect();
    await c.query('SHUTDOWN WAIT_FOR_CLIENTS');
    await sleep(200);
    // New clients are refused; the one inside its transaction finishes it.
    await expect(psql(own.url('other'), 'SELECT 1')).rejects.toThrow();
    expect((await client.query('SELECT 5 AS five')).rows[0].five).toBe(5);
    await client.query('COMMIT');
    expect(await backendsOf('other')).toBeGreaterThan(0);
    await client.end();
    await c.end();
    // Its clients gone, pgmux stops: it closes its server connections and listens no more.
    for (let i = 0; i < 100 && (await backendsOf('other')) > 0; i++) await sleep(100);
    expect(await backendsOf('other')).toBe(0);
    expect(await accepting(own.port)).toBe(false);
    await own.stop();
  });

  it('refuses the extended protocol with a clear error', async () => {
    const c = new pg.Client({ connectionString: admin() });
    c.on('error', () => {});
    await c.connect();
    await expect(c.query('SHOW POOLS WHERE $1', [1])).rejects.toThrow(/only the simple query protocol/);
    await new Promise((r) => setTimeout(r, 50));
  });

  it('KILL ends the clients of a database, which new clients wait for until RESUME; RECONNECT replaces its server connections', async () => {
    const victim = new pg.Client({ connectionString: pgmux.url() });
    victim.on('error', () => {});
    victim.connection.on('errorMessage', () => {});
    await victim.connect();
    await victim.query('SELECT 1');
    const c = new pg.Client({ connectionString: admin() });
    await c.connect();
    await c.query('RECONNECT appdb');
    expect((await victim.query('SELECT 2 AS two')).rows[0].two).toBe(2);
    const ended = new Promise((r) => victim.once('end', r));
    await c.query('KILL appdb');
    await ended;
    // As PgBouncer: a killed database stays paused.
    let answered = false;
    const late = psql(pgmux.url(), 'SELECT 3').then((out) => {
      answered = true;
      return out;
    });
    await sleep(300);
    expect(answered).toBe(false);
    await c.query('RESUME appdb');
    expect(await late).toBe('3');
    await c.end();
  });
});
