import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { chmod, chown, mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort, type LocalCluster } from '../src/embedded/cluster.ts';

const exec = promisify(execFile);

/**
 * The targets pgbench can be pointed at. A pgmux target may also end in
 * `-w<N>`: the same with `--workers N` (pgmux-transaction-w2).
 */
export const TARGETS = [
  'direct',
  'bare-proxy',
  'pgmux-session',
  'pgmux-none',
  'pgmux-transaction',
  'pgmux-transaction-w2',
  'pgmux-transaction-replicas',
  'pgmux-transaction-replicas-ryw-off',
  'pgbouncer-session',
  'pgbouncer-transaction',
  'pgbouncer-transaction-reuseport',
] as const;
export type TargetName = string;

/** What a target name asks for. */
export interface TargetSpec {
  kind: 'direct' | 'bare-proxy' | 'pgmux' | 'pgbouncer';
  mode: 'session' | 'transaction' | 'none';
  /** pgmux over the primary and both replicas, reads balanced per statement. */
  replicas: boolean;
  /** pgmux's read_your_writes = off. */
  rywOff: boolean;
  /** pgmux --workers (1 unless -w<N>). */
  workers: number;
  /** PgBouncer processes sharing the port with so_reuseport. */
  reuseport: boolean;
}

export function parseTarget(name: string): TargetSpec | null {
  const base: TargetSpec = { kind: 'direct', mode: 'session', replicas: false, rywOff: false, workers: 1, reuseport: false };
  if (name === 'direct') return base;
  if (name === 'bare-proxy') return { ...base, kind: 'bare-proxy' };
  let m = /^pgbouncer-(session|transaction)(-reuseport)?$/.exec(name);
  if (m !== null) return { ...base, kind: 'pgbouncer', mode: m[1] as 'session' | 'transaction', reuseport: m[2] !== undefined };
  m = /^pgmux-(session|transaction|none)(-replicas)?(-ryw-off)?(?:-w(\d+))?$/.exec(name);
  if (m === null || (m[3] !== undefined && m[2] === undefined)) return null;
  return { ...base, kind: 'pgmux', mode: m[1] as TargetSpec['mode'], replicas: m[2] !== undefined, rywOff: m[3] !== undefined, workers: m[4] === undefined ? 1 : Number(m[4]) };
}

export interface Running {
  name: TargetName;
  port: number;
  /** The processes started (their children are found from /proc); none for direct. */
  pids: number[];
  /** What it says about itself in the report ("workers = 2", "3 processes"). */
  note?: string;
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
  /** PgBouncer processes for the -reuseport target. */
  reuseportProcs: number;
  /** Whether this pgmux build knows --workers (null: not asked yet). */
  workersFlag: boolean | null;
  repoDir: string;
  nodeBin: string;
}

/** Why a target cannot run with this build, or null. */
export async function unavailable(env: TargetEnv, name: TargetName): Promise<string | null> {
  const spec = parseTarget(name);
  if (spec === null) return `unknown target ${name}`;
  if (spec.kind === 'pgmux' && spec.workers !== 1 && !(await workersFlag(env))) {
    return `skipped: this pgmux has no --workers flag yet, so workers = ${spec.workers} cannot be measured`;
  }
  return null;
}

