/**
 * Memory probe: N idle clients (default 10,000) logged in to pgmux in
 * transaction mode, then pgmux's resident memory. Usage: npm run bench:memory [-- N]
 */
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalCluster, freePort } from '../src/embedded/cluster.ts';
import { trustLogin } from '../test/helpers/clients.ts';
import { pgmuxEntry } from './targets.ts';

const repoDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const count = Number(process.argv[2] ?? process.env.BENCH_IDLE_CLIENTS ?? 10_000);

// This process needs a descriptor per client too: run again with a raised limit.
if (process.env.PGMUX_PROBE_CHILD === undefined) {
  const r = spawnSync('bash', ['-c', 'ulimit -n "$(ulimit -Hn)" || exit 3; exec "$@"', 'probe', process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, PGMUX_PROBE_CHILD: '1' },
  });
  process.exit(r.status ?? 1);
}

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

const login = (port: number) => trustLogin(port, 'app', 'app');

const dir = await mkdtemp(path.join(os.tmpdir(), 'pgmux-probe-'));
const cluster = await LocalCluster.start({});
const children: ReturnType<typeof spawn>[] = [];
try {
  await cluster.createRole('app', 'probe-secret');
  await cluster.query('CREATE DATABASE app OWNER app');
  const port = await freePort();
  await writeFile(path.join(dir, 'userlist.txt'), '"app" "probe-secret"\n');
  const pgmux = spawn(
    'bash',
    ['-c', 'ulimit -n "$(ulimit -Hn)"; exec "$@"', 'pgmux', process.execPath, '--liftoff-only', '--max-semi-space-size=4', pgmuxEntry(repoDir),
      '--listen', `127.0.0.1:${port}`, '--endpoint', `main=postgresql://127.0.0.1:${cluster.primary.port}`,
      '--auth-type', 'trust', '--auth-file', path.join(dir, 'userlist.txt'), '--user-password', 'app=probe-secret',
      '--pool-mode', 'transaction', '--max-client-conn', String(count + 100), '--log-level', 'warn'],
    { stdio: 'inherit' },
  );
  children.push(pgmux);
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((r) => net.connect({ host: '127.0.0.1', port }).on('connect', function (this: net.Socket) { this.destroy(); r(true); }).on('error', () => r(false)));
    if (up) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const before = await rssMb(pgmux.pid!);
  const sockets: net.Socket[] = [];
  const t0 = Date.now();
  for (let i = 0; i < count; i += 200) {
    const batch = await Promise.all(Array.from({ length: Math.min(200, count - i) }, () => login(port)));
    sockets.push(...batch);
  }
  await new Promise((r) => setTimeout(r, 2000));
  const after = await rssMb(pgmux.pid!);
  const line = `${count} idle clients logged in to pgmux (transaction mode) in ${((Date.now() - t0) / 1000).toFixed(1)} s: RSS ${before.toFixed(0)} MB before, ${after.toFixed(0)} MB with them (${(((after - before) * 1024) / count).toFixed(1)} KB per client)`;
  console.log(line);
  await writeFile(path.join(repoDir, 'bench/results/memory.txt'), `${new Date().toISOString()}\n${line}\n`).catch(() => {});
  for (const s of sockets) s.destroy();
} finally {
  for (const c of children) c.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 500));
  await cluster.stop();
  await rm(dir, { recursive: true, force: true });
}
