import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createLogger } from '../src/logging.ts';
import { freePort } from '../src/embedded/cluster.ts';
import { groupId } from '../src/os-ids.ts';
import { listenProblem } from '../src/cli/listen-check.ts';
import { CliProcess, runCli } from './helpers/cli.ts';
import { psql } from './helpers/clients.ts';
import { startPgmux, type RunningPgmux } from './helpers/pgmux.ts';
import { tempDir } from './helpers/temp.ts';
import { makeTestCerts } from './helpers/tls.ts';
import { getCluster } from './cluster-context.ts';

const started: RunningPgmux[] = [];
async function pgmuxWith(overrides: Record<string, unknown>, logger?: ReturnType<typeof createLogger>): Promise<RunningPgmux> {
  const p = await startPgmux(overrides, logger === undefined ? {} : { logger });
  started.push(p);
  return p;
}

afterEach(async () => {
  for (const p of started.splice(0)) await p.stop();
});

const password = () => getCluster().roles.app.password;

/**
 * A start refused for an address in use: the server's EADDRINUSE, or, from
 * the command line (worker processes, PGMUX_TEST_WORKERS), its check before
 * start-up, which says so in words.
 */
const ADDRESS_IN_USE = /EADDRINUSE|the address is already in use/;

/** A libpq connection string through the Unix-domain socket in `dir`. */
const viaSocket = (dir: string, port: number, user = 'app', database = 'appdb', pw = password()) =>
  `host=${dir} port=${port} user=${user} dbname=${database} password=${pw}`;

/** A socket file left by a process that was killed: nobody listens on it. */
async function staleSocket(file: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(file)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  await new Promise((r) => child.once('exit', r));
  expect((await lstat(file)).isSocket()).toBe(true);
}

