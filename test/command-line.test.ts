import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, open, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.ts';
import { freePort } from '../src/embedded/cluster.ts';
import { osUser } from '../src/os-ids.ts';
import { VERSION } from '../src/version.ts';
import { CLI, CliProcess, runCli } from './helpers/cli.ts';
import { psql } from './helpers/clients.ts';
import { sleep, writeAuthFile } from './helpers/pgmux.ts';
import { tempDir } from './helpers/temp.ts';
import { getCluster } from './cluster-context.ts';

/** Processes a test left running in the background (-d), stopped after it. */
const background = new Set<number>();
afterEach(async () => {
  for (const pid of background) {
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {
      // Already gone.
    }
    for (let i = 0; i < 100 && alive(pid); i++) await sleep(50);
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
  background.clear();
});

/** Whether a process runs; one that has exited but is not reaped yet (its parent, init, is slow to) does not. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const status = (() => {
    try {
      return readFileSync(`/proc/${pid}/status`, 'utf8');
    } catch {
      return 'State: Z (gone)';
    }
  })();
  return !/^State:\s+Z/m.test(status);
}

/** The real user id a process runs as, from /proc. */
async function uidOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
}

/** Arguments for a pgmux in front of the test cluster on a free port, files in `dir`. */
async function serving(dir: string): Promise<{ args: string[]; port: number; url: string }> {
  const c = getCluster();
  const port = await freePort();
  const authFile = await writeAuthFile();
  return {
    port,
    url: `postgresql://app:${encodeURIComponent(c.roles.app.password)}@127.0.0.1:${port}/appdb`,
    args: [
      '--endpoint', `main=${c.primary.host}:${c.primary.port}`, '--listen', `127.0.0.1:${port}`, '--auth-file', authFile,
      '--unix-socket-dir', dir, '--log-format', 'json',
    ],
  };
}

