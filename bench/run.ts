/**
 * The benchmark: pgbench against PostgreSQL directly, through pgmux in each
 * mode, and through PgBouncer, on one throw-away cluster (a primary and two
 * streaming replicas), all on loopback. Writes a CSV and docs/benchmarks.md
 * with plots. Usage: npm run bench -- --help
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { LocalCluster } from '../src/embedded/cluster.ts';
import { TARGETS, ensurePgbouncer, startTarget, type Running, type TargetEnv, type TargetName } from './targets.ts';
import { WORKLOADS } from './workloads.ts';
import { processUsage, runPgbench, type RunResult } from './pgbench.ts';
import { machineDescription, toCsv, writeReport, type Row } from './report.ts';
import { findings, fromCsv } from './findings.ts';

const exec = promisify(execFile);
const repoDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const list = (s: string) => s.split(',').map((x) => x.trim()).filter((x) => x !== '');

const program = new Command('bench')
  .description('pgbench against direct PostgreSQL, pgmux and PgBouncer')
  .option('--duration <s>', 'seconds per run (env BENCH_DURATION)', process.env.BENCH_DURATION ?? '10')
  .option('--reps <n>', 'repetitions per cell (env BENCH_REPS)', process.env.BENCH_REPS ?? '2')
  .option('--concurrency <list>', 'client counts (env BENCH_CONCURRENCY)', process.env.BENCH_CONCURRENCY ?? '1,10,50,100')
  .option('--targets <list>', `targets (env BENCH_TARGETS): ${TARGETS.join(',')}`, process.env.BENCH_TARGETS ?? TARGETS.join(','))
  .option('--workloads <list>', `workloads (env BENCH_WORKLOADS): ${WORKLOADS.map((w) => w.name).join(',')}`, process.env.BENCH_WORKLOADS ?? WORKLOADS.map((w) => w.name).join(','))
  .option('--scale <n>', 'pgbench scale (env BENCH_SCALE)', process.env.BENCH_SCALE ?? '10')
  .option('--pool-size <n>', 'server connections per transaction-mode pool (env BENCH_POOL_SIZE)', process.env.BENCH_POOL_SIZE ?? '20')
  .option('--report <dir>', 'where benchmarks.md and plots go', path.join(repoDir, 'docs'))
  .option('--csv <file>', 'CSV output', path.join(repoDir, 'bench/results/latest.csv'))
  .option('--from-csv <file>', 'write the report from an earlier run\'s CSV instead of measuring')
  .option('--notes <file>', 'Markdown to include in the report (what was changed and what it bought)');

async function version(cmd: string, args: string[]): Promise<string> {
  try {
    return (await exec(cmd, args)).stdout.trim().split('\n')[0];
  } catch {
    return 'unavailable';
  }
}

async function main(): Promise<void> {
  program.parse();
  const o = program.opts<Record<string, string>>();
  const duration = Number(o.duration);
  const reps = Number(o.reps);
  const concurrency = list(o.concurrency).map(Number);
  const targets = list(o.targets) as TargetName[];
  for (const t of targets) if (!TARGETS.includes(t)) throw new Error(`unknown target ${t}`);
  const workloads = WORKLOADS.filter((w) => list(o.workloads).includes(w.name));
  const log = (s: string) => console.error(s);
  const started = new Date();
  const extras = async (rows: Row[]) => ({
    findings: await findings(rows, path.join(repoDir, 'bench/results/memory.txt')),
    notes: o.notes === undefined ? undefined : await readFile(o.notes, 'utf8'),
  });
  if (o.fromCsv !== undefined) {
    const rows = fromCsv(await readFile(o.fromCsv, 'utf8'));
    const measured = (await stat(o.fromCsv)).mtime;
    const machine = machineDescription({
      PostgreSQL: await version('/usr/lib/postgresql/15/bin/postgres', ['--version']),
      PgBouncer: await version('pgbouncer', ['--version']),
      Node: process.version,
    });
    await writeReport(rows, { docsDir: o.report, machine, started: measured, settings: `npm run bench -- --duration ${duration} --reps ${reps}`, ...(await extras(rows)) });
    log(`wrote ${path.join(o.report, 'benchmarks.md')} from ${o.fromCsv}`);
    return;
  }

  const wantBouncer = targets.some((t) => t.startsWith('pgbouncer'));
  const haveBouncer = wantBouncer ? await ensurePgbouncer(log) : false;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgmux-bench-'));
  log('starting a primary and two replicas');
  const cluster = await LocalCluster.start({ replicas: 2, settings: { max_connections: '800', shared_buffers: '128MB' }, log });
  let running: Running | null = null;
  const cleanup = async () => {
    await running?.stop().catch(() => {});
    await cluster.stop().catch(() => {});
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      log(`${sig}: stopping what the benchmark started`);
      void cleanup().then(() => process.exit(130));
    });
  }
  try {
    const user = 'bench';
    const password = 'bench-secret';
    await cluster.createRole(user, password);
    await cluster.query(`CREATE DATABASE ${user} OWNER ${user}`);
    const direct = (port: number) => `postgresql://${user}:${password}@127.0.0.1:${port}/${user}`;
    log(`pgbench -i -s ${o.scale}`);
    await exec('pgbench', ['-i', '-q', '-s', o.scale, direct(cluster.primary.port)], { maxBuffer: 64 << 20 });
    await cluster.waitForReplicas();
    const env: TargetEnv = {
      cluster,
      dir,
      user,
      password,
      database: user,
      sessionPoolSize: Math.max(...concurrency, 20),
      transactionPoolSize: Number(o.poolSize),
      repoDir,
      nodeBin: process.execPath,
    };
    const adminUrl = cluster.url(cluster.primary, cluster.superuser, undefined, user);

    const cells: { target: TargetName; workload: (typeof WORKLOADS)[number]; clients: number }[] = [];
    for (const w of workloads) for (const t of targets) {
      if (w.targets !== undefined && !w.targets.includes(t)) continue;
      for (const c of w.clients ?? concurrency) cells.push({ target: t, workload: w, clients: c });
    }
    const total = cells.length * reps;
    let done = 0;
    const t0 = Date.now();
    const rows: Row[] = [];
    for (const cell of cells) {
      const results: RunResult[] = [];
      let usage: { peakRssMb: number; cpuS: number } | null = null;
      let error: string | null = null;
      if (cell.target.startsWith('pgbouncer') && !haveBouncer) error = 'pgbouncer unavailable';
      else {
        try {
          running = await startTarget(env, cell.target);
          const args = await cell.workload.args(dir);
          for (let r = 0; r < reps; r++) {
            const eta = done === 0 ? '?' : `${Math.round((((Date.now() - t0) / done) * (total - done)) / 1000)} s`;
            log(`[${done + 1}/${total}] ${cell.workload.name} ${cell.target} c=${cell.clients} rep ${r + 1}/${reps} (eta ${eta})`);
            results.push(await runPgbench({ url: direct(running.port), adminUrl, user, args, clients: cell.clients, durationS: duration, logDir: path.join(dir, 'log') }));
            done++;
          }
          if (running.pid !== null && cell.target.startsWith('pgmux')) usage = await processUsage(running.pid);
        } catch (err) {
          error = (err as Error).message.split('\n')[0];
        } finally {
          await running?.stop();
          running = null;
        }
      }
      done = Math.max(done, rows.length * reps);
      const ok = results.filter((r) => r.error === null);
      const tps = ok.map((r) => r.tps);
      const mean = tps.length === 0 ? 0 : tps.reduce((a, b) => a + b, 0) / tps.length;
      const std = tps.length < 2 ? 0 : Math.sqrt(tps.reduce((a, b) => a + (b - mean) ** 2, 0) / (tps.length - 1));
      const avg = (k: 'p50' | 'p95' | 'p99') => (ok.length === 0 ? NaN : ok.reduce((a, r) => a + r[k], 0) / ok.length);
      rows.push({
        target: cell.target,
        workload: cell.workload.name,
        clients: cell.clients,
        reps: ok.length,
        tpsMean: mean,
        tpsStd: std,
        p50: avg('p50'),
        p95: avg('p95'),
        p99: avg('p99'),
        failed: results.reduce((a, r) => a + r.failed, 0),
        serverConnections: Math.max(0, ...results.map((r) => r.serverConnections)),
        peakRssMb: usage?.peakRssMb ?? null,
        cpuS: usage?.cpuS ?? null,
        error: error ?? (ok.length === 0 ? (results[0]?.error ?? 'no run') : null),
      });
      await mkdir(path.dirname(o.csv), { recursive: true });
      await writeFile(o.csv, toCsv(rows));
    }
    const machine = machineDescription({
      PostgreSQL: await version('/usr/lib/postgresql/15/bin/postgres', ['--version']),
      PgBouncer: await version('pgbouncer', ['--version']),
      Node: process.version,
    });
    await writeReport(rows, {
      docsDir: o.report,
      machine,
      started,
      settings: `npm run bench -- --duration ${duration} --reps ${reps} --concurrency ${concurrency.join(',')} --scale ${o.scale} --pool-size ${o.poolSize}`,
      ...(await extras(rows)),
    });
    log(`wrote ${o.csv} and ${path.join(o.report, 'benchmarks.md')}`);
  } finally {
    await cleanup();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
