import { execFile } from 'node:child_process';
import { readdir, readFile, rm, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const exec = promisify(execFile);

export interface RunResult {
  tps: number;
  processed: number;
  failed: number;
  /** Latencies in ms from pgbench's per-transaction log. */
  p50: number;
  p95: number;
  p99: number;
  /** Most server connections of the benchmark user seen at once. */
  serverConnections: number;
  error: string | null;
}

/** Sorted-array percentile. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/** Latencies (ms) from pgbench -l files: "client txno latency_us script epoch epoch_us". */
export async function readLatencies(dir: string): Promise<Float64Array> {
  const values: number[] = [];
  for (const f of await readdir(dir)) {
    if (!f.startsWith('pgbench_log')) continue;
    const text = await readFile(path.join(dir, f), 'utf8');
    for (const line of text.split('\n')) {
      const parts = line.split(' ');
      if (parts.length < 3) continue;
      const us = Number(parts[2]);
      if (Number.isFinite(us)) values.push(us / 1000);
    }
  }
  return Float64Array.from(values).sort();
}

/** Counts the benchmark user's backends on the primary every 250 ms while `during` runs. */
async function sampleConnections<T>(adminUrl: string, user: string, during: Promise<T>): Promise<{ value: T; peak: number }> {
  const admin = new pg.Client({ connectionString: adminUrl });
  admin.on('error', () => {});
  await admin.connect();
  let peak = 0;
  let done = false;
  const loop = (async () => {
    while (!done) {
      const r = await admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1 AND backend_type = 'client backend'", [user]);
      peak = Math.max(peak, r.rows[0].n);
      await new Promise((res) => setTimeout(res, 250));
    }
  })();
  try {
    const value = await during;
    return { value, peak };
  } finally {
    done = true;
    await loop.catch(() => {});
    await admin.end().catch(() => {});
  }
}

export async function runPgbench(opts: {
  url: string;
  adminUrl: string;
  user: string;
  args: string[];
  clients: number;
  durationS: number;
  logDir: string;
}): Promise<RunResult> {
  await rm(opts.logDir, { recursive: true, force: true });
  await mkdir(opts.logDir, { recursive: true });
  const threads = Math.min(opts.clients, 2);
  const args = [...opts.args, '-n', '-c', String(opts.clients), '-j', String(threads), '-T', String(opts.durationS), '-l', '--log-prefix', path.join(opts.logDir, 'pgbench_log'), opts.url];
  const { value, peak } = await sampleConnections(
    opts.adminUrl,
    opts.user,
    exec('pgbench', args, { maxBuffer: 64 << 20, timeout: (opts.durationS + 120) * 1000 }).then(
      (r) => ({ stdout: r.stdout, stderr: r.stderr, code: 0 }),
      (e: { stdout?: string; stderr?: string; code?: number }) => ({ stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: e.code ?? 1 }),
    ),
  );
  // With -C pgbench reports tps "including reconnection times".
  const tps = Number(/tps = ([\d.]+) \((?:without initial connection time|including reconnection times)\)/.exec(value.stdout)?.[1] ?? NaN);
  const processed = Number(/actually processed: (\d+)/.exec(value.stdout)?.[1] ?? 0);
  const failed = Number(/number of failed transactions: (\d+)/.exec(value.stdout)?.[1] ?? 0);
  const lat = await readLatencies(opts.logDir);
  await rm(opts.logDir, { recursive: true, force: true });
  const aborted = /aborted/.test(value.stdout + value.stderr);
  const error = value.code !== 0 || aborted || !Number.isFinite(tps) ? (value.stderr.trim().split('\n').slice(-2).join(' ') || `pgbench exited ${value.code}: ${value.stdout.trim().split('\n').slice(-2).join(' ') || 'no output'}`) : null;
  return {
    tps: Number.isFinite(tps) ? tps : 0,
    processed,
    failed,
    p50: percentile(lat, 50),
    p95: percentile(lat, 95),
    p99: percentile(lat, 99),
    serverConnections: peak,
    error,
  };
}

/** Peak RSS (VmHWM, MB) and CPU seconds (user + system) of a process. */
export async function processUsage(pid: number): Promise<{ peakRssMb: number; cpuS: number } | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
    const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
    const ticks = Number(stat[11]) + Number(stat[12]);
    const hz = Number((await exec('getconf', ['CLK_TCK'])).stdout.trim()) || 100;
    return { peakRssMb: hwm, cpuS: ticks / hz };
  } catch {
    return null;
  }
}