describe('the Unix-domain socket', () => {
  it('is .s.PGSQL.PORT in unix_socket_dir with mode 0777; psql, node-postgres and the admin console connect through it; it is removed at stop', async () => {
    const dir = await tempDir('pgmux-sock-');
    const pgmux = await pgmuxWith({ unix_socket_dir: dir, admin_users: 'app' });
    const file = path.join(dir, `.s.PGSQL.${pgmux.port}`);
    const st = await lstat(file);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o777);
    expect(pgmux.server.listening().unixSocket).toBe(file);

    expect(await psql(viaSocket(dir, pgmux.port), 'SELECT current_database()')).toBe('appdb');
    const client = new pg.Client({ host: dir, port: pgmux.port, user: 'app', database: 'appdb', password: password() });
    await client.connect();
    try {
      expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await client.end();
    }
    expect(await psql(viaSocket(dir, pgmux.port, 'app', 'pgmux'), 'SHOW VERSION')).toMatch(/^pgmux/);

    await pgmux.server.stop();
    expect(existsSync(file)).toBe(false);
  });

  it('takes unix_socket_mode and unix_socket_group', async () => {
    const dir = await tempDir('pgmux-sock-', 0o755);
    const pgmux = await pgmuxWith({ unix_socket_dir: dir, unix_socket_mode: '0770', unix_socket_group: 'postgres' });
    const st = await lstat(path.join(dir, `.s.PGSQL.${pgmux.port}`));
    expect(st.mode & 0o777).toBe(0o770);
    expect(st.gid).toBe(groupId('postgres'));
    // The postgres OS user gets in by its group (connect needs write permission on the socket).
    const out = await new Promise<string>((resolve) => {
      const p = spawn('runuser', ['-u', 'postgres', '--', 'psql', '-X', '-At', '-c', 'SELECT 1', viaSocket(dir, pgmux.port)]);
      let text = '';
      p.stdout.on('data', (d) => (text += d));
      p.stderr.on('data', (d) => (text += d));
      p.on('close', () => resolve(text.trim()));
    });
    expect(out).toBe('1');
  });

  it('an unknown unix_socket_group stops the start, leaving no socket', async () => {
    const dir = await tempDir('pgmux-sock-');
    await expect(pgmuxWith({ unix_socket_dir: dir, unix_socket_group: 'no-such-group-here' })).rejects.toThrow('unix_socket_group: no group "no-such-group-here"');
  });

  it('a socket file left by a process that died is replaced; one a server listens on stops the start', async () => {
    const dir = await tempDir('pgmux-sock-');
    const port = await freePort();
    const file = path.join(dir, `.s.PGSQL.${port}`);
    await staleSocket(file);
    const pgmux = await pgmuxWith({ listen: `127.0.0.1:${port}`, unix_socket_dir: dir });
    expect(await psql(viaSocket(dir, port), 'SELECT 1')).toBe('1');
    await pgmux.server.stop();

    const live = net.createServer();
    await new Promise<void>((r) => live.listen(file, r));
    try {
      await expect(pgmuxWith({ listen: `127.0.0.1:${port}`, unix_socket_dir: dir })).rejects.toThrow(
        `cannot listen on ${file}: another server is listening on it`,
      );
      // The TCP listener opened first is closed again: the port is free.
      const probe = net.createServer();
      await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(port, '127.0.0.1', resolve));
      await new Promise((r) => probe.close(r));
    } finally {
      await new Promise((r) => live.close(r));
    }
    await writeFile(file, 'not a socket');
    await expect(pgmuxWith({ listen: `127.0.0.1:${port}`, unix_socket_dir: dir })).rejects.toThrow('the path exists and is not a socket');
  });

  it('an empty unix_socket_dir means no socket', async () => {
    const pgmux = await pgmuxWith({ unix_socket_dir: '' });
    expect(pgmux.server.listening().unixSocket).toBeNull();
  });

  it('in the abstract namespace (@name) there is no file', async () => {
    const name = `@pgmux-test-${process.pid}-${Date.now()}`;
    const pgmux = await pgmuxWith({ unix_socket_dir: name });
    expect(await psql(viaSocket(name, pgmux.port), 'SELECT 1')).toBe('1');
  });

  it('clients on it have no address: failed logins are logged as from the "unix socket" and counted together for auth_failure_limit', async () => {
    const raw: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        raw.push(...chunk.toString().split('\n').filter((l: string) => l !== ''));
        cb();
      },
    });
    const dir = await tempDir('pgmux-sock-');
    const pgmux = await pgmuxWith({ unix_socket_dir: dir, auth_failure_limit: 2 }, createLogger({ level: 'info', format: 'json', destination: sink }));
    const attempt = (pw: string) => psql(viaSocket(dir, pgmux.port, 'app', 'appdb', pw), 'SELECT 1').then(() => 'ok', (e: Error) => e.message);
    expect(await attempt('wrong-1')).toContain('password authentication failed');
    expect(await attempt('wrong-2')).toContain('password authentication failed');
    // Locked out, even with the right password; TCP clients are not.
    expect(await attempt(password())).toContain('too many failed logins');
    expect(await psql(pgmux.url(), 'SELECT 1')).toBe('1');
    const lines = raw.map((l) => JSON.parse(l) as Record<string, unknown>);
    const warned = lines.filter((l) => /password authentication failed|auth_failure_limit/.test(String(l.msg)));
    expect(warned).toHaveLength(3);
    for (const l of warned) expect(l.addr).toBe('unix socket');
  });

  it('offers no TLS, and client_tls_sslmode = require does not apply to it (as PostgreSQL and PgBouncer)', async () => {
    const certs = await makeTestCerts([]);
    const dir = await tempDir('pgmux-sock-');
    const pgmux = await pgmuxWith({ unix_socket_dir: dir, client_tls_sslmode: 'require', client_tls_cert_file: certs.certFile, client_tls_key_file: certs.keyFile });
    expect(await psql(`${viaSocket(dir, pgmux.port)} sslmode=disable`, 'SELECT 1')).toBe('1');
    // An SSLRequest there is answered 'N' (libpq never sends one on a Unix-domain socket).
    const raw = net.connect(path.join(dir, `.s.PGSQL.${pgmux.port}`));
    const answer = await new Promise<string>((resolve, reject) => {
      raw.once('error', reject);
      raw.once('data', (d) => resolve(d.toString()));
      raw.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]));
    });
    raw.destroy();
    expect(answer).toBe('N');
    // TCP still requires it.
    await expect(psql(`${pgmux.url()}?sslmode=disable`, 'SELECT 1')).rejects.toThrow('SSL required');
  });
});

