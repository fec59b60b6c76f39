import { describe, expect, it } from 'vitest';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { checkConfiguredFiles } from '../src/cli/config-files.ts';
import { loadConfig } from '../src/config/load.ts';
import { ConfigSchema } from '../src/config/schema.ts';
import { startupMessage } from '../src/protocol/messages.ts';
import { getCluster } from './cluster-context.ts';
import { startPgmux } from './helpers/pgmux.ts';
import { psql, RawClient } from './helpers/clients.ts';
import { tempDir } from './helpers/temp.ts';

const RULES = [
  '# TYPE  DATABASE   USER   ADDRESS        METHOD',
  'local   all        all                   trust',
  'hostssl all        all    127.0.0.1/32   scram-sha-256',
  'host    all        other  127.0.0.1/32   reject',
  'host    appdb      app    127.0.0.1/32   scram-sha-256',
  'host    postgres   app    127.0.0.1/32   password',
  'host    pgbouncer  app    127.0.0.1/32   md5',
].join('\n');

/** The code of the first AuthenticationRequest pgmux sends a client of `database` (3: cleartext password, 10: SASL). */
async function authRequest(port: number, user: string, database: string): Promise<number> {
  const c = await RawClient.connect(port);
  try {
    c.write(startupMessage([['user', user], ['database', database]]));
    const r = await c.until((m) => m.type === 'R' || m.type === 'E');
    if (r?.type !== 'R') throw new Error(`no AuthenticationRequest: ${c.errorMessage()}`);
    return r.body.readInt32BE(0);
  } finally {
    c.close();
  }
}

/** The SQLSTATE and message a login is refused with. */
async function refusal(url: string): Promise<{ code?: string; message: string }> {
  const client = new pg.Client({ connectionString: url });
  const err = await client.connect().then(
    () => client.end().then(() => null),
    (e: { code?: string; message: string }) => e,
  );
  if (err === null) throw new Error('login succeeded');
  return { code: err.code, message: err.message };
}

describe('auth_type = hba', () => {
  it('each client gets the method of the first rule covering its connection, database and user; no rule or reject is PostgreSQL\'s 28000', async () => {
    const c = getCluster();
    const dir = await tempDir('pgmux-hba-');
    const file = path.join(dir, 'pg_hba.conf');
    await writeFile(file, RULES);
    const pgmux = await startPgmux({
      auth_type: 'hba',
      auth_hba_file: file,
      unix_socket_dir: dir,
      admin_users: 'app',
      endpoints: { main: { nodes: [`postgresql://${c.primary.host}:${c.primary.port}`] } },
      // Trusted clients are logged in to the server with this.
      users: { app: { password: c.roles.app.password } },
    });
    try {
      expect(await psql(pgmux.url('app', 'appdb'), 'SELECT current_database()')).toBe('appdb');
      expect(await authRequest(pgmux.port, 'app', 'appdb')).toBe(10);
      expect(await authRequest(pgmux.port, 'app', 'postgres')).toBe(3);
      expect(await psql(pgmux.url('app', 'postgres'), 'SELECT current_database()')).toBe('postgres');
      await expect(psql(pgmux.url('app', 'appdb', 'wrong'), 'SELECT 1')).rejects.toThrow(/password authentication failed for user "app"/);
      // The admin console is a database like any other to the rules (md5 with a SCRAM secret is SCRAM).
      expect(await psql(pgmux.url('app', 'pgbouncer'), 'SHOW VERSION')).toMatch(/pgmux/);

      expect(await refusal(pgmux.url('other', 'appdb'))).toEqual({
        code: '28000',
        message: 'pg_hba.conf rejects connection for host "127.0.0.1", user "other", database "appdb", no encryption',
      });
      expect(await refusal(pgmux.url('app', 'template1'))).toEqual({
        code: '28000',
        message: 'no pg_hba.conf entry for host "127.0.0.1", user "app", database "template1", no encryption',
      });
      // The Unix-domain socket: local rules, here trust, whatever the password.
      expect(await psql(`host=${dir} port=${pgmux.port} user=app dbname=appdb password=not-it`, 'SELECT current_user')).toBe('app');
    } finally {
      await pgmux.stop();
    }
  });

  it('a reload reads the file again; a bad file leaves the running rules in place', async () => {
    const dir = await tempDir('pgmux-hba-');
    const file = path.join(dir, 'pg_hba.conf');
    await writeFile(file, 'host all all 127.0.0.1/32 scram-sha-256\n');
    // A reload takes log_level from the configuration: keep the test quiet.
    const pgmux = await startPgmux({ auth_type: 'hba', auth_hba_file: file, log_level: 'fatal' });
    try {
      expect(await psql(pgmux.url('app', 'appdb'), 'SELECT 1')).toBe('1');
      await writeFile(file, 'host all app 127.0.0.1/32 reject\nhost all all 127.0.0.1/32 scram-sha-256\n');
      await pgmux.server.reload(pgmux.server.currentConfig);
      expect((await refusal(pgmux.url('app', 'appdb'))).message).toMatch(/^pg_hba.conf rejects connection for host "127.0.0.1", user "app"/);
      expect(await psql(pgmux.url('other', 'appdb'), 'SELECT 1')).toBe('1');
      await writeFile(file, 'host all all 127.0.0.1/32 peer\n');
      await expect(pgmux.server.reload(pgmux.server.currentConfig)).rejects.toThrow(/pg_hba.conf:1: authentication method "peer" is not supported/);
      expect((await refusal(pgmux.url('app', 'appdb'))).code).toBe('28000');
      expect(await psql(pgmux.url('other', 'appdb'), 'SELECT 1')).toBe('1');
    } finally {
      await pgmux.stop();
    }
  });

  it('configuration: auth_type = hba needs auth_hba_file; its problems are found before start; pgbouncer.ini loads both', async () => {
    expect(ConfigSchema.safeParse({ auth_type: 'hba' }).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toEqual([
      'auth_hba_file: auth_type = hba needs auth_hba_file, the file of rules',
    ]);
    const dir = await tempDir('pgmux-hba-');
    const file = path.join(dir, 'hba.conf');
    await writeFile(file, 'host all +admins 10.0.0.0/8 md5\nhost all all all ldap\n');
    const err = await checkConfiguredFiles(ConfigSchema.parse({ auth_type: 'hba', auth_hba_file: file })).then(() => null, (e: Error) => e);
    expect(err?.message.split('\n')).toEqual([
      `${file}:1: user "+admins": group membership (+role) is not supported: pgmux does not look up role membership; list the users, or name a file of them with @file`,
      `${file}:2: authentication method "ldap" is not supported: pgmux has no LDAP`,
    ]);
    const ini = path.join(dir, 'pgbouncer.ini');
    await writeFile(ini, `[pgbouncer]\nauth_type = hba\nauth_hba_file = ${file}\n`);
    expect((await loadConfig([ini], {})).config).toMatchObject({ auth_type: 'hba', auth_hba_file: file });
    // In a TOML file, a relative auth_hba_file is relative to the file.
    const toml = path.join(dir, 'pgmux.toml');
    await writeFile(toml, 'auth_type = "hba"\nauth_hba_file = "hba.conf"\n');
    expect((await loadConfig(['--config', toml], {})).config.auth_hba_file).toBe(file);
  });
});
