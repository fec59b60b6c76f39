import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { loadConfig } from '../src/config/load.ts';
import { scalarSettings } from '../src/config/introspect.ts';
import { PGBOUNCER_KEYS } from '../src/config/pgbouncer-keys.ts';
import { PgmuxServer } from '../src/server.ts';
import { getCluster } from './cluster-context.ts';
import { startPgmux, trustSettings, writeAuthFile, type RunningPgmux } from './helpers/pgmux.ts';
import { tempDir } from './helpers/temp.ts';
import { RawClient } from './helpers/clients.ts';
import { query } from '../src/protocol/messages.ts';

type PgErr = Error & { code?: string; severity?: string; detail?: string };

const failure = (p: Promise<unknown>): Promise<PgErr> =>
  p.then(
    () => {
      throw new Error('expected an error');
    },
    (e: PgErr) => e,
  );

describe('SET on the admin console: PgBouncer\'s settings, applied as RELOAD applies them', () => {
  let pgmux: RunningPgmux;
  let admin: pg.Client;
  beforeAll(async () => {
    pgmux = await startPgmux({ ...trustSettings(), admin_users: 'app' });
    admin = new pg.Client({ connectionString: pgmux.url('app', 'pgmux') });
    await admin.connect();
  });
  afterAll(async () => {
    await admin.end();
    await pgmux.stop();
  });

  const configValue = async (key: string) => (await admin.query('SHOW CONFIG')).rows.find((r) => r.key === key)?.value;

  it('takes PgBouncer\'s names and values (= or TO, quoted or not), with PgBouncer\'s command tag', async () => {
    const set = async (sql: string) => (await admin.query(sql)).command;
    expect(await set('SET default_pool_size = 3')).toBe('SET');
    expect(await configValue('default_pool_size')).toBe('3');
    await admin.query("SET server_check_query = 'select 2'");
    expect(await configValue('server_check_query')).toBe('select 2');
    await admin.query('SET server_idle_timeout TO 30');
    expect(await configValue('server_idle_timeout')).toBe('30');
    await admin.query('SET server_lifetime = 1800.5');
    expect(await configValue('server_lifetime')).toBe('1800.5');
    await admin.query('SET query_wait_timeout = 20; ');
    expect(await configValue('query_wait_timeout')).toBe('20');
    // Names pgmux spells otherwise, and PgBouncer's values.
    await admin.query('SET max_user_client_connections = 50');
    expect(await configValue('max_user_client_conn')).toBe('50');
    await admin.query('SET shutdown_wait_timeout = 12');
    expect(await configValue('shutdown_timeout')).toBe('12');
    await admin.query('SET verbose = 2');
    expect(await configValue('log_level')).toBe('trace');
    // With worker processes (PGMUX_TEST_WORKERS) the test's logger takes the level their reload lines name, which come over a pipe.
    await vi.waitFor(() => expect(pgmux.server.log.level).toBe('trace'), { timeout: 10_000 });
    await admin.query('SET verbose = 0');
    await admin.query('SET auth_type = plain');
    expect(await configValue('auth_type')).toBe('password');
    await admin.query("SET auth_type = 'trust'");
    // And pgmux's own names.
    await admin.query('SET log_per_node_statement = on');
    expect(await configValue('log_per_node_statement')).toBe('true');
    await admin.query('SET server_check_delay = 0');
    expect(await configValue('server_check_delay')).toBe('0');
    // The tag names the setting and value, as PgBouncer's does.
    const raw = await RawClient.login(pgmux.port, 'app', 'pgmux');
    raw.write(query('SET server_reset_query = DISCARD'));
    await raw.until((m) => m.type === 'Z');
    const complete = raw.messages.find((m) => m.type === 'C')!;
    expect(complete.body.subarray(0, complete.body.length - 1).toString()).toBe('SET server_reset_query=DISCARD');
    raw.close();
    await admin.query("SET server_reset_query = 'DISCARD ALL'");
  });

  it('a changed setting takes effect at once: max_client_conn, pool_mode, stats_users', async () => {
    const first = new pg.Client({ connectionString: pgmux.url() });
    await first.connect();
    await admin.query('SET max_client_conn = 1');
    const second = new pg.Client({ connectionString: pgmux.url() });
    second.on('error', () => {});
    expect(await failure(second.connect())).toMatchObject({ code: '53300' });
    await admin.query('SET max_client_conn = 100');
    await first.end();

    await admin.query('SET pool_mode = transaction');
    const c = new pg.Client({ connectionString: pgmux.url() });
    await c.connect();
    await c.query('SELECT 1');
    const pool = (await admin.query('SHOW POOLS')).rows.find((r) => r.database === 'appdb' && r.user === 'app');
    expect(pool.pool_mode).toBe('transaction');
    await c.end();
    await admin.query('SET pool_mode = session');

    const refused = new pg.Client({ connectionString: pgmux.url('other', 'pgbouncer') });
    refused.on('error', () => {});
    expect(await failure(refused.connect())).toMatchObject({ code: '42501' });
    await admin.query('SET stats_users = other');
    const stats = new pg.Client({ connectionString: pgmux.url('other', 'pgbouncer') });
    await stats.connect();
    expect((await stats.query('SHOW VERSION')).rows).toHaveLength(1);
    expect(await failure(stats.query('SET stats_users = other'))).toMatchObject({ code: '42501', severity: 'ERROR' });
    await stats.end();
    await admin.query("SET stats_users = ''");
  });

  it('every setting PgBouncer changes at run time: SET where pgmux has it, else an ERROR naming it', async () => {
    // The settings PgBouncer's users SET most, with a value each takes.
    const online: [string, string][] = [
      ['pool_mode', 'session'], ['default_pool_size', '3'], ['max_client_conn', '100'], ['max_db_connections', '0'], ['max_user_connections', '0'],
      ['max_db_client_connections', '0'], ['max_user_client_connections', '0'], ['auth_type', 'trust'], ['verbose', '0'], ['query_timeout', '0'],
      ['query_wait_timeout', '120'], ['client_idle_timeout', '0'], ['idle_transaction_timeout', '0'], ['server_idle_timeout', '600'],
      ['server_lifetime', '3600'], ['server_check_delay', '30'], ['server_check_query', 'select 1'], ['server_reset_query', 'DISCARD ALL'],
      ['stats_period', '60'], ['log_connections', '1'], ['log_disconnections', '1'], ['admin_users', 'app'], ['stats_users', ''],
      ['client_login_timeout', '60'], ['server_connect_timeout', '15'], ['max_prepared_statements', '200'], ['track_extra_parameters', 'search_path'],
    ];
    const pgmuxHas = (name: string) => {
      const rule = PGBOUNCER_KEYS[name];
      const to = rule?.kind === 'map' ? (rule.to ?? name) : name;
      return ['verbose'].includes(name) || scalarSettings().some((x) => x.key === to);
    };
    for (const [name, value] of online) {
      const r = await admin.query(`SET ${name} = '${value}'`).then(
        () => null,
        (e: PgErr) => e,
      );
      if (pgmuxHas(name)) expect(r, name).toBeNull();
      else {
        expect(r, name).toMatchObject({ code: '0A000', severity: 'ERROR' });
        expect(r!.message, name).toBe(`pgmux has no setting like PgBouncer's "${name}"`);
      }
    }
    // What pgmux has no equivalent of at all, and one it will not take.
    expect(await failure(admin.query('SET server_round_robin = 1'))).toMatchObject({ code: '0A000', message: 'pgmux has no setting like PgBouncer\'s "server_round_robin"' });
    const refused = await failure(admin.query("SET server_tls_cert_file = '/etc/cert.pem'"));
    expect(refused).toMatchObject({ code: '0A000', message: 'PgBouncer\'s setting "server_tls_cert_file" is not supported' });
    expect(refused.detail).toBeTruthy();
    await admin.query('SET default_pool_size = 3');
  });

  it('a setting only a restart changes, or one nobody has, is an ERROR saying so', async () => {
    for (const name of ['listen_port', 'listen_addr', 'unix_socket_dir', 'pidfile', 'logfile', 'user', 'listen', 'metrics_listen', 'log_format']) {
      const err = await failure(admin.query(`SET ${name} = 1`));
      expect(err, name).toMatchObject({ code: '55P02', severity: 'ERROR' });
      expect(err.message, name).toBe(`parameter "${name}" cannot be changed without restarting pgmux`);
    }
    expect(await failure(admin.query('SET nosuch = 1'))).toMatchObject({ code: '42704', message: 'unrecognized configuration parameter "nosuch"' });
    // The console answers the next command; nothing changed.
    expect(await configValue('default_pool_size')).toBe('3');
  });

  it('a value the setting cannot take is 22023 and changes nothing', async () => {
    for (const sql of ['SET default_pool_size = ten', 'SET default_pool_size = 0', 'SET pool_mode = sometimes', 'SET server_lifetime = -1', 'SET log_per_node_statement = maybe', 'SET verbose = loud', 'SET auth_type = pam']) {
      const err = await failure(admin.query(sql));
      expect(err, sql).toMatchObject({ code: '22023', severity: 'ERROR' });
      expect(err.message, sql).toMatch(/^invalid value for parameter "[a-z_]+": "/);
    }
    expect(await configValue('default_pool_size')).toBe('3');
    expect(await configValue('pool_mode')).toBe('session');
  });

  it('SET that the reload refuses (a file that cannot be read) is F0000, and the running configuration stays', async () => {
    const before = pgmux.server.currentConfig.auth_file;
    const err = await failure(admin.query("SET auth_file = '/nonexistent/userlist.txt'"));
    expect(err).toMatchObject({ code: 'F0000', severity: 'ERROR' });
    expect(pgmux.server.currentConfig.auth_file).toBe(before);
  });

  it('a driver\'s session settings are answered as PgBouncer does, with a NOTICE', async () => {
    const notices: string[] = [];
    const onNotice = (n: { message?: string }) => notices.push(n.message ?? '');
    admin.on('notice', onNotice);
    try {
      expect((await admin.query("SET client_encoding = 'UTF8'")).command).toBe('SET');
      expect(notices).toEqual(['SET ignored']);
      expect((await admin.query('SHOW standard_conforming_strings')).rows).toEqual([{ standard_conforming_strings: 'on' }]);
    } finally {
      admin.off('notice', onNotice);
    }
  });
});

describe('RELOAD of a configuration file that does not load', () => {
  it('is F0000 in PgBouncer\'s words with the reasons, keeps the running configuration and clients, and a fixed file loads', async () => {
    const c = getCluster();
    const dir = await tempDir('pgmux-reload-');
    const ini = path.join(dir, 'pgbouncer.ini');
    const authFile = await writeAuthFile();
    const write = (lifetime: string) =>
      writeFile(
        ini,
        [
          '[databases]',
          `appdb = host=${c.primary.host} port=${c.primary.port}`,
          '[pgbouncer]',
          'listen_addr = 127.0.0.1',
          'listen_port = 6432',
          `auth_file = ${authFile}`,
          'admin_users = app',
          'pool_mode = session',
          `server_lifetime = ${lifetime}`,
        ].join('\n') + '\n',
        { mode: 0o600 },
      );
    await write('0');
    const source = async () => (await loadConfig([ini], {})).config;
    const server = new PgmuxServer({ ...(await source()), listen: '127.0.0.1:0' }, { logger: pino({ level: 'silent' }) });
    server.reloadSource = source;
    const { port } = await server.start();
    const url = (db: string) => `postgresql://app:${encodeURIComponent(c.roles.app.password)}@127.0.0.1:${port}/${db}`;
    const admin = new pg.Client({ connectionString: url('pgbouncer') });
    const client = new pg.Client({ connectionString: url('appdb') });
    try {
      await Promise.all([admin.connect(), client.connect()]);
      await write('invalid_server_lifetime');
      const err = await failure(admin.query('RELOAD'));
      expect(err).toMatchObject({ code: 'F0000', severity: 'ERROR', message: 'RELOAD failed, see logs for additional details' });
      expect(err.detail).toContain('server_lifetime');
      expect(server.currentConfig.server_lifetime).toBe(0);
      expect((await client.query('SELECT 1 AS one')).rows[0].one).toBe(1);
      expect((await admin.query('SHOW VERSION')).rows).toHaveLength(1);
      await write('120');
      expect((await admin.query('RELOAD')).command).toBe('RELOAD');
      expect(server.currentConfig.server_lifetime).toBe(120);
    } finally {
      await Promise.all([admin.end(), client.end()]);
      await server.stop();
    }
  });
});
