import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { showCommand } from '../src/admin/show.ts';
import { sleep } from './helpers/pgmux.ts';
import { startWorkers, type RunningWorker } from './helpers/worker-links.ts';

type PgErr = Error & { code?: string };

/**
 * Two workers joined by links, each with clients of its own; the admin
 * console and /metrics of either show and act on both.
 */
describe('admin console and /metrics across workers', () => {
  let pair: Awaited<ReturnType<typeof startWorkers>>;
  let w0: RunningWorker;
  let w1: RunningWorker;
  let admin: pg.Client;
  const clients: pg.Client[] = [];

  const connect = async (w: RunningWorker, name: string, database = 'appdb') => {
    const c = new pg.Client({ connectionString: w.url('app', database), application_name: name });
    c.on('error', () => {});
    await c.connect();
    clients.push(c);
    return c;
  };
  const num = (v: unknown) => Number(v);
  /** A column of one worker's own rows of a SHOW, summed over rows matching `where`. */
  const own = (w: RunningWorker, what: string, column: string, where: (row: Record<string, unknown>) => boolean = () => true) => {
    const rs = showCommand(w.server, what)!;
    const at = rs.columns.findIndex(([name]) => name === column);
    return rs.rows
      .map((row) => Object.fromEntries(rs.columns.map(([name], i) => [name, row[i]])))
      .filter(where)
      .reduce((a, row) => a + num(row[rs.columns[at][0]]), 0);
  };

  beforeAll(async () => {
    pair = await startWorkers(2, { admin_users: 'app', pool_mode: 'transaction', metrics_listen: '127.0.0.1:0', shutdown_timeout: 10 });
    [w0, w1] = pair.workers;
    admin = new pg.Client({ connectionString: w0.url('app', 'pgmux') });
    admin.on('error', () => {});
    await admin.connect();
  });
  afterAll(async () => {
    await Promise.all([admin, ...clients].map((c) => c.end().catch(() => {})));
    await pair.stop();
    await sleep(100);
  });

  it('SHOW POOLS, STATS_TOTALS, DATABASES and LISTS are the sums of both workers', async () => {
    const a = await connect(w0, 'on-0');
    const b = await connect(w1, 'on-1');
    const c = await connect(w1, 'on-1-too');
    for (const x of [a, b, c]) await x.query('SELECT 1');
    expect(w0.server.clientsOf()).toHaveLength(1);
    expect(w1.server.clientsOf()).toHaveLength(2);

    const pools = (await admin.query('SHOW POOLS')).rows.filter((r) => r.database === 'appdb' && r.user === 'app');
    expect(pools).toHaveLength(1);
    const appdb = (r: Record<string, unknown>) => r.database === 'appdb' && r.user === 'app';
    expect(pools[0]).toMatchObject({ cl_active: 3, cl_waiting: 0 });
    expect(pools[0].cl_active).toBe(own(w0, 'POOLS', 'cl_active', appdb) + own(w1, 'POOLS', 'cl_active', appdb));
    const servers = own(w0, 'POOLS', 'sv_idle', appdb) + own(w1, 'POOLS', 'sv_idle', appdb);
    expect(own(w0, 'POOLS', 'sv_idle', appdb)).toBeGreaterThan(0);
    expect(own(w1, 'POOLS', 'sv_idle', appdb)).toBeGreaterThan(0);
    expect(pools[0].sv_idle).toBe(servers);

    const totals = (await admin.query('SHOW STATS_TOTALS')).rows.find((r) => r.database === 'appdb')!;
    const db = (r: Record<string, unknown>) => r.database === 'appdb';
    expect(num(totals.query_count)).toBe(own(w0, 'STATS_TOTALS', 'query_count', db) + own(w1, 'STATS_TOTALS', 'query_count', db));
    expect(own(w0, 'STATS_TOTALS', 'query_count', db)).toBeGreaterThan(0);
    expect(own(w1, 'STATS_TOTALS', 'query_count', db)).toBeGreaterThan(0);

    const databases = (await admin.query('SHOW DATABASES')).rows.find((r) => r.name === 'appdb')!;
    expect(databases).toMatchObject({ current_client_connections: 3, current_connections: servers });
    const lists = Object.fromEntries((await admin.query('SHOW LISTS')).rows.map((r) => [r.list, r.items]));
    // The admin console's own client is one of the used clients.
    expect(lists).toMatchObject({ pools: 1, used_servers: servers, free_servers: servers, used_clients: 4, databases: 1 });
    const users = (await admin.query('SHOW USERS')).rows.find((r) => r.name === 'app')!;
    expect(users).toMatchObject({ current_client_connections: 3, current_connections: servers });
  });

  it('SHOW CLIENTS and SERVERS list both workers\' connections with their worker, ids unique; KILL_CLIENT ends one on the other worker', async () => {
    const r = await admin.query('SHOW CLIENTS');
    expect(r.fields.at(-1)).toMatchObject({ name: 'worker', dataTypeID: 23 });
    expect(r.fields.at(-2)!.name).toBe('id');
    const byName = new Map(r.rows.map((row) => [row.application_name as string, row]));
    expect(byName.get('on-0')).toMatchObject({ worker: 0 });
    expect(byName.get('on-1')).toMatchObject({ worker: 1 });
    const ids = r.rows.map((row) => row.id as number);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(r.rows.map((row) => row.ptr)).size).toBe(r.rows.length);
    const servers = await admin.query('SHOW SERVERS');
    expect(new Set(servers.rows.map((row) => row.worker))).toEqual(new Set([0, 1]));
    // A server's link names its client's ptr, as on one worker.
    for (const s of servers.rows.filter((x) => x.link !== '')) expect(r.rows.some((c) => c.ptr === s.link && c.worker === s.worker)).toBe(true);
    const sockets = await admin.query('SHOW SOCKETS');
    expect(sockets.fields.at(-1)!.name).toBe('worker');
    expect(new Set(sockets.rows.map((row) => row.worker))).toEqual(new Set([0, 1]));

    const victim = clients.find((c) => (c as unknown as { connectionParameters: { application_name: string } }).connectionParameters.application_name === 'on-1-too')!;
    const ended = new Promise<PgErr>((resolve) => victim.once('error', resolve));
    await admin.query(`KILL_CLIENT ${byName.get('on-1-too')!.id}`);
    expect(await ended).toMatchObject({ code: '57P01', message: 'admin forced disconnect' });
    expect((await admin.query('SHOW CLIENTS')).rows.map((x) => x.application_name)).not.toContain('on-1-too');
    const missing = await admin.query(`KILL_CLIENT ${byName.get('on-1-too')!.id}`).catch((e: PgErr) => e);
    expect(missing).toMatchObject({ message: 'client not found' });
  });

  it('PAUSE holds both workers\' clients until RESUME; SHOW STATE says so', async () => {
    const a = clients[0];
    const b = clients[1];
    await admin.query('PAUSE');
    expect([w0.server.pools.pauseMode, w1.server.pools.pauseMode]).toEqual(['pause', 'pause']);
    expect(Object.fromEntries((await admin.query('SHOW STATE')).rows.map((r) => [r.key, r.value]))).toEqual({ active: 'no', paused: 'yes', suspended: 'no' });
    expect(await admin.query('PAUSE').catch((e: PgErr) => e)).toMatchObject({ message: 'already suspended/paused' });
    await admin.query('RESUME');
    expect([w0.server.pools.pauseMode, w1.server.pools.pauseMode]).toEqual(['none', 'none']);
    expect((await a.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    expect((await b.query('SELECT 2 AS two')).rows[0].two).toBe(2);
    expect(await admin.query('RESUME').catch((e: PgErr) => e)).toMatchObject({ message: 'pooler is not paused/suspended' });
  });

  it('RESUME releases a worker paused alone (a PAUSE that reached only it)', async () => {
    await w1.server.pools.pause(undefined, 1000);
    await admin.query('RESUME');
    expect(w1.server.pools.pauseMode).toBe('none');
  });

  it('RELOAD and SET reach every worker; DISABLE and ENABLE too', async () => {
    for (const w of [w0, w1]) w.server.reloadSource = async () => ({ ...pair.config, endpoints: { ...pair.config.endpoints, extra: { nodes: [`${pair.config.endpoints.main.nodes[0]}/appdb`] } }, default_endpoint: 'main' });
    await admin.query('RELOAD');
    expect(w0.server.registry.endpoints().has('extra')).toBe(true);
    expect(w1.server.registry.endpoints().has('extra')).toBe(true);
    await admin.query('SET default_pool_size = 7');
    expect([w0.server.currentConfig.default_pool_size, w1.server.currentConfig.default_pool_size]).toEqual([7, 7]);
    expect(await admin.query('SET default_pool_size = x').catch((e: PgErr) => e)).toMatchObject({ code: '22023' });
    await admin.query('DISABLE extra');
    expect([w0.server.disabled.has('extra'), w1.server.disabled.has('extra')]).toEqual([true, true]);
    await admin.query('ENABLE extra');
    expect([w0.server.disabled.has('extra'), w1.server.disabled.has('extra')]).toEqual([false, false]);
    expect(await admin.query('PAUSE nosuch').catch((e: PgErr) => e)).toMatchObject({ code: '3D000', message: 'no such database: nosuch' });
  });

  it('RECONNECT, WAIT_CLOSE, PAUSE and RESUME of one database reach the worker that serves it', async () => {
    const x = await connect(w1, 'extra-on-1', 'extra');
    await x.query('SELECT 1');
    await admin.query('RECONNECT extra');
    await admin.query('WAIT_CLOSE extra');
    await admin.query('PAUSE extra');
    expect(w1.server.pools.isNamePaused('extra')).toBe(true);
    await admin.query('RESUME extra');
    expect(w1.server.pools.isNamePaused('extra')).toBe(false);
  });

  it('/metrics of either worker sums both workers\' clients and counters; process metrics carry the worker', async () => {
    for (const w of [w0, w1]) {
      const text = await (await fetch(`http://127.0.0.1:${w.metricsPort}/metrics`)).text();
      const clientsOf = (endpoint: string) => [...text.matchAll(new RegExp(`^pgmux_clients\\{endpoint="${endpoint}",state="\\w+"\\} (\\d+)$`, 'gm'))].reduce((a, m) => a + Number(m[1]), 0);
      expect(clientsOf('main')).toBe(w0.server.clientsOf().filter((s) => s.endpointName === 'main').length + w1.server.clientsOf().filter((s) => s.endpointName === 'main').length);
      expect(clientsOf('main')).toBe(2);
      expect(clientsOf('extra')).toBe(1);
      const logins = Number(/^pgmux_auth_successes_total (\d+)$/m.exec(text)?.[1]);
      expect(logins).toBe(w0.server.ctx.stats.authSuccesses + w1.server.ctx.stats.authSuccesses);
      expect(text).toMatch(/^pgmux_process_resident_memory_bytes\{worker="0"\} \d/m);
      expect(text).toMatch(/^pgmux_process_resident_memory_bytes\{worker="1"\} \d/m);
      expect((await fetch(`http://127.0.0.1:${w.metricsPort}/readyz`)).status).toBe(200);
    }
  });

  it('KILL ends both workers\' clients of a database, which stays paused until RESUME', async () => {
    const a = await connect(w0, 'kill-0');
    const b = await connect(w1, 'kill-1');
    const ended = [a, b].map((c) => new Promise<PgErr>((resolve) => c.once('error', resolve)));
    await admin.query('KILL appdb');
    for (const e of await Promise.all(ended)) expect(e).toMatchObject({ code: '57P01' });
    expect(w0.server.clientsOf('appdb')).toHaveLength(0);
    expect(w1.server.clientsOf('appdb')).toHaveLength(0);
    expect([w0.server.pools.isNamePaused('appdb'), w1.server.pools.isNamePaused('appdb')]).toEqual([true, true]);
    await admin.query('RESUME appdb');
    const c = await connect(w1, 'after-kill');
    expect((await c.query('SELECT 1 AS one')).rows[0].one).toBe(1);
  });

  it('a worker that does not answer (dead, restarting) is left out of a SHOW, and its clients cannot be killed', async () => {
    const onOne = (await admin.query('SHOW CLIENTS')).rows.find((r) => r.worker === 1)!;
    w1.link.down = true;
    try {
      const clients_ = (await admin.query('SHOW CLIENTS')).rows;
      expect(clients_.every((r) => r.worker === 0)).toBe(true);
      expect((await admin.query('SHOW LISTS')).rows.find((r) => r.list === 'used_clients')).toMatchObject({ items: w0.server.sessions.size });
      expect(await admin.query(`KILL_CLIENT ${onOne.id}`).catch((e: PgErr) => e)).toMatchObject({ message: 'client not found' });
    } finally {
      w1.link.down = false;
    }
    expect((await admin.query('SHOW CLIENTS')).rows.some((r) => r.id === onOne.id)).toBe(true);
  });

  it('SHUTDOWN stops every worker', async () => {
    await admin.query('SHUTDOWN');
    for (let i = 0; i < 100 && (w0.server.ready || w1.server.ready); i++) await sleep(50);
    expect([w0.server.ready, w1.server.ready]).toEqual([false, false]);
  });
});
