import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import inspector from 'node:inspector';
import { accepting } from './helpers/clients.ts';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '../src/embedded/cluster.ts';
import { adminConsole } from './helpers/admin.ts';
import { sleep, startPgmux, trustSettings, type RunningPgmux } from './helpers/pgmux.ts';
import { getCluster } from './cluster-context.ts';

const repo = path.resolve(import.meta.dirname, '..');

async function until(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await sleep(50);
  }
  return check();
}

// server.shutdown() is SIGINT to pgmux ('transactions') when it runs as worker processes (PGMUX_TEST_WORKERS).
describe('safe shutdown waits for open transactions', () => {
  for (const mode of ['session', 'transaction'] as const) {
    it(`${mode} pooling: a client idle in a transaction finishes it; an idle client does not hold the stop`, async () => {
      const pgmux = await startPgmux({ ...trustSettings(), pool_mode: mode, shutdown_timeout: 20 });
      const inTx = new pg.Client({ connectionString: pgmux.url() });
      const idle = new pg.Client({ connectionString: pgmux.url() });
      for (const c of [inTx, idle]) c.on('error', () => {});
      await Promise.all([inTx.connect(), idle.connect()]);
      try {
        await inTx.query('BEGIN');
        await inTx.query('SELECT 1');
        let stopped = false;
        const shutdown = pgmux.server.shutdown('transactions').then(() => (stopped = true));
        await sleep(700);
        expect(stopped).toBe(false);
        // Still served inside its transaction.
        expect((await inTx.query('SELECT 2 AS two')).rows[0].two).toBe(2);
        await inTx.query('COMMIT');
        await shutdown;
        expect(stopped).toBe(true);
      } finally {
        await pgmux.stop();
        await rm(path.dirname(pgmux.server.currentConfig.auth_file!), { recursive: true, force: true });
      }
    });
  }

  it('SHUTDOWN WAIT_FOR_SERVERS from the admin console does not cut off a client in a transaction', async () => {
    const pgmux = await startPgmux({ ...trustSettings(), admin_users: 'app', shutdown_timeout: 20 });
    const inTx = new pg.Client({ connectionString: pgmux.url() });
    const admin = new pg.Client({ connectionString: pgmux.url('app', 'pgmux') });
    for (const c of [inTx, admin]) c.on('error', () => {});
    await Promise.all([inTx.connect(), admin.connect()]);
    try {
      await inTx.query('BEGIN');
      await inTx.query('SELECT 1');
      const ended = new Set<pg.Client>();
      for (const c of [inTx, admin]) c.on('end', () => ended.add(c));
      await admin.query('SHUTDOWN WAIT_FOR_SERVERS');
      await sleep(700);
      // Stopping: it takes no new connection.
      expect(await accepting(pgmux.port)).toBe(false);
      expect((await inTx.query('SELECT 3 AS three')).rows[0].three).toBe(3);
      await inTx.query('COMMIT');
      // The transaction over, pgmux stops and ends its clients, the admin console's too.
      expect(await until(() => ended.size === 2, 10_000)).toBe(true);
    } finally {
      await pgmux.stop();
      await rm(path.dirname(pgmux.server.currentConfig.auth_file!), { recursive: true, force: true });
    }
  });
});

describe('SIGUSR1 and SIGUSR2 to the process pgmux runs in', () => {
  let pgmux: RunningPgmux;
  beforeAll(async () => {
    pgmux = await startPgmux({ ...trustSettings(), stats_users: 'app' });
  });
  afterAll(async () => {
    await pgmux.stop();
    await rm(path.dirname(pgmux.server.currentConfig.auth_file!), { recursive: true, force: true });
  });

  it('SIGUSR1 pauses every pool and opens no inspector; SIGUSR2 resumes', async () => {
    const c = new pg.Client({ connectionString: pgmux.url() });
    await c.connect();
    await c.query('SELECT 1');
    await c.end();
    // This process, or with worker processes their supervisor, which passes it on to each.
    const [pid] = pgmux.pids();
    const admin = await adminConsole(pgmux);
    try {
      const pools = () => admin.show('POOLS');
      expect((await pools()).length).toBeGreaterThan(0);
      process.kill(pid, 'SIGUSR1');
      expect(await until(async () => (await pools()).every((p) => p.paused === 1), 2000)).toBe(true);
      // Node's own SIGUSR1 would have opened it (in this process; for pgmux in processes of its own, see 'signals to bin/pgmux.js').
      expect(inspector.url()).toBeUndefined();
      process.kill(pid, 'SIGUSR2');
      expect(await until(async () => (await pools()).every((p) => p.paused === 0), 2000)).toBe(true);
    } finally {
      await admin.end();
    }
    const after = new pg.Client({ connectionString: pgmux.url() });
    await after.connect();
    expect((await after.query('SELECT 4 AS four')).rows[0].four).toBe(4);
    await after.end();
  });
});

/**
 * pgmux started as an operator starts it, through bin/pgmux.js. The
 * launcher is run from a copy next to the sources (no bundle there), so it
 * runs the code of this tree.
 */
class Launched {
  readonly child: ChildProcess;
  output = '';
  constructor(child: ChildProcess) {
    this.child = child;
    child.stdout!.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()));
  }
  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }
  /** The launcher's exit status, once it has exited. */
  exit(): Promise<number | null> {
    return new Promise((resolve) => (this.exited ? resolve(this.child.exitCode) : this.child.once('exit', (code) => resolve(code))));
  }
}

