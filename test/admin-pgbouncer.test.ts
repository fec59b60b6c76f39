import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { getCluster } from './cluster-context.ts';
import { sleep, startPgmux, trustSettings, type RunningPgmux } from './helpers/pgmux.ts';

type PgErr = Error & { code?: string; severity?: string };
type Row = Record<string, unknown>;

const failure = (p: Promise<unknown>): Promise<PgErr> =>
  p.then(
    () => {
      throw new Error('expected an error');
    },
    (e: PgErr) => e,
  );

/** Whether `p` settles within `ms`. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  await sleep(ms);
  return done;
}

// PgBouncer 1.2x's columns, in its order.
const SOCKET_COLUMNS = [
  'type', 'user', 'database', 'replication', 'state', 'addr', 'port', 'local_addr', 'local_port', 'connect_time', 'request_time', 'wait', 'wait_us',
  'close_needed', 'ptr', 'link', 'remote_pid', 'tls', 'application_name', 'prepared_statements', 'id',
];
const DATABASE_COLUMNS = [
  'name', 'host', 'port', 'database', 'force_user', 'pool_size', 'min_pool_size', 'reserve_pool_size', 'server_lifetime', 'pool_mode', 'load_balance_hosts',
  'max_connections', 'current_connections', 'max_client_connections', 'current_client_connections', 'paused', 'disabled',
];

/**
 * Two [databases] entries, p0 and p1, for the same PostgreSQL database
 * (appdb), as a pgbouncer.ini with `p0 = dbname=appdb` and `p1 =
 * dbname=appdb` has them: the console's commands act on the entry named.
 */