describe('PgBouncer\'s command-line switches', () => {
  it('-V prints the version, -h the switches', async () => {
    for (const flag of ['-V', '--version']) expect((await runCli([flag])).stdout).toBe(`pgmux ${VERSION}\n`);
    const help = (await runCli(['-h'])).stdout;
    for (const s of ['-d, --daemon', '-q, --quiet', '-v, --verbose', '-u, --user <user>', '-R, --reboot', '-V, --version', '-h, --help']) expect(help).toContain(s);
  });

  it('-R is refused with the reason, before anything starts', async () => {
    const run = await runCli(['-R', '--endpoint', 'main=127.0.0.1:1', '--listen', '127.0.0.1:0']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^pgmux: -R \(--reboot\) is not supported: PgBouncer's online restart takes the running process's sockets and connections over/);
    expect(run.stderr).toContain('restart with SIGTERM');
    expect(run.stdout).toBe('');
  });

  it('-v and -vv log more than log_level, each one level; -q writes no log lines but serves', async () => {
    expect((await loadConfig(['-v'], {})).config.log_level).toBe('debug');
    expect((await loadConfig(['-vv'], {})).config.log_level).toBe('trace');
    expect((await loadConfig(['-v', '-v', '-v'], {})).config.log_level).toBe('trace');
    expect((await loadConfig(['--log-level', 'warn', '--verbose'], {})).config.log_level).toBe('info');
    expect((await loadConfig(['-q'], {})).run).toEqual({ daemon: false, quiet: true, reboot: false });

    const dir = await tempDir('pgmux-cmd-');
    const s = await serving(dir);
    const verbose = new CliProcess([...s.args, '-v']);
    try {
      await verbose.waitFor('"msg":"listening"');
      expect(await psql(s.url, 'SELECT 1')).toBe('1');
      await verbose.waitFor('"level":20');
    } finally {
      await verbose.kill();
    }

    const quiet = new CliProcess([...s.args, '-q']);
    try {
      for (let i = 0; i < 200 && !existsSync(path.join(dir, `.s.PGSQL.${s.port}`)); i++) await sleep(25);
      expect(await psql(s.url, 'SELECT 1')).toBe('1');
      quiet.signal('SIGTERM');
      expect((await quiet.exited).code).toBe(0);
      expect(quiet.output).toBe('');
    } finally {
      await quiet.kill();
    }
  });

  it('-d needs pid_file and log_file, as PgBouncer', async () => {
    const run = await runCli(['-d', '--endpoint', 'main=127.0.0.1:1', '--listen', '127.0.0.1:0']);
    expect(run.code).toBe(2);
    expect(run.stderr).toBe('pgmux: invalid configuration\n-d (--daemon) needs pid_file and log_file (pidfile and logfile in a pgbouncer.ini)\n');
  });

  it('-d goes on in the background once listening: the command exits 0, the pid_file names the background pgmux, SIGTERM to it stops it', async () => {
    const dir = await tempDir('pgmux-cmd-');
    const s = await serving(dir);
    const pidFile = path.join(dir, 'pgmux.pid');
    const logFile = path.join(dir, 'pgmux.log');
    const started = await runCli([...s.args, '-d', '--pid-file', pidFile, '--log-file', logFile]);
    expect(started).toMatchObject({ code: 0, stdout: '', stderr: '' });
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    background.add(pid);
    expect(alive(pid)).toBe(true);
    // It already listens when the command returns.
    expect(await psql(s.url, 'SELECT 1')).toBe('1');
    expect(await readFile(logFile, 'utf8')).toContain('"msg":"listening"');
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 200 && alive(pid); i++) await sleep(25);
    expect(alive(pid)).toBe(false);
    expect(existsSync(pidFile)).toBe(false);
    expect(existsSync(path.join(dir, `.s.PGSQL.${s.port}`))).toBe(false);
  });

  it('-d: what stops the background pgmux from starting is said by the command, with its exit status', async () => {
    const dir = await tempDir('pgmux-cmd-');
    const s = await serving(dir);
    const pidFile = path.join(dir, 'pgmux.pid');
    // Only the background pgmux finds this: the pid_file names a running process.
    await writeFile(pidFile, `${process.pid}\n`);
    const run = await runCli([...s.args, '-d', '--pid-file', pidFile, '--log-file', path.join(dir, 'pgmux.log')]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`pid_file "${pidFile}" names process ${process.pid}, which is running`);
    // Nothing listens.
    await expect(psql(s.url, 'SELECT 1')).rejects.toThrow();
  });

  it('-u: started as root, pgmux opens its listeners, then runs as that user; it removes its socket and pid_file when it stops', async () => {
    if (process.getuid?.() !== 0) return;
    const postgres = osUser('postgres')!;
    // Sticky and open to all, as /tmp: the files become postgres's, so postgres may remove them.
    const dir = await tempDir('pgmux-cmd-');
    await chmod(dir, 0o1777);
    const s = await serving(dir);
    const pidFile = path.join(dir, 'pgmux.pid');
    const pgmux = new CliProcess([...s.args, '-u', 'postgres', '--pid-file', pidFile]);
    try {
      await pgmux.waitFor('"msg":"switched OS user"');
      expect(await uidOf(pgmux.child.pid!)).toBe(postgres.uid);
      expect(await psql(s.url, 'SELECT 1')).toBe('1');
      expect(await psql(`host=${dir} port=${s.port} user=app dbname=appdb password=${getCluster().roles.app.password}`, 'SELECT 1')).toBe('1');
      pgmux.signal('SIGTERM');
      expect((await pgmux.exited).code).toBe(0);
      expect(existsSync(path.join(dir, `.s.PGSQL.${s.port}`))).toBe(false);
      expect(existsSync(pidFile)).toBe(false);
    } finally {
      await pgmux.kill();
    }
  });

  it('-u: an unknown user, or switching without being root, stops pgmux before it starts', async () => {
    const unknown = await runCli(['-u', 'no-such-user-here', '--endpoint', 'main=127.0.0.1:1', '--listen', '127.0.0.1:0']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('pgmux: user: no OS user "no-such-user-here" on this system\n');
    if (process.getuid?.() !== 0) return;
    const port = await freePort();
    const asPostgres = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const p = spawn('runuser', ['-u', 'postgres', '--', process.execPath, ...CLI, '-u', 'nobody', '--endpoint', 'main=127.0.0.1:1', '--listen', `127.0.0.1:${port}`, '--unix-socket-dir', '']);
      let stderr = '';
      p.stderr.on('data', (d) => (stderr += d));
      p.on('close', (code) => resolve({ code, stderr }));
    });
    expect(asPostgres).toEqual({
      code: 1,
      stderr: 'pgmux: cannot switch to OS user "nobody": pgmux runs as "postgres", and only root may switch; start pgmux as nobody, or as root\n',
    });
    // Nothing was left listening.
    const probe = net.createServer();
    await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(port, '127.0.0.1', resolve));
    await new Promise((r) => probe.close(r));
  });

  it('SIGUSR1 while pgmux is still starting (reading its configuration) opens no inspector and does not stop it', async () => {
    const dir = await tempDir('pgmux-cmd-');
    const s = await serving(dir);
    // A configuration file that is a FIFO: pgmux waits in the middle of
    // starting, all of its modules loaded, until the test writes it.
    const fifo = path.join(dir, 'pgmux.toml');
    await new Promise<void>((resolve, reject) => spawn('mkfifo', [fifo]).once('exit', (code) => (code === 0 ? resolve() : reject(new Error('mkfifo')))));
    const pgmux = new CliProcess([...s.args, '--config', fifo]);
    try {
      // Opening the FIFO for writing returns once pgmux has opened it for reading.
      const writer = await open(fifo, 'w');
      for (let i = 0; i < 5; i++) {
        pgmux.child.kill('SIGUSR1');
        await sleep(20);
      }
      await writer.writeFile('log_level = "info"\n');
      await writer.close();
      await pgmux.waitFor('"msg":"listening"');
      expect(await psql(s.url, 'SELECT 1')).toBe('1');
      expect(pgmux.output).not.toMatch(/Debugger listening|inspector/i);
    } finally {
      await pgmux.kill();
    }
  });
});