describe('signals to bin/pgmux.js, as PgBouncer takes them', () => {
  let dir: string;
  let port: number;
  let configFile: string;
  const launched: Launched[] = [];

  beforeAll(async () => {
    const c = getCluster();
    dir = await mkdtemp(path.join(os.tmpdir(), 'pgmux-signals-'));
    await mkdir(path.join(dir, 'bin'));
    await copyFile(path.join(repo, 'bin/pgmux.js'), path.join(dir, 'bin/pgmux.js'));
    await symlink(path.join(repo, 'src'), path.join(dir, 'src'));
    await writeFile(path.join(dir, 'package.json'), '{ "type": "module" }\n');
    const userlist = path.join(dir, 'userlist.txt');
    await writeFile(userlist, `"app" "${c.roles.app.verifier}"\n`, { mode: 0o600 });
    port = await freePort();
    configFile = path.join(dir, 'pgmux.toml');
    await writeFile(
      configFile,
      [
        `listen = "127.0.0.1:${port}"`,
        `auth_file = "${userlist}"`,
        'admin_users = "app"',
        'log_format = "json"',
        'shutdown_timeout = 20',
        '[endpoints.main]',
        `nodes = ["postgresql://${c.primary.host}:${c.primary.port}"]`,
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
  });

  afterAll(async () => {
    for (const l of launched) if (!l.exited) l.child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  const url = (db = 'appdb') => `postgresql://app:${encodeURIComponent(getCluster().roles.app.password)}@127.0.0.1:${port}/${db}`;

  async function launch(): Promise<Launched> {
    const l = new Launched(spawn(process.execPath, [path.join(dir, 'bin/pgmux.js'), '--config', configFile], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] }));
    launched.push(l);
    expect(await until(() => l.output.includes('"msg":"listening"') || l.exited, 30_000), l.output).toBe(true);
    expect(l.exited, l.output).toBe(false);
    return l;
  }

  const client = async (db = 'appdb') => {
    const c = new pg.Client({ connectionString: url(db) });
    c.on('error', () => {});
    await c.connect();
    return c;
  };

  it('SIGUSR1 pauses (no inspector, in the launcher or in pgmux), SIGUSR2 resumes and does not stop pgmux', async () => {
    const l = await launch();
    const admin = await client('pgmux');
    const app = await client();
    await app.query('SELECT 1');
    l.child.kill('SIGUSR1');
    expect(await until(() => l.output.includes('pausing every pool'), 3000), l.output).toBe(true);
    const paused = async () => (await admin.query('SHOW POOLS')).rows.every((r) => r.paused === 1);
    expect(await until(paused, 3000)).toBe(true);
    // Session pooling: a client keeps its server connection and is served;
    // a new one waits for one until RESUME.
    expect((await app.query('SELECT 5 AS five')).rows[0].five).toBe(5);
    const late = new pg.Client({ connectionString: url() });
    late.on('error', () => {});
    let lateIn = false;
    const lateConnect = late.connect().then(() => (lateIn = true));
    await sleep(300);
    expect(lateIn).toBe(false);
    l.child.kill('SIGUSR2');
    await lateConnect;
    expect((await late.query('SELECT 6 AS six')).rows[0].six).toBe(6);
    expect(l.exited).toBe(false);
    expect(l.output).not.toMatch(/Debugger listening|inspector/i);
    await Promise.all([admin.end(), app.end(), late.end()]);
    l.child.kill('SIGQUIT');
    await l.exit();
  });

  it('SIGTERM waits for clients to leave; a second SIGTERM stops at once', async () => {
    const l = await launch();
    const app = await client();
    l.child.kill('SIGTERM');
    await sleep(1500);
    expect(l.exited).toBe(false);
    expect((await app.query('SELECT 7 AS seven')).rows[0].seven).toBe(7);
    expect(await accepting(port)).toBe(false);
    const started = Date.now();
    l.child.kill('SIGTERM');
    expect(await l.exit()).toBe(0);
    expect(Date.now() - started).toBeLessThan(3000);
    await app.end().catch(() => {});
  });

  it('SIGINT waits for a transaction under way (a client idle in it is not cut off), then stops', async () => {
    const l = await launch();
    const inTx = await client();
    const idle = await client();
    await inTx.query('BEGIN');
    await inTx.query('SELECT 1');
    l.child.kill('SIGINT');
    await sleep(1000);
    expect(l.exited).toBe(false);
    expect((await inTx.query('SELECT 8 AS eight')).rows[0].eight).toBe(8);
    await inTx.query('COMMIT');
    expect(await l.exit()).toBe(0);
    await Promise.all([inTx.end().catch(() => {}), idle.end().catch(() => {})]);
  });

  it('SIGQUIT to the launcher stops pgmux at once: nothing is left serving', async () => {
    const l = await launch();
    const app = await client();
    await app.query('BEGIN');
    const started = Date.now();
    l.child.kill('SIGQUIT');
    await l.exit();
    expect(Date.now() - started).toBeLessThan(3000);
    expect(await until(async () => !(await accepting(port)), 3000)).toBe(true);
    await app.end().catch(() => {});
  });
});
