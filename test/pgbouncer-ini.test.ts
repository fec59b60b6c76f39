import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../src/config/errors.ts';
import { loadConfig } from '../src/config/load.ts';
import { ConfigSchema } from '../src/config/schema.ts';
import { CliProcess } from './helpers/cli.ts';
import { tempDir } from './helpers/temp.ts';
import { psql } from './helpers/clients.ts';
import { getCluster } from './cluster-context.ts';
import { PgmuxServer } from '../src/server.ts';
import { freePort } from '../src/embedded/cluster.ts';
import { sleep } from './helpers/pgmux.ts';
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
application_name_add_host = 1
`;

describe('pgbouncer.ini as a drop-in', () => {
  it('maps every key pgmux knows and names the others once, and serves clients with it', async () => {
    const c = getCluster();
    const dir = await tempDir('pgmux-ini-');
    const userlist = path.join(dir, 'userlist.txt');
    await writeFile(userlist, Object.entries(c.roles).map(([n, r]) => `"${n}" "${r.verifier}"`).join('\n') + '\n', { mode: 0o600 });
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
      users: { app: { pool_mode: 'transaction', max_user_connections: 50 } },
      log_file: '/var/log/pgbouncer/pgbouncer.log',
      pid_file: '/var/run/pgbouncer/pgbouncer.pid',
    });
    expect(loaded.config.endpoints.appdb).toEqual({ nodes: [`postgresql://${c.primary.host}:${c.primary.port}/appdb`], default_pool_size: 3 });
    expect(loaded.config.endpoints.reports).toMatchObject({ pool_mode: 'session', connect_query: 'SELECT 1' });
    expect(loaded.warnings).toHaveLength(1);
    expect(loaded.config.ignore_startup_parameters).toBe('extra_float_digits');
    for (const k of ['pgbouncer.application_name_add_host']) {
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
    const dir = await tempDir('pgmux-ini-');
    const file = path.join(dir, 'bad.ini');
    await writeFile(file, '[pgbouncer]\n%include /etc/other.ini\n');
    await expect(loadConfig([file], {})).rejects.toThrow(/bad.ini:2: %include is not supported/);
    await writeFile(file, 'listen_port = 1\n[pgbouncer]\n');
    await expect(loadConfig([file], {})).rejects.toThrow(/bad.ini:1: expected "key = value" inside a \[section\]/);
  });
});

/** The problems loading `text` as a pgbouncer.ini gives, one per line; fails the test if it loads. */
async function iniProblems(text: string): Promise<{ file: string; problems: string[] }> {
  const dir = await tempDir('pgmux-ini-');
  const file = path.join(dir, 'pgbouncer.ini');
  await writeFile(file, text);
  const err = await loadConfig([file], {}).then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(ConfigError);
  return { file, problems: [...(err as ConfigError).problems] };
}

async function iniConfig(text: string) {
  const dir = await tempDir('pgmux-ini-');
  const file = path.join(dir, 'pgbouncer.ini');
  await writeFile(file, text);
  return loadConfig([file], {});
}

