import { spawn } from 'node:child_process';
import { readdir, readFile, rm, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { HZ, connectionsTo, machineBusyUs, sampleTree, usageBetween, type TreeUsage } from './procs.ts';


export interface RunResult {
  tps: number;
  processed: number;
  failed: number;
  /** Latencies in ms from pgbench's per-transaction log. */
  p50: number;
  p95: number;
  p99: number;
  /** Most server connections the pooler held at once (from /proc), or the client count for direct. */
  serverConnections: number;
  /**
   * The pooler's processes from pgbench's first progress report (its clients
   * logged in) to its end, or over the whole run when it made none (null for direct).
   */
  pooler: TreeUsage | null;
  /** Transactions that ended in that interval: what the pooler's CPU is divided by. */
  cpuTxns: number;
  /** pgbench's own user + system µs. */
  pgbenchCpuUs: number;
  /** Each PostgreSQL node's processes over the run, by node name. */
  nodes: Record<string, TreeUsage>;
  wallUs: number;
  /** The whole run, logins included (pgbench's own CPU is over that). */
  runWallUs: number;
  /** Cores the whole machine kept busy during the run (everything on it, other users' work included). */
  machineCores: number;
  /** Host simulation: per node, the share of cgroup periods in which it was throttled. */
  throttled?: Record<string, number>;
  error: string | null;
}

/** Sorted-array percentile. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/**
 * Latencies (ms) from pgbench -l files: "client txno latency_us script epoch epoch_us [lag_us]".
 * Under -R pgbench counts a latency from the transaction's scheduled start;
 * its schedule lag (how late pgbench's own thread woke up to start it) is
 * taken off, so what remains is the transaction's round trips.
 */
export async function readLatencies(dir: string, fromUs = 0): Promise<{ sorted: Float64Array; after: number }> {
  const values: number[] = [];
  let after = 0;
  for (const f of await readdir(dir)) {
    if (!f.startsWith('pgbench_log')) continue;
    const text = await readFile(path.join(dir, f), 'utf8');
    for (const line of text.split('\n')) {
      const parts = line.split(' ');
      if (parts.length < 3) continue;
      if (Number(parts[4]) * 1e6 + Number(parts[5]) >= fromUs) after++;
      const lag = parts.length >= 7 ? Number(parts[6]) : 0;
      const us = Number(parts[2]) - (Number.isFinite(lag) ? lag : 0);
      if (Number.isFinite(us)) values.push(us / 1000);
    }
  }
  return { sorted: Float64Array.from(values).sort(), after };
}

export async function runPgbench(opts: {
  url: string;
  args: string[];
  clients: number;
  durationS: number;
  /** Total transactions per second asked of pgbench (-R); none: as fast as it goes. */
  rate?: number;
  logDir: string;
  /** The pooler's processes (started pids); empty for direct. */
  poolerPids: number[];
  /** The ports its server connections go to. */
  serverPorts: number[];
  /** PostgreSQL postmasters whose process trees are measured, by node name. */
  postmasters: Record<string, number>;
}): Promise<RunResult> {
  await rm(opts.logDir, { recursive: true, force: true });
  await mkdir(opts.logDir, { recursive: true });
  const threads = Math.min(opts.clients, 2);
  const rate = opts.rate === undefined ? [] : ['-R', String(opts.rate)];
  const args = [...opts.args, ...rate, '-n', '-c', String(opts.clients), '-j', String(threads), '-T', String(opts.durationS), '-P', '1', '-l', '--log-prefix', path.join(opts.logDir, 'pgbench_log'), opts.url];
  // pgbench's CPU: the shell that waited for it has it in its cutime/cstime.
  const statFile = path.join(opts.logDir, 'pgbench.stat');
  const wrapper = 'pgbench "$@"; rc=$?; cat /proc/$$/stat > "$STATFILE"; exit $rc';
  const nodeRoots = Object.entries(opts.postmasters);
  // The measured interval starts at pgbench's first progress report, once its
  // clients have logged in: a login's cost (PgBouncer hashes the password for
  // each) is not a transaction's. Until then, the start of the run stands in.
  const mark = () => ({
    nodes: nodeRoots.map(([, pid]) => sampleTree([pid])),
    pooler: opts.poolerPids.length > 0 ? sampleTree(opts.poolerPids) : [],
    busy: machineBusyUs(),
    at: process.hrtime.bigint(),
    epochUs: Date.now() * 1000,
  });
  let from = mark();
  const startedAt = from.at;
  let progressed = false;
  let peak = 0;
  let done = false;
  const sampler = (async () => {
    if (opts.poolerPids.length === 0) return;
    while (!done) {
      try {
        const pids = sampleTree(opts.poolerPids).map((p) => p.pid);
        peak = Math.max(peak, connectionsTo(pids, opts.serverPorts));
      } catch {
        // a process went away while being read
      }
      await new Promise((res) => setTimeout(res, 250));
    }
  })();
  const value = await new Promise<{ stdout: string; stderr: string; code: number }>((resolve) => {
    const child = spawn('bash', ['-c', wrapper, 'pgbench', ...args], { env: { ...process.env, STATFILE: statFile }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), (opts.durationS + 120) * 1000);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      const text = d.toString();
      if (!progressed && text.includes('progress: ')) {
        progressed = true;
        from = mark();
      }
      // Progress lines are many; keep what an error would need.
      stderr = (stderr + text.split('\n').filter((l) => !l.startsWith('progress: ')).join('\n')).slice(-8000);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code: code ?? 1 });
    });
  });
  done = true;
  await sampler;
  const wallUs = Number(process.hrtime.bigint() - from.at) / 1000;
  const runWallUs = Number(process.hrtime.bigint() - startedAt) / 1000;
  const machineCores = (machineBusyUs() - from.busy) / wallUs;
  const pooler = opts.poolerPids.length > 0 ? usageBetween(from.pooler, sampleTree(opts.poolerPids), wallUs) : null;
  const nodes: Record<string, TreeUsage> = {};
  nodeRoots.forEach(([name, pid], i) => (nodes[name] = usageBetween(from.nodes[i], sampleTree([pid]), wallUs)));
  let pgbenchCpuUs = NaN;
  try {
    const st = await readFile(statFile, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    pgbenchCpuUs = ((Number(f[13]) + Number(f[14])) * 1e6) / HZ;
  } catch {
    // pgbench did not get as far
  }
  // With -C pgbench reports tps "including reconnection times".
  const tps = Number(/tps = ([\d.]+) \((?:without initial connection time|including reconnection times)\)/.exec(value.stdout)?.[1] ?? NaN);
  const processed = Number(/actually processed: (\d+)/.exec(value.stdout)?.[1] ?? 0);
  const failed = Number(/number of failed transactions: (\d+)/.exec(value.stdout)?.[1] ?? 0);
  const { sorted: lat, after } = await readLatencies(opts.logDir, progressed ? from.epochUs : 0);
  await rm(opts.logDir, { recursive: true, force: true });
  const aborted = /aborted/.test(value.stdout + value.stderr);
  const none = value.code === 0 && !aborted && processed === 0 ? `pgbench processed no transaction in ${opts.durationS} s (its ${opts.clients} logins may have taken the whole run: give a longer --duration)` : null;
  const failedRun = value.code !== 0 || aborted || !Number.isFinite(tps);
  const error =
    none ??
    (failedRun ? value.stderr.trim().split('\n').slice(-2).join(' ') || `pgbench exited ${value.code}: ${value.stdout.trim().split('\n').slice(-2).join(' ') || 'no output'}` : null);
  return {
    tps: Number.isFinite(tps) ? tps : 0,
    processed,
    failed,
    p50: percentile(lat, 50),
    p95: percentile(lat, 95),
    p99: percentile(lat, 99),
    serverConnections: opts.poolerPids.length > 0 ? peak : opts.clients,
    pooler,
    cpuTxns: progressed ? after : processed,
    pgbenchCpuUs,
    nodes,
    wallUs,
    runWallUs,
    machineCores,
    error,
  };
}