describe('admin console commands by [databases] entry, as PgBouncer has them', () => {
  let pgmux: RunningPgmux;
  let admin: pg.Client;
  const opened: pg.Client[] = [];
  /** The database each of this test's clients logged in to, while it is connected. */
  const connected = new Map<pg.Client, string>();

  beforeAll(async () => {
    const c = getCluster();
    const node = `postgresql://${c.primary.host}:${c.primary.port}/appdb`;
    pgmux = await startPgmux({
      ...trustSettings(),
      admin_users: 'app',
      pool_mode: 'transaction',
      endpoints: { p0: { nodes: [node] }, p1: { nodes: [node] } },
    });
    admin = await client('pgbouncer');
  });
  afterAll(async () => {
    await Promise.all(opened.map((c) => c.end().catch(() => {})));
    await pgmux.stop();
  });

  async function client(database: string, applicationName?: string): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: pgmux.url('app', database), application_name: applicationName });
    c.on('error', () => {});
    c.on('end', () => connected.delete(c));
    opened.push(c);
    await c.connect();
    connected.set(c, database);
    return c;
  }
  const pid = async (c: pg.Client) => Number((await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
  const show = async (what: string) => (await admin.query(`SHOW ${what}`)).rows as Row[];
  const database = async (name: string) => (await show('DATABASES')).find((r) => r.name === name)!;

  it('PAUSE, RESUME, RECONNECT and KILL act on the entry named, not on every entry of its PostgreSQL database', async () => {
    const a = await client('p0');
    const b = await client('p1');
    await admin.query('PAUSE p0');
    expect(await database('p0')).toMatchObject({ paused: 1 });
    expect(await database('p1')).toMatchObject({ paused: 0 });
    const held = a.query('SELECT 1 AS one');
    expect((await b.query('SELECT 2 AS two')).rows[0].two).toBe(2);
    expect(await settlesWithin(held, 300)).toBe(false);
    await admin.query('RESUME p0');
    expect((await held).rows[0].one).toBe(1);

    const [a1, b1] = [await pid(a), await pid(b)];
    await admin.query('RECONNECT p1');
    expect(await pid(a)).toBe(a1);
    expect(await pid(b)).not.toBe(b1);

    // The PostgreSQL database's own name is no entry: nothing of p0 or p1 stops.
    await admin.query('PAUSE appdb');
    expect((await a.query('SELECT 3 AS three')).rows[0].three).toBe(3);
    await admin.query('RESUME appdb');

    const ended = new Promise<PgErr>((resolve) => b.once('error', resolve));
    await admin.query('KILL p1');
    expect(await ended).toMatchObject({ code: '57P01' });
    expect((await a.query('SELECT 4 AS four')).rows[0].four).toBe(4);
    // A killed entry stays paused until RESUME, as in PgBouncer: new clients wait.
    const late = client('p1');
    expect(await settlesWithin(late, 300)).toBe(false);
    await admin.query('RESUME p1');
    expect((await (await late).query('SELECT 5 AS five')).rows[0].five).toBe(5);
  });

  it('DISABLE refuses new logins to the entry in PgBouncer\'s words; clients already in go on; ENABLE lets them in', async () => {
    const a = await client('p0');
    await admin.query('DISABLE p0');
    expect(await database('p0')).toMatchObject({ disabled: 1 });
    const refused = await failure(client('p0'));
    expect(refused.message).toBe('database "p0" is disabled');
    expect(refused.code).toBe('55000');
    expect((await a.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    expect((await (await client('p1')).query('SELECT 1 AS one')).rows[0].one).toBe(1);
    await admin.query('ENABLE p0');
    expect(await database('p0')).toMatchObject({ disabled: 0 });
    expect((await (await client('p0')).query('SELECT 1 AS one')).rows[0].one).toBe(1);
    expect(await failure(admin.query('DISABLE'))).toMatchObject({ code: '42601', message: 'a database is required' });
    expect(await failure(admin.query('DISABLE pgbouncer'))).toMatchObject({ message: 'cannot disable admin db: pgbouncer' });
    expect(await failure(admin.query('ENABLE nosuch'))).toMatchObject({ code: '3D000', message: 'no such database: nosuch' });
  });

  it('KILL_CLIENT ends the one client whose id SHOW CLIENTS gives', async () => {
    const victim = await client('p0', 'victim');
    const bystander = await client('p0', 'bystander');
    const r = await admin.query('SHOW CLIENTS');
    // pgmux's worker after PgBouncer's columns.
    expect(r.fields.map((f) => f.name)).toEqual([...SOCKET_COLUMNS, 'worker']);
    expect(r.fields.find((f) => f.name === 'id')!.dataTypeID).toBe(23);
    const ids = r.rows.map((row) => row.id as number);
    expect(new Set(ids).size).toBe(ids.length);
    const row = r.rows.find((x) => x.application_name === 'victim')!;
    expect(row).toMatchObject({ type: 'C', user: 'app', database: 'p0', replication: 'none', state: 'idle' });
    const ended = new Promise<PgErr>((resolve) => victim.once('error', resolve));
    await admin.query(`KILL_CLIENT ${row.id}`);
    expect(await ended).toMatchObject({ code: '57P01', message: 'admin forced disconnect' });
    expect((await bystander.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    expect((await admin.query('SHOW CLIENTS')).rows.some((x) => x.id === row.id)).toBe(false);
    expect(await failure(admin.query('KILL_CLIENT 999999'))).toMatchObject({ message: 'client not found', severity: 'ERROR' });
    expect(await failure(admin.query('KILL_CLIENT abc'))).toMatchObject({ message: 'invalid client pointer supplied', severity: 'ERROR' });
  });

  it('SUSPEND holds every query until RESUME, and SHOW STATE says which; PgBouncer\'s refusals of one pause on another', async () => {
    const a = await client('p0');
    await admin.query('SUSPEND');
    expect(await show('STATE')).toEqual([
      { key: 'active', value: 'no' },
      { key: 'paused', value: 'no' },
      { key: 'suspended', value: 'yes' },
    ]);
    const held = a.query('SELECT 1 AS one');
    expect(await settlesWithin(held, 300)).toBe(false);
    expect(await failure(admin.query('SUSPEND'))).toMatchObject({ code: '55000', message: 'already suspended/paused' });
    expect(await failure(admin.query('PAUSE'))).toMatchObject({ message: 'already suspended/paused' });
    await admin.query('RESUME');
    expect((await held).rows[0].one).toBe(1);
    expect((await show('STATE'))[0]).toEqual({ key: 'active', value: 'yes' });
    expect(await failure(admin.query('RESUME'))).toMatchObject({ code: '55000', message: 'pooler is not paused/suspended' });
    expect(await failure(admin.query('RESUME p0'))).toMatchObject({ message: 'database p0 is not paused' });
    await admin.query('PAUSE p1');
    expect(await failure(admin.query('SUSPEND'))).toMatchObject({ message: 'cannot suspend with paused databases' });
    await admin.query('RESUME p1');
  });

  it('WAIT_CLOSE waits until the server connections RECONNECT marked are closed', async () => {
    const a = await client('p0');
    await a.query('BEGIN');
    const before = await pid(a);
    await admin.query('RECONNECT p0');
    const servers = (await show('SERVERS')).filter((r) => r.database === 'p0');
    expect(servers.find((r) => r.remote_pid === before)).toMatchObject({ state: 'active', close_needed: 1 });
    const other = await client('pgbouncer');
    const wait = other.query('WAIT_CLOSE p0');
    expect(await settlesWithin(wait, 300)).toBe(false);
    // Another entry has nothing to wait for.
    await admin.query('WAIT_CLOSE p1');
    await a.query('COMMIT');
    await wait;
    expect(await pid(a)).not.toBe(before);
    await admin.query('WAIT_CLOSE');
  });

  it('SHOW DATABASES, USERS, SERVERS, SOCKETS and STATS: PgBouncer\'s columns, per entry', async () => {
    const a = await client('p0');
    const b = await client('p1');
    await a.query('SELECT 1');
    await b.query('SELECT 1');
    await b.query('SELECT 1');
    const dbs = await admin.query('SHOW DATABASES');
    expect(dbs.fields.map((f) => f.name)).toEqual(DATABASE_COLUMNS);
    expect(dbs.fields.map((f) => f.dataTypeID)).toEqual([25, 25, 23, 25, 25, 23, 23, 23, 23, 25, 25, 23, 23, 23, 23, 23, 23]);
    await admin.query('SET max_db_connections = 50');
    expect((await database('p0')).max_connections).toBe(50);
    await admin.query('SET max_db_connections = 0');
    // The clients of an entry (of all, but the admin console's own): this test's, connected now.
    const clientsOf = (name?: string) => [...connected.values()].filter((d) => d !== 'pgbouncer' && d !== 'pgmux' && (name === undefined || d === name)).length;
    expect(dbs.rows.find((r) => r.name === 'p0')).toMatchObject({ database: 'appdb', current_client_connections: clientsOf('p0'), paused: 0, disabled: 0 });
    expect(dbs.rows.find((r) => r.name === 'p1')).toMatchObject({ current_client_connections: clientsOf('p1') });

    const users = await admin.query('SHOW USERS');
    expect(users.fields.map((f) => f.name)).toEqual([
      'name', 'pool_size', 'reserve_pool_size', 'pool_mode', 'max_user_connections', 'current_connections', 'max_user_client_connections', 'current_client_connections',
    ]);
    expect(users.rows.find((r) => r.name === 'app')).toMatchObject({ current_client_connections: clientsOf() });

    const servers = await admin.query('SHOW SERVERS');
    expect(servers.fields.map((f) => f.name)).toEqual([...SOCKET_COLUMNS, 'worker']);
    expect(servers.rows.some((r) => r.database === 'p0' && r.state === 'idle' && r.type === 'S' && (r.id as number) > 0)).toBe(true);

    const sockets = await admin.query('SHOW SOCKETS');
    expect(sockets.fields.map((f) => f.name)).toEqual([...SOCKET_COLUMNS, 'recv_pos', 'pkt_pos', 'pkt_remain', 'send_pos', 'send_remain', 'pkt_avail', 'send_avail', 'worker']);
    const states = new Set(sockets.rows.map((r) => r.state));
    expect(states.has('cl_idle') || states.has('cl_active')).toBe(true);
    expect(states.has('sv_idle')).toBe(true);
    expect((await admin.query('SHOW ACTIVE_SOCKETS')).fields).toHaveLength(29);
    expect(await failure(admin.query('SHOW FDS'))).toMatchObject({ code: '0A000', severity: 'ERROR' });

    const stats = (await show('STATS')).map((r) => r.database);
    expect(stats).toContain('p0');
    expect(stats).toContain('p1');
    expect(stats).not.toContain('appdb');
  });
});

describe('SHOW CLIENTS and SERVERS say which connections are replication connections', () => {
  it('replication = logical for a replication=database client and its server connection, none for the rest', async () => {
    const c = getCluster();
    const trust = trustSettings();
    const pgmux = await startPgmux({ ...trust, users: { ...(trust.users as object), [c.superuser]: { password: c.superuserPassword } }, admin_users: 'app' });
    const admin = new pg.Client({ connectionString: pgmux.url('app', 'pgbouncer') });
    const walsender = new pg.Client({ host: '127.0.0.1', port: pgmux.port, user: c.superuser, database: 'postgres', replication: 'database' } as pg.ClientConfig);
    try {
      await Promise.all([admin.connect(), walsender.connect()]);
      const clients = (await admin.query('SHOW CLIENTS')).rows;
      expect(clients.find((r) => r.user === c.superuser)).toMatchObject({ replication: 'logical' });
      expect(clients.find((r) => r.user === 'app')).toMatchObject({ replication: 'none' });
      expect((await admin.query('SHOW SERVERS')).rows.find((r) => r.user === c.superuser)).toMatchObject({ replication: 'logical' });
    } finally {
      await Promise.all([admin.end(), walsender.end()]);
      await pgmux.stop();
    }
  });
});