describe('pgbouncer.ini strictness', () => {
  it('an unknown key in [pgbouncer] is an error with the likely key, not a warning', async () => {
    const { file, problems } = await iniProblems('[pgbouncer]\npool_mod = transaction\nlisten_prot = 7000\n[databases]\nx = host=h\n');
    expect(problems).toEqual([
      `${file}:2: unknown key in [pgbouncer] "pool_mod", did you mean "pool_mode"?`,
      `${file}:3: unknown key in [pgbouncer] "listen_prot", did you mean "listen_port"?`,
    ]);
  });

  it('unknown parameters of [databases] and [users] entries, and unknown sections, are errors too', async () => {
    const { file, problems } = await iniProblems('[pgbouncer]\n[databases]\nx = host=h pool_sise=3\n[users]\napp = pool_mde=session\n[databses]\ny = host=h\n');
    expect(problems).toEqual([
      `${file}:6: unknown section "databses", did you mean "databases"?`,
      `${file}:3: unknown parameter in [databases] x "pool_sise", did you mean "pool_size"?`,
      `${file}:5: unknown parameter in [users] app "pool_mde", did you mean "pool_mode"?`,
    ]);
  });

  it('an invalid number names the key and the value, never NaN', async () => {
    const { file, problems } = await iniProblems(
      '[pgbouncer]\ndefault_pool_size = ten\nquery_wait_timeout = soon\nlisten_port = 70000\nverbose = loud\n[databases]\nx = host=h port=fifty pool_size=2.5\n[users]\napp = pool_size=many\n',
    );
    expect(problems).toEqual([
      `${file}:2: default_pool_size = "ten": expected an integer`,
      `${file}:3: query_wait_timeout = "soon": expected a number of seconds`,
      `${file}:4: listen_port = 70000: expected 1-65535`,
      `${file}:5: verbose = "loud": expected an integer`,
      `${file}:7: port = "fifty": expected an integer`,
      `${file}:7: pool_size = "2.5": expected an integer`,
      `${file}:9: pool_size = "many": expected an integer`,
    ]);
    for (const p of problems) expect(p).not.toContain('NaN');
  });

  it('refuses, all at once, every setting whose loss would weaken security or change who logs in', async () => {
    const text = [
      '[pgbouncer]',
      'auth_type = hba',
      'auth_hba_file = /etc/pgbouncer/hba.conf',
      'client_tls_sslmode = verify-full',
      'client_tls_protocols = tlsv1.3',
      'server_tls_cert_file = /etc/pgbouncer/client.crt',
      'disable_pqexec = 1',
      'auth_dbname = authdb',
      'user =',
      '[databases]',
      'forced = host=h user=app password=forced-secret-1',
      'other = host=h auth_user=checker',
    ].join('\n');
    const { file, problems } = await iniProblems(text);
    expect(problems.map((p) => p.slice(file.length + 1))).toEqual([
      '4: client_tls_sslmode = verify-full is not supported yet: pgmux does not check client certificates; use require',
      '5: client_tls_protocols = tlsv1.3 is not supported: pgmux uses Node.js TLS defaults (TLS 1.2 and 1.3, its default cipher suites and curves) and cannot narrow them yet',
      '6: server_tls_cert_file = /etc/pgbouncer/client.crt is not supported: pgmux cannot present a client certificate to servers yet',
      '7: disable_pqexec = 1 is not supported: pgmux cannot refuse the simple query protocol yet',
    ]);
    expect(problems.join('\n')).not.toContain('forced-secret-1');
  });

  it('accepts the values of those settings that pgmux already honours', async () => {
    const { config, warnings } = await iniConfig(
      [
        '[pgbouncer]',
        'auth_type = plain',
        'auth_hba_file =',
        'client_tls_protocols = secure',
        'server_tls_protocols = tlsv1.2,tlsv1.3',
        'client_tls_ciphers = default',
        'disable_pqexec = 0',
        `user = ${os.userInfo().username}`,
        '[databases]',
        'x = host=h',
      ].join('\n'),
    );
    expect(config.auth_type).toBe('password');
    expect(warnings).toEqual([]);
  });

  it('listen_addr: an address (IPv6 in brackets), a list, or "*" for every IPv4 and IPv6 address; listen_port applies to each', async () => {
    expect((await iniConfig('[pgbouncer]\nlisten_addr = ::1\nlisten_port = 7000\n')).config.listen).toBe('[::1]:7000');
    expect((await iniConfig('[pgbouncer]\nlisten_addr = *\n')).config.listen).toBe('*:6432');
    expect((await iniConfig('[pgbouncer]\nlisten_addr = 127.0.0.1, ::1, db.example.com\nlisten_port = 7000\n')).config.listen).toBe(
      '127.0.0.1:7000,[::1]:7000,db.example.com:7000',
    );
  });

  it('unix_socket_dir, unix_socket_mode and unix_socket_group map; empty unix_socket_dir turns the socket off, an empty group is not set', async () => {
    expect((await iniConfig('[pgbouncer]\n')).config).toMatchObject({ unix_socket_dir: '/tmp', unix_socket_mode: '0777' });
    const { config } = await iniConfig('[pgbouncer]\nunix_socket_dir = /run/pgbouncer\nunix_socket_mode = 0770\nunix_socket_group = postgres\n');
    expect(config).toMatchObject({ unix_socket_dir: '/run/pgbouncer', unix_socket_mode: '0770', unix_socket_group: 'postgres' });
    const off = (await iniConfig('[pgbouncer]\nunix_socket_dir =\nunix_socket_group =\n')).config;
    expect(off.unix_socket_dir).toBe('');
    expect(off.unix_socket_group).toBeUndefined();
    const { problems } = await iniProblems('[pgbouncer]\nunix_socket_mode = rw-rw-rw-\n');
    expect(problems).toEqual([expect.stringContaining('unix_socket_mode: expected an octal file mode such as 0777, got "rw-rw-rw-"')]);
  });

  it('so_reuseport maps, 0 or 1', async () => {
    expect((await iniConfig('[pgbouncer]\nso_reuseport = 1\n')).config.so_reuseport).toBe(true);
    expect((await iniConfig('[pgbouncer]\nso_reuseport = 0\n')).config.so_reuseport).toBe(false);
    expect((await iniConfig('[pgbouncer]\n')).warnings).toEqual([]);
  });

  it('the client timeouts, stats_period and the log switches map; a [users] timeout of 0 or less is not set, as in PgBouncer', async () => {
    const { config, warnings } = await iniConfig(
      [
        '[pgbouncer]',
        'client_idle_timeout = 30',
        'idle_transaction_timeout = 5',
        'query_timeout = 10.5',
        'transaction_timeout = 60',
        'stats_period = 30',
        'log_connections = 0',
        'log_disconnections = 0',
        'log_pooler_errors = 0',
        'log_stats = 1',
        '[users]',
        'app = client_idle_timeout=7 query_timeout=0 idle_transaction_timeout=-1 transaction_timeout=3',
      ].join('\n'),
    );
    expect(config).toMatchObject({
      client_idle_timeout: 30,
      idle_transaction_timeout: 5,
      query_timeout: 10.5,
      transaction_timeout: 60,
      stats_period: 30,
      log_connections: false,
      log_disconnections: false,
      log_pooler_errors: false,
      log_stats: true,
    });
    expect(config.users.app).toEqual({ client_idle_timeout: 7, transaction_timeout: 3 });
    expect(warnings).toEqual([]);
    const { problems } = await iniProblems('[pgbouncer]\nlog_connections = yes\n');
    expect(problems).toEqual([expect.stringContaining('log_connections = "yes": expected an integer')]);
  });

  it('user maps: pgmux switches to that OS user once listening; empty is not set', async () => {
    expect((await iniConfig('[pgbouncer]\nuser = postgres\n')).config.user).toBe('postgres');
    expect((await iniConfig('[pgbouncer]\nuser =\n')).config.user).toBeUndefined();
  });

  it('an IPv6 host in [databases] becomes a valid node URL; a Unix socket directory is refused', async () => {
    const { config } = await iniConfig('[databases]\nv6 = host=::1 port=5433 dbname=app\nboth = host=10.0.0.1,fe80::2\n');
    expect(config.endpoints.v6.nodes).toEqual(['postgresql://[::1]:5433/app']);
    // Several hosts are one node's equivalent servers, as PgBouncer has them: never a primary and a replica.
    expect(config.endpoints.both.nodes).toEqual(['postgresql://10.0.0.1:5432,[fe80::2]:5432/both?load_balance_hosts=round-robin']);
    const { file, problems } = await iniProblems('[databases]\nsock = host=/var/run/postgresql\n');
    expect(problems).toEqual([`${file}:2: [databases] sock: host "/var/run/postgresql": pgmux connects to servers over TCP only; give a host name or address`]);
  });

  it('a host list takes load_balance_hosts (round-robin or disable) and one port, or one per host', async () => {
    const { config } = await iniConfig(
      '[databases]\nrr = host=a,b port=5433\noff = host=a,b,c port=1,2,3 load_balance_hosts=disable dbname=x\none = host=a load_balance_hosts=disable\n',
    );
    expect(config.endpoints.rr.nodes).toEqual(['postgresql://a:5433,b:5433/rr?load_balance_hosts=round-robin']);
    expect(config.endpoints.off.nodes).toEqual(['postgresql://a:1,b:2,c:3/x?load_balance_hosts=disable']);
    expect(config.endpoints.one.nodes).toEqual(['postgresql://a:5432/one']);
    const { file, problems } = await iniProblems('[databases]\nx = host=a,b port=1,2,3\ny = host=a,b load_balance_hosts=random\nz = host=a port=0\n');
    expect(problems).toEqual([
      `${file}:2: [databases] x: port = "1,2,3": expected one port, or one for each of the 2 hosts`,
      `${file}:3: [databases] y: load_balance_hosts = "random": expected round-robin or disable`,
      `${file}:4: [databases] z: port = 0: expected 1-65535`,
    ]);
  });

  it("keeps PgBouncer's defaults where pgmux's would be weaker: TLS to servers when offered, and its auth_query", async () => {
    const { config } = await iniConfig('[pgbouncer]\nauth_user = checker\n[databases]\nx = host=h\n');
    expect(config.server_tls_sslmode).toBe('prefer');
    expect(config.auth_query).toContain('rolvaliduntil');
    expect(config.auth_query).not.toBe(ConfigSchema.parse({}).auth_query);
    // Given ones win, as any setting.
    expect((await iniConfig('[pgbouncer]\nserver_tls_sslmode = disable\nauth_query = SELECT 1, 2\n')).config).toMatchObject({ server_tls_sslmode: 'disable', auth_query: 'SELECT 1, 2' });
  });

  it('pidfile is written at start and removed at stop; logfile gets the log lines', async () => {
    const c = getCluster();
    const dir = await tempDir('pgmux-ini-');
    const pidfile = path.join(dir, 'pgmux.pid');
    const logfile = path.join(dir, 'pgmux.log');
    const port = await freePort();
    const file = path.join(dir, 'pgbouncer.ini');
    await writeFile(
      file,
      `[databases]\nappdb = host=${c.primary.host} port=${c.primary.port}\n[pgbouncer]\nlisten_port = ${port}\nauth_type = trust\nserver_tls_sslmode = disable\npidfile = ${pidfile}\nlogfile = ${logfile}\n`,
    );
    const pgmux = new CliProcess([file]);
    try {
      for (let i = 0; i < 300 && !existsSync(logfile); i++) await sleep(20);
      for (let i = 0; i < 300 && !(await readFile(logfile, 'utf8').catch(() => '')).includes('listening'); i++) await sleep(20);
      expect(await readFile(logfile, 'utf8')).toContain('"msg":"listening"');
      expect((await readFile(pidfile, 'utf8')).trim()).toBe(String(pgmux.child.pid));
      // Standard output stays free of log lines.
      expect(pgmux.output).not.toContain('listening');
      pgmux.signal('SIGTERM');
      expect((await pgmux.exited).code).toBe(0);
      expect(existsSync(pidfile)).toBe(false);
      expect(await readFile(logfile, 'utf8')).toContain('"msg":"stopping"');
    } finally {
      await pgmux.kill();
    }
  });

  it('a pidfile naming a running process stops pgmux before it starts', async () => {
    const dir = await tempDir('pgmux-ini-');
    const pidfile = path.join(dir, 'pgmux.pid');
    await writeFile(pidfile, `${process.pid}\n`);
    const file = path.join(dir, 'pgbouncer.ini');
    await writeFile(file, `[databases]\nx = host=127.0.0.1 port=1\n[pgbouncer]\nlisten_port = ${await freePort()}\npidfile = ${pidfile}\n`);
    const pgmux = new CliProcess([file]);
    try {
      expect((await pgmux.exited).code).toBe(1);
      expect(pgmux.output).toContain(`pid_file "${pidfile}" names process ${process.pid}, which is running`);
      expect(await readFile(pidfile, 'utf8')).toBe(`${process.pid}\n`);
    } finally {
      await pgmux.kill();
    }
  });
});
