import { describe, expect, it } from 'vitest';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config/load.ts';
import { psql } from './helpers/clients.ts';
import { getCluster } from './cluster-context.ts';
import { PgmuxServer } from '../src/server.ts';
import { freePort } from '../src/embedded/cluster.ts';
import pino from 'pino';

const INI = (primary: string, port: number, userlist: string) => `
; a pgbouncer.ini as it is found in the wild
[databases]
appdb = host=${primary.split(':')[0]} port=${primary.split(':')[1]} dbname=appdb pool_size=3
reports = host=${primary.split(':')[0]} port=${primary.split(':')[1]} dbname=appdb pool_mode=session connect_query='SELECT 1'
* = host=${primary.split(':')[0]} port=${primary.split(':')[1]}

[users]
app = pool_mode=transaction max_user_connections=50

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
auth_type = scram-sha-256
auth_file = ${userlist}
auth_user = pgbouncer_auth
auth_query = SELECT usename, passwd FROM pg_shadow WHERE usename=$1
pool_mode = session
default_pool_size = 20
max_client_conn = 500
server_reset_query = DISCARD ALL
server_check_query = select 1
server_check_delay = 30
client_tls_sslmode = disable
server_tls_sslmode = prefer
admin_users = app
stats_users = other
logfile = /var/log/pgbouncer/pgbouncer.log
pidfile = /var/run/pgbouncer/pgbouncer.pid
ignore_startup_parameters = extra_float_digits
`;

describe('pgbouncer.ini as a drop-in', () => {
  it('maps every key pgmux knows and names the others once, and serves clients with it', async () => {
    const c = getCluster();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pgmux-ini-'));
    const userlist = path.join(dir, 'userlist.txt');
    await writeFile(userlist, Object.entries(c.roles).map(([n, r]) => `"${n}" "${r.verifier}"`).join('\n') + '\n');
    const port = await freePort();
    const file = path.join(dir, 'pgbouncer.ini');
    await writeFile(file, INI(`${c.primary.host}:${c.primary.port}`, port, userlist));
    const loaded = await loadConfig([file], {});
    expect(loaded.config).toMatchObject({
      listen: `127.0.0.1:${port}`,
      auth_type: 'scram-sha-256',
      auth_file: userlist,
      auth_user: 'pgbouncer_auth',
      pool_mode: 'session',
      default_pool_size: 20,
      max_client_conn: 500,
      server_tls_sslmode: 'prefer',
      admin_users: 'app',
      stats_users: 'other',
      default_endpoint: 'default',
      users: { app: { pool_mode: 'transaction' } },
    });
    expect(loaded.config.endpoints.appdb).toEqual({ nodes: [`postgresql://${c.primary.host}:${c.primary.port}/appdb`], default_pool_size: 3 });
    expect(loaded.config.endpoints.reports.pool_mode).toBe('session');
    expect(loaded.warnings).toHaveLength(1);
    for (const k of ['pgbouncer.server_check_query', 'pgbouncer.server_check_delay', 'pgbouncer.logfile', 'pgbouncer.pidfile', 'pgbouncer.ignore_startup_parameters', 'databases.reports.connect_query', 'users.app.max_user_connections']) {
      expect(loaded.warnings[0]).toContain(k);
    }
    expect((await loadConfig(['--config', file], {})).config).toEqual(loaded.config);

    const server = new PgmuxServer({ ...loaded.config, server_tls_sslmode: 'disable', users: { ...loaded.config.users, app: { ...loaded.config.users.app, password: c.roles.app.password } } }, { logger: pino({ level: 'silent' }) });
    await server.start();
    try {
      const url = (db: string) => `postgresql://app:${c.roles.app.password}@127.0.0.1:${port}/${db}`;
      expect(await psql(url('appdb'), 'SELECT current_database()')).toBe('appdb');
      expect(await psql(url('reports'), 'SELECT current_database()')).toBe('appdb');
      expect(await psql(url('pgbouncer'), 'SHOW VERSION')).toMatch(/^pgmux/);
    } finally {
      await server.stop();
    }
  });

  it('refuses %include and lines outside sections with the line number', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pgmux-ini-'));
    const file = path.join(dir, 'bad.ini');
    await writeFile(file, '[pgbouncer]\n%include /etc/other.ini\n');
    await expect(loadConfig([file], {})).rejects.toThrow(/bad.ini:2: %include is not supported/);
    await writeFile(file, 'listen_port = 1\n[pgbouncer]\n');
    await expect(loadConfig([file], {})).rejects.toThrow(/bad.ini:1: expected "key = value" inside a \[section\]/);
  });
});
