import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { chmod, chown, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, type LocalCluster } from '../src/embedded/cluster.ts';

const exec = promisify(execFile);

export const TARGETS = [
  'direct',
  'pgmux-session',
  'pgmux-none',
  'pgmux-transaction',
  'pgmux-transaction-replicas',
  'pgbouncer-session',
  'pgbouncer-transaction',
] as const;
export type TargetName = (typeof TARGETS)[number];

export interface Running {
  name: TargetName;
  port: number;
  /** pid of the pooler process (none for direct). */
  pid: number | null;
  stop(): Promise<void>;
}

export interface TargetEnv {
  cluster: LocalCluster;
  dir: string;
  user: string;
  password: string;
  database: string;
  /** Server connections per pool for session-mode poolers (one per client). */
  sessionPoolSize: number;
  /** Server connections per pool for transaction-mode poolers. */
  transactionPoolSize: number;
  repoDir: string;
  nodeBin: string;
}

/** Waits until something accepts TCP connections on the port. */
async function waitForPort(port: number, child: ChildProcess, what: string, timeoutMs = 30_000): Promise<void> {
  const net = await import('node:net');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not start listening on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.pid === undefined) {
      resolve();
      return;
    }
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

async function startPgmux(env: TargetEnv, name: TargetName, mode: string, replicas: boolean): Promise<Running> {
  const port = await freePort();
  const c = env.cluster;
  const nodes = [c.primary, ...(replicas ? c.replicas : [])].map((n) => `${n.host}:${n.port}`).join(',');
  const userlist = path.join(env.dir, 'pgmux-userlist.txt');
  await writeFile(userlist, `"${env.user}" "${env.password}"\n`);
  const size = mode === 'session' ? env.sessionPoolSize : env.transactionPoolSize;
  const args = [
    '--liftoff-only',
    '--max-semi-space-size=4',
    pgmuxEntry(env.repoDir),
    '--listen', `127.0.0.1:${port}`,
    '--endpoint', `main=postgresql://${nodes}/${env.database}`,
    '--auth-file', userlist,
    '--pool-mode', mode,
    '--default-pool-size', String(size),
    '--max-client-conn', '20000',
    '--user-password', `${env.user}=${env.password}`,
    '--user-password', `${c.superuser}=${c.superuserPassword}`,
    '--health-check-user', c.superuser,
    '--load-balance', replicas ? 'statement' : 'off',
    '--log-level', 'warn',
    '--log-format', 'json',
  ];
  // A raised descriptor limit, for the many-connection runs.
  const child = spawn('bash', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'pgmux', env.nodeBin, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  try {
    await waitForPort(port, child, `pgmux (${name})`);
  } catch (err) {
    await stopChild(child);
    throw new Error(`${(err as Error).message}\n${stderr}`);
  }
  return { name, port, pid: child.pid ?? null, stop: () => stopChild(child) };
}

async function startPgbouncer(env: TargetEnv, name: TargetName, mode: 'session' | 'transaction'): Promise<Running> {
  const port = await freePort();
  const c = env.cluster;
  const dir = path.join(env.dir, `pgbouncer-${mode}`);
  await exec('mkdir', ['-p', dir]);
  const size = mode === 'session' ? env.sessionPoolSize : env.transactionPoolSize;
  const ini = path.join(dir, 'pgbouncer.ini');
  const userlist = path.join(dir, 'userlist.txt');
  await writeFile(userlist, `"${env.user}" "${env.password}"\n`);
  await writeFile(
    ini,
    [
      '[databases]',
      `${env.database} = host=${c.primary.host} port=${c.primary.port} dbname=${env.database}`,
      '[pgbouncer]',
      `listen_addr = 127.0.0.1`,
      `listen_port = ${port}`,
      `unix_socket_dir =`,
      `auth_type = scram-sha-256`,
      `auth_file = ${userlist}`,
      `pool_mode = ${mode}`,
      `default_pool_size = ${size}`,
      `max_client_conn = 20000`,
      `max_db_connections = 0`,
      `logfile = ${path.join(dir, 'pgbouncer.log')}`,
      `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
      '',
    ].join('\n'),
  );
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    // PgBouncer runs as postgres, which must reach its files in our temp dir.
    await chmod(env.dir, 0o755);
    const uid = Number((await exec('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await exec('id', ['-g', 'postgres'])).stdout.trim());
    for (const f of [dir, ini, userlist]) await chown(f, uid, gid);
    await chmod(userlist, 0o600);
  }
  const cmd = ['pgbouncer', ini];
  const child = asRoot
    ? spawn('runuser', ['-u', 'postgres', '--', 'bash', '-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'pgbouncer', ...cmd], { stdio: ['ignore', 'ignore', 'pipe'] })
    : spawn('bash', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'pgbouncer', ...cmd], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  try {
    await waitForPort(port, child, `pgbouncer (${name})`);
  } catch (err) {
    await stopChild(child);
    throw new Error(`${(err as Error).message} ${stderr.trim()}`);
  }
  return { name, port, pid: child.pid ?? null, stop: () => stopChild(child) };
}

/** Installs Debian's pgbouncer when it is missing. */
export async function ensurePgbouncer(log: (s: string) => void): Promise<boolean> {
  try {
    await exec('bash', ['-c', 'command -v pgbouncer']);
    return true;
  } catch {
    log('pgbouncer not found: installing the Debian package');
    try {
      await exec('bash', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer'], { maxBuffer: 64 << 20 });
      return true;
    } catch (err) {
      log(`could not install pgbouncer: ${(err as Error).message.split('\n')[0]}`);
      return false;
    }
  }
}

export async function startTarget(env: TargetEnv, name: TargetName): Promise<Running> {
  switch (name) {
    case 'direct':
      return { name, port: env.cluster.primary.port, pid: null, stop: async () => {} };
    case 'pgmux-session':
      return startPgmux(env, name, 'session', false);
    case 'pgmux-none':
      return startPgmux(env, name, 'none', false);
    case 'pgmux-transaction':
      return startPgmux(env, name, 'transaction', false);
    case 'pgmux-transaction-replicas':
      return startPgmux(env, name, 'transaction', true);
    case 'pgbouncer-session':
      return startPgbouncer(env, name, 'session');
    case 'pgbouncer-transaction':
      return startPgbouncer(env, name, 'transaction');
  }
}

/** What the benchmark runs: the bundle users run (npm run build), else the sources. */
export function pgmuxEntry(repoDir: string): string {
  const bundle = path.join(repoDir, 'dist/cli.js');
  return existsSync(bundle) ? bundle : path.join(repoDir, 'src/cli.ts');
}