/** Whether pgmux's --help lists --workers. */
export async function workersFlag(env: TargetEnv): Promise<boolean> {
  if (env.workersFlag === null) {
    try {
      const { stdout } = await exec(env.nodeBin, [pgmuxEntry(env.repoDir), '--help'], { maxBuffer: 4 << 20 });
      env.workersFlag = /--workers\b/.test(stdout);
    } catch (err) {
      env.workersFlag = /--workers\b/.test(String((err as { stdout?: string }).stdout ?? ''));
    }
  }
  return env.workersFlag;
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
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
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

/** Starts a command with the descriptor limit raised (for the many-connection runs). */
function spawnRaised(cmd: string[], asUser?: string): ChildProcess {
  const inner = ['bash', '-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', cmd[0], ...cmd];
  const argv = asUser === undefined ? inner : ['runuser', '-u', asUser, '--', ...inner];
  return spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
}

async function started(child: ChildProcess, port: number, what: string): Promise<void> {
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  try {
    await waitForPort(port, child, what);
  } catch (err) {
    await stopChild(child);
    throw new Error(`${(err as Error).message}\n${stderr.trim()}`);
  }
}

async function startPgmux(env: TargetEnv, name: TargetName, spec: TargetSpec): Promise<Running> {
  const port = await freePort();
  const c = env.cluster;
  const nodes = [c.primary, ...(spec.replicas ? c.replicas : [])].map((n) => `${n.host}:${n.port}`).join(',');
  const userlist = path.join(env.dir, 'pgmux-userlist.txt');
  await writeFile(userlist, `"${env.user}" "${env.password}"\n`);
  const size = spec.mode === 'session' ? env.sessionPoolSize : env.transactionPoolSize;
  const args = [
    '--liftoff-only',
    '--max-semi-space-size=4',
    pgmuxEntry(env.repoDir),
    '--listen', `127.0.0.1:${port}`,
    '--endpoint', `main=postgresql://${nodes}/${env.database}`,
    '--auth-file', userlist,
    '--pool-mode', spec.mode,
    '--default-pool-size', String(size),
    '--max-client-conn', '20000',
    '--user-password', `${env.user}=${env.password}`,
    '--user-password', `${c.superuser}=${c.superuserPassword}`,
    '--health-check-user', c.superuser,
    '--load-balance', spec.replicas ? 'statement' : 'off',
    '--log-level', 'warn',
    '--log-format', 'json',
  ];
  if (spec.rywOff) args.push('--read-your-writes', 'off');
  // Once pgmux has workers, its default is one per core: every target says how many it means.
  if (await workersFlag(env)) args.push('--workers', String(spec.workers));
  const child = spawnRaised([env.nodeBin, ...args]);
  await started(child, port, `pgmux (${name})`);
  return { name, port, pids: [child.pid!], note: `workers = ${spec.workers}`, stop: () => stopChild(child) };
}

/** A 30-line Node.js proxy to the primary: the floor under any Node.js pooler. */
async function startBareProxy(env: TargetEnv, name: TargetName): Promise<Running> {
  const port = await freePort();
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'bare-proxy.ts');
  const child = spawnRaised([env.nodeBin, '--max-semi-space-size=4', script, String(port), env.cluster.primary.host, String(env.cluster.primary.port)]);
  await started(child, port, `bare proxy (${name})`);
  return { name, port, pids: [child.pid!], stop: () => stopChild(child) };
}

async function startPgbouncer(env: TargetEnv, name: TargetName, spec: TargetSpec): Promise<Running> {
  const port = await freePort();
  const c = env.cluster;
  const procs = spec.reuseport ? env.reuseportProcs : 1;
  const size = spec.mode === 'session' ? env.sessionPoolSize : env.transactionPoolSize;
  const asRoot = process.getuid?.() === 0;
  const children: ChildProcess[] = [];
  try {
    for (let i = 0; i < procs; i++) {
      const dir = path.join(env.dir, `${name}-${port}-${i}`);
      await mkdir(dir, { recursive: true });
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
          `pool_mode = ${spec.mode}`,
          `default_pool_size = ${size}`,
          `max_client_conn = 20000`,
          `max_db_connections = 0`,
          ...(spec.reuseport ? ['so_reuseport = 1'] : []),
          `logfile = ${path.join(dir, 'pgbouncer.log')}`,
          `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
          '',
        ].join('\n'),
      );
      if (asRoot) {
        // PgBouncer runs as postgres, which must reach its files in our temp dir.
        await chmod(env.dir, 0o755);
        const uid = Number((await exec('id', ['-u', 'postgres'])).stdout.trim());
        const gid = Number((await exec('id', ['-g', 'postgres'])).stdout.trim());
        for (const f of [dir, ini, userlist]) await chown(f, uid, gid);
        await chmod(userlist, 0o600);
      }
      const child = spawnRaised(['pgbouncer', ini], asRoot ? 'postgres' : undefined);
      children.push(child);
      await started(child, port, `pgbouncer (${name}, process ${i + 1})`);
    }
  } catch (err) {
    await Promise.all(children.map(stopChild));
    throw err;
  }
  return {
    name,
    port,
    pids: children.map((ch) => ch.pid!),
    note: spec.reuseport ? `${procs} processes, so_reuseport` : undefined,
    stop: async () => void (await Promise.all(children.map(stopChild))),
  };
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
  const spec = parseTarget(name);
  if (spec === null) throw new Error(`unknown target ${name}`);
  switch (spec.kind) {
    case 'direct':
      return { name, port: env.cluster.primary.port, pids: [], stop: async () => {} };
    case 'bare-proxy':
      return startBareProxy(env, name);
    case 'pgmux':
      return startPgmux(env, name, spec);
    case 'pgbouncer':
      return startPgbouncer(env, name, spec);
  }
}

/** What the benchmark runs: the bundle users run (npm run build), else the sources. */
export function pgmuxEntry(repoDir: string): string {
  const bundle = path.join(repoDir, 'dist/cli.js');
  return existsSync(bundle) ? bundle : path.join(repoDir, 'src/cli.ts');
}
