/**
 * CPU per transaction of pgmux builds and pooling modes side by side, for
 * tuning the forwarding loops: one throw-away primary, each variant a
 * pgmux process from a built bundle (or PgBouncer), pgbench -c 10 against
 * each in turn (A B A B …), user and system CPU of the pooler's process
 * read from /proc around each run and divided by the transactions pgbench
 * processed.
 *
 *   node bench/fast-path-cpu.ts --variant tx=.:transaction --variant s=.:session \
 *     [--variant base=/some/dir:transaction] [--pgbouncer] [--workloads S,S-prepared,tpcb,tpcb-prepared]
 *
 * A variant is name=DIR:MODE where DIR/dist/cli.js is the bundle to run.
 * --cpu-prof writes V8 profiles of each pgmux into --prof-dir.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { LocalCluster, freePort } from '../src/embedded/cluster.ts';
import { chmod, chown, mkdir } from 'node:fs/promises';

const exec = promisify(execFile);

const WORKLOADS: Record<string, string[]> = {
  S: ['-S', '-M', 'simple'],
  'S-extended': ['-S', '-M', 'extended'],
  'S-prepared': ['-S', '-M', 'prepared'],
  tpcb: ['-b', 'tpcb-like', '-M', 'simple'],
  'tpcb-extended': ['-b', 'tpcb-like', '-M', 'extended'],
  'tpcb-prepared': ['-b', 'tpcb-like', '-M', 'prepared'],
};

const program = new Command('fast-path-cpu')
  .option('--variant <v>', 'name=DIR:MODE (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
  .option('--pgbouncer', 'add PgBouncer in transaction mode')
  .option('--workloads <list>', Object.keys(WORKLOADS).join(','), 'S,tpcb')
  .option('--reps <n>', 'runs per variant and workload', '3')
  .option('--duration <s>', 'seconds per run', '5')
  .option('--clients <n>', 'pgbench clients', '10')
  .option('--warmup <s>', 'an unmeasured run per target and workload first (the JIT compiles the hot path)', '2')
  .option('--rate <tps>', 'pgbench -R (latency runs)')
  .option('--cpu-prof', 'V8 CPU profiles of each pgmux')
  .option('--threads', 'CPU per transaction of each thread of the pooler')
  .option('--perf <dir>', 'perf record each pooler during its first run into DIR')
  .option('--strace', 'count the pooler\'s system calls per transaction (strace -c; slows the run)')
  .option('--prof-dir <dir>', 'where the profiles go', '.fastpath/prof');

interface Target {
  name: string;
  pid: number;
  port: number;
  stop(): Promise<void>;
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => (clearTimeout(t), resolve()));
    child.kill('SIGTERM');
  });
}

async function startPgmux(name: string, dir: string, mode: string, cluster: LocalCluster, userlist: string, user: string, password: string, prof: string | null): Promise<Target> {
  const port = await freePort();
  const args = [
    '--liftoff-only',
    '--max-semi-space-size=4',
    ...(prof !== null ? ['--cpu-prof', `--cpu-prof-dir=${prof}`, `--cpu-prof-name=${name}.cpuprofile`] : []),
    path.resolve(dir, 'dist/cli.js'),
    '--listen', `127.0.0.1:${port}`,
    '--endpoint', `main=postgresql://${cluster.primary.host}:${cluster.primary.port}/${user}`,
    '--auth-file', userlist,
    '--pool-mode', mode,
    '--default-pool-size', '20',
    '--user-password', `${user}=${password}`,
    '--user-password', `${cluster.superuser}=${cluster.superuserPassword}`,
    '--health-check-user', cluster.superuser,
    '--load-balance', 'off',
    '--workers', '1',
    '--log-level', 'warn',
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  const net = await import('node:net');
  for (let i = 0; ; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    if (i > 300 || child.exitCode !== null) throw new Error(`${name} did not start`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // SIGINT so that --cpu-prof writes its profile (pgmux stops on it too).
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => (clearTimeout(t), resolve()));
      child.kill(prof !== null ? 'SIGINT' : 'SIGTERM');
    });
  return { name, pid: child.pid!, port, stop: prof !== null ? stop : () => stopChild(child) };
}

/** PgBouncer in transaction mode in front of the primary (apt-get install pgbouncer first). */
async function startPgbouncer(cluster: LocalCluster, dir: string, user: string, password: string): Promise<Target> {
  const port = await freePort();
  const bdir = path.join(dir, 'pgbouncer');
  await mkdir(bdir);
  const ini = path.join(bdir, 'pgbouncer.ini');
  const userlist = path.join(bdir, 'userlist.txt');
  await writeFile(userlist, `"${user}" "${password}"\n`);
  await writeFile(
    ini,
    [
      '[databases]',
      `${user} = host=${cluster.primary.host} port=${cluster.primary.port} dbname=${user}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = scram-sha-256',
      `auth_file = ${userlist}`,
      'pool_mode = transaction',
      'default_pool_size = 20',
      `logfile = ${path.join(bdir, 'pgbouncer.log')}`,
      '',
    ].join('\n'),
  );
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    await chmod(dir, 0o755);
    const uid = Number((await exec('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await exec('id', ['-g', 'postgres'])).stdout.trim());
    for (const f of [bdir, ini, userlist]) await chown(f, uid, gid);
  }
  const child = asRoot ? spawn('runuser', ['-u', 'postgres', '--', 'pgbouncer', ini], { stdio: 'ignore' }) : spawn('pgbouncer', [ini], { stdio: 'ignore' });
  const net = await import('node:net');
  for (let i = 0; ; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    if (i > 100 || child.exitCode !== null) throw new Error('pgbouncer did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  return { name: 'pgbouncer-tx', pid: await descendant(child.pid!, 'pgbouncer'), port, stop: () => stopChild(child) };
}

/** The process named `comm` at or below `pid` (PgBouncer runs under runuser and bash). */
async function descendant(pid: number, comm: string): Promise<number> {
  for (let depth = 0; depth < 4; depth++) {
    if ((await readFile(`/proc/${pid}/comm`, 'utf8')).trim() === comm) return pid;
    const kids = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).trim().split(' ').filter((x) => x !== '');
    if (kids.length === 0) break;
    pid = Number(kids[0]);
  }
  return pid;
}

async function threadTicks(pid: number): Promise<Map<string, [string, number, number]>> {
  const out = new Map<string, [string, number, number]>();
  const { readdir } = await import('node:fs/promises');
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    try {
      const raw = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = raw.slice(raw.indexOf('(') + 1, raw.lastIndexOf(')'));
      const f = raw.slice(raw.lastIndexOf(') ') + 2).split(' ');
      out.set(tid, [name, Number(f[11]), Number(f[12])]);
    } catch {
      // gone
    }
  }
  return out;
}

/** The pid and every process below it (pgmux with workers runs them as children). */
async function tree(pid: number): Promise<number[]> {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      const kids = (await readFile(`/proc/${out[i]}/task/${out[i]}/children`, 'utf8')).trim().split(' ').filter((x) => x !== '');
      out.push(...kids.map(Number));
    } catch {
      // gone
    }
  }
  return out;
}

/** User and system ticks of the process tree at `pid`. */
async function ticks(pid: number): Promise<[number, number]> {
  let u = 0;
  let s = 0;
  for (const p of await tree(pid)) {
    try {
      const stat = (await readFile(`/proc/${p}/stat`, 'utf8')).split(') ')[1].split(' ');
      u += Number(stat[11]);
      s += Number(stat[12]);
    } catch {
      // gone
    }
  }
  return [u, s];
}

function parsePgbench(out: string): { tps: number; n: number; lat: number } {
  const n = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? 0);
  const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1] ?? 0);
  const lat = Number(/latency average = ([\d.]+) ms/.exec(out)?.[1] ?? 0);
  return { tps, n, lat };
}

async function main(): Promise<void> {
  program.parse();
  const o = program.opts<{ variant: string[]; pgbouncer?: boolean; workloads: string; reps: string; duration: string; clients: string; warmup: string; rate?: string; cpuProf?: boolean; strace?: boolean; threads?: boolean; perf?: string; profDir: string }>();
  const hz = Number((await exec('getconf', ['CLK_TCK'])).stdout.trim()) || 100;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgmux-fastpath-'));
  const cluster = await LocalCluster.start({ settings: { max_connections: '200' } });
  const targets: Target[] = [];
  try {
    const user = 'bench';
    const password = 'bench-secret';
    await cluster.createRole(user, password);
    await cluster.query(`CREATE DATABASE ${user} OWNER ${user}`);
    const url = (port: number) => `postgresql://${user}:${password}@127.0.0.1:${port}/${user}`;
    await exec('pgbench', ['-i', '-q', '-s', '10', url(cluster.primary.port)], { maxBuffer: 64 << 20 });
    const userlist = path.join(dir, 'userlist.txt');
    await writeFile(userlist, `"${user}" "${password}"\n`);
    const prof = o.cpuProf ? path.resolve(o.profDir) : null;
    for (const v of o.variant) {
      const [name, rest] = v.split('=');
      const at = rest.lastIndexOf(':');
      targets.push(await startPgmux(name, rest.slice(0, at), rest.slice(at + 1), cluster, userlist, user, password, prof));
    }
    if (o.pgbouncer) targets.push(await startPgbouncer(cluster, dir, user, password));
    const rows: string[] = [];
    console.log('| workload | target | run | TPS | µs user/txn | µs sys/txn | µs total/txn | latency ms |');
    console.log('|---|---|---|---|---|---|---|---|');
    const sums = new Map<string, { u: number; s: number; n: number; tps: number[] }>();
    for (const w of o.workloads.split(',')) {
      if (Number(o.warmup) > 0) {
        for (const t of targets) await exec('pgbench', [...WORKLOADS[w], '-n', '-c', o.clients, '-j', '2', '-T', o.warmup, url(t.port)]).catch(() => {});
      }
      for (let rep = 1; rep <= Number(o.reps); rep++) {
        for (const t of targets) {
          const args = [...WORKLOADS[w], '-n', '-c', o.clients, '-j', '2', '-T', o.duration, ...(o.rate ? ['-R', o.rate] : []), url(t.port)];
          let tracer: ChildProcess | null = null;
          let traced = '';
          if (o.strace) {
            tracer = spawn('strace', ['-c', '-f', '-p', String(t.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
            tracer.stderr!.on('data', (d: Buffer) => (traced += d.toString()));
            await new Promise((r) => setTimeout(r, 500));
          }
          let perf: ChildProcess | null = null;
          if (o.perf !== undefined && rep === 1) {
            perf = spawn('perf', ['record', '-F', '999', '-g', '-o', path.join(o.perf, `${t.name}-${w}.data`), '-p', String(t.pid)], { stdio: 'ignore' });
            await new Promise((r) => setTimeout(r, 300));
          }
          const threadsBefore = o.threads ? await threadTicks(t.pid) : null;
          const before = await ticks(t.pid);
          const r = await exec('pgbench', args, { maxBuffer: 16 << 20 }).catch((e) => e as { stdout: string; stderr: string });
          const after = await ticks(t.pid);
          const p = parsePgbench(r.stdout);
          if (perf !== null) {
            const exited = new Promise((r) => perf.once('exit', r));
            perf.kill('SIGINT');
            await exited;
          }
          if (threadsBefore !== null) {
            const threadsAfter = await threadTicks(t.pid);
            for (const [tid, [name, u1, s1]] of threadsAfter) {
              const b = threadsBefore.get(tid) ?? [name, 0, 0];
              const du = ((u1 - b[1]) / hz) * 1e6 / p.n;
              const ds = ((s1 - b[2]) / hz) * 1e6 / p.n;
              if (du + ds >= 0.5) console.log(`  thread ${tid} ${name}: ${du.toFixed(1)} µs user, ${ds.toFixed(1)} µs sys per transaction`);
            }
          }
          if (tracer !== null) {
            const exited = new Promise((r) => tracer.once('exit', r));
            tracer.kill('SIGINT');
            await exited;
            console.log(`${t.name} ${w}: system calls per transaction`);
            for (const l of traced.split('\n')) {
              const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$/.exec(l);
              if (m !== null && Number(m[1]) / p.n >= 0.05) console.log(`  ${m[2]}: ${(Number(m[1]) / p.n).toFixed(2)}`);
            }
          }
          const us = (d: number) => (p.n > 0 ? ((d / hz) * 1e6) / p.n : NaN);
          const u = us(after[0] - before[0]);
          const s = us(after[1] - before[1]);
          const line = `| ${w} | ${t.name} | ${rep} | ${p.tps.toFixed(0)} | ${u.toFixed(1)} | ${s.toFixed(1)} | ${(u + s).toFixed(1)} | ${p.lat.toFixed(3)} |`;
          if (p.n === 0) console.error(r.stderr);
          console.log(line);
          rows.push(line);
          const k = `${w} ${t.name}`;
          const acc = sums.get(k) ?? { u: 0, s: 0, n: 0, tps: [] };
          acc.u += u;
          acc.s += s;
          acc.n++;
          acc.tps.push(p.tps);
          sums.set(k, acc);
        }
      }
    }
    console.log('\n| workload | target | mean µs user | mean µs sys | mean µs total | TPS range |');
    console.log('|---|---|---|---|---|---|');
    for (const [k, a] of sums) {
      const [w, t] = k.split(' ');
      console.log(`| ${w} | ${t} | ${(a.u / a.n).toFixed(1)} | ${(a.s / a.n).toFixed(1)} | ${((a.u + a.s) / a.n).toFixed(1)} | ${Math.min(...a.tps).toFixed(0)}–${Math.max(...a.tps).toFixed(0)} |`);
    }
  } finally {
    for (const t of targets) await t.stop().catch(() => {});
    await cluster.stop().catch(() => {});
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

await main();