describe('the command line', () => {
  it('a socket some server answers on stops pgmux before anything starts; its own socket is there while it runs and gone after SIGTERM', async () => {
    const dir = await tempDir('pgmux-sock-');
    const port = await freePort();
    const file = path.join(dir, `.s.PGSQL.${port}`);
    const live = net.createServer();
    await new Promise<void>((r) => live.listen(file, r));
    try {
      const run = await runCli(['--endpoint', 'main=127.0.0.1:1', '--listen', `127.0.0.1:${port}`, '--unix-socket-dir', dir]);
      expect(run.code).toBe(1);
      expect(run.stderr).toBe(`pgmux: cannot listen on ${file}: another server is listening on it (another pgmux, PgBouncer or PostgreSQL?); choose another unix_socket_dir or port\n`);
    } finally {
      await new Promise((r) => live.close(r));
    }
    const pgmux = new CliProcess(['--endpoint', 'main=127.0.0.1:1', '--listen', `127.0.0.1:${port}`, '--unix-socket-dir', dir, '--log-format', 'json']);
    try {
      await pgmux.waitFor('"msg":"listening"');
      expect(pgmux.output).toContain(`"unixSocket":"${file}"`);
      expect((await lstat(file)).isSocket()).toBe(true);
      pgmux.signal('SIGTERM');
      expect((await pgmux.exited).code).toBe(0);
      expect(existsSync(file)).toBe(false);
    } finally {
      await pgmux.kill();
    }
  });
});

describe('listen: several addresses', () => {
  it('listens on each address of a list, sharing one free port for port 0', async () => {
    const pgmux = await pgmuxWith({ listen: '127.0.0.1:0, [::1]:0' });
    const { tcp } = pgmux.server.listening();
    expect(tcp.map((a) => a.host)).toEqual(['127.0.0.1', '::1']);
    expect(tcp[1].port).toBe(tcp[0].port);
    const pw = encodeURIComponent(password());
    expect(await psql(`postgresql://app:${pw}@127.0.0.1:${pgmux.port}/appdb`, 'SELECT 1')).toBe('1');
    expect(await psql(`postgresql://app:${pw}@[::1]:${pgmux.port}/appdb`, 'SELECT 1')).toBe('1');
  });

  it('"*" is every IPv4 and IPv6 address, each listener its own', async () => {
    const pgmux = await pgmuxWith({ listen: '*:0' });
    const { tcp } = pgmux.server.listening();
    expect(tcp.map((a) => a.host)).toEqual(['0.0.0.0', '::']);
    const pw = encodeURIComponent(password());
    expect(await psql(`postgresql://app:${pw}@127.0.0.1:${pgmux.port}/appdb`, 'SELECT 1')).toBe('1');
    expect(await psql(`postgresql://app:${pw}@[::1]:${pgmux.port}/appdb`, 'SELECT 1')).toBe('1');
  });

  it('a host name is every address it resolves to', async () => {
    const pgmux = await pgmuxWith({ listen: 'localhost:0' });
    expect(pgmux.server.listening().tcp.map((a) => a.host)).toContain('127.0.0.1');
  });

  it('so_reuseport: pgmux processes that all set it share a port, and one stopping leaves the other serving (a rolling restart)', async () => {
    const port = await freePort();
    const first = await pgmuxWith({ listen: `127.0.0.1:${port}`, so_reuseport: true });
    // The check before start-up agrees.
    expect(await listenProblem(`127.0.0.1:${port}`, 'listen', true)).toBeNull();
    expect(await listenProblem(`127.0.0.1:${port}`, 'listen')).toContain('the address is already in use');
    await expect(pgmuxWith({ listen: `127.0.0.1:${port}` })).rejects.toThrow(ADDRESS_IN_USE);
    const second = await pgmuxWith({ listen: `127.0.0.1:${port}`, so_reuseport: true });
    await first.server.stop();
    for (let i = 0; i < 5; i++) expect(await psql(second.url(), 'SELECT 1')).toBe('1');
  });

  it('a taken address closes the listeners already open', async () => {
    const port = await freePort();
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(port, '::1', r));
    try {
      await expect(pgmuxWith({ listen: `127.0.0.1:${port},[::1]:${port}` })).rejects.toThrow(ADDRESS_IN_USE);
      const probe = net.createServer();
      await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(port, '127.0.0.1', resolve));
      await new Promise((r) => probe.close(r));
    } finally {
      await new Promise((r) => taken.close(r));
    }
  });
});
