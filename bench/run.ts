/**
 * The benchmark: pgbench against PostgreSQL directly, through pgmux, through
 * a bare Node.js proxy and through PgBouncer, on one throw-away cluster (a
 * primary and two streaming replicas), all on loopback. Each run goes to a
 * results folder (bench/results/<time>/: CSV, report, plots); the committed
 * docs/benchmarks.md is written only with --report docs.
 * Usage: npm run bench -- --help
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { LocalCluster } from '../src/embedded/cluster.ts';
import { TARGETS, ensurePgbouncer, parseTarget, startTarget, unavailable, workersFlag, type Running, type TargetEnv, type TargetName } from './targets.ts';
import { DEFAULT_WORKLOADS, SIM_WORKLOADS, WORKLOADS, type Workload } from './workloads.ts';
import { runPgbench, type RunResult } from './pgbench.ts';
import { COLUMNS, machineDescription, shortVersion, toCsv, writeReport, type Row, type RunInfo } from './report.ts';
import { fromCsv, hostsSimSection, targetsBlock } from './findings.ts';
import { sampleTree, usageBetween } from './procs.ts';
import { cpuStat, hostsSimUnavailable, removeLeftovers, startHostsSim, stopHostsSim, type HostsSim } from './hosts-sim.ts';

const exec = promisify(execFile);
const repoDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const list = (s: string) => s.split(',').map((x) => x.trim()).filter((x) => x !== '' && x !== 'none');

const DEFAULT_TARGETS = ['direct', 'bare-proxy', 'pgmux-session', 'pgmux-transaction', 'pgmux-transaction-w2', 'pgbouncer-session', 'pgbouncer-transaction', 'pgbouncer-transaction-reuseport'];

const program = new Command('bench')
  .description('pgbench against direct PostgreSQL, pgmux, a bare Node.js proxy and PgBouncer')
  .option('--duration <s>', 'seconds per run (env BENCH_DURATION)', process.env.BENCH_DURATION ?? '10')
  .option('--reps <n>', 'runs per target in each cell, the targets taking turns (env BENCH_REPS)', process.env.BENCH_REPS ?? '2')
  .option('--warmup <s>', 'seconds each target runs unmeasured before a cell (env BENCH_WARMUP)', process.env.BENCH_WARMUP ?? '1')
  .option('--idle <s>', 'seconds the targets of a cell are measured idle, for what they spend with nobody connected (env BENCH_IDLE)', process.env.BENCH_IDLE ?? '2')
  .option('--concurrency <list>', 'client counts (env BENCH_CONCURRENCY)', process.env.BENCH_CONCURRENCY ?? '10,100')
  .option('--targets <list>', `targets (env BENCH_TARGETS): ${TARGETS.join(',')}; a pgmux target may end in -w<N> for --workers N`, process.env.BENCH_TARGETS ?? DEFAULT_TARGETS.join(','))
  .option('--workloads <list>', `workloads (env BENCH_WORKLOADS): ${WORKLOADS.map((w) => w.name).join(',')}; none for only --hosts-sim`, process.env.BENCH_WORKLOADS ?? DEFAULT_WORKLOADS.join(','))
  .option('--scale <n>', 'pgbench scale (env BENCH_SCALE)', process.env.BENCH_SCALE ?? '10')
  .option('--pool-size <n>', 'server connections per transaction-mode pool (env BENCH_POOL_SIZE)', process.env.BENCH_POOL_SIZE ?? '20')
  .option('--latency-rate <tps>', 'latency workload: transactions per second per client (pgbench -R is this × clients)', process.env.BENCH_LATENCY_RATE ?? '200')
  .option('--reuseport-procs <n>', 'PgBouncer processes of the pgbouncer-transaction-reuseport target', process.env.BENCH_REUSEPORT_PROCS ?? '2')
  .option('--hosts-sim', 'also run the host simulation: each PostgreSQL node in a CPU cgroup of its own')
  .option('--hosts-sim-quota <fraction>', 'host simulation: share of one core per node', '0.3')
  .option('--hosts-sim-period <us>', 'host simulation: cpu.cfs_period_us (the quota is this × the share)', '100000')
  .option('--hosts-sim-clients <n>', 'host simulation: pgbench clients', '20')
  .option('--hosts-sim-workloads <list>', `host simulation workloads: ${SIM_WORKLOADS.map((w) => w.name).join(',')}`, SIM_WORKLOADS.map((w) => w.name).join(','))
  .option('--results <dir>', 'folder that gets one folder per run', path.join(repoDir, 'bench/results'))
  .option('--report <dir>', 'where benchmarks.md and plots go: "docs" for the committed docs/benchmarks.md; default the run\'s results folder')
  .option('--from <dir>', 'write the report again from an earlier run\'s results folder instead of measuring')
  .option('--notes <file>', 'Markdown to include in the report (what was changed and what it bought)');

async function version(cmd: string, args: string[]): Promise<string> {
  try {
    return shortVersion((await exec(cmd, args)).stdout.trim().split('\n')[0]);
  } catch {
    return 'unavailable';
  }
}

const mean = (xs: number[]) => (xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length);
const std = (xs: number[]) => {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1));
};

/** One pgbench run of one target, as the runs CSV keeps it. */
interface RunRecord {
  workload: string;
  clients: number;
  rep: number;
  order: number;
  target: string;
  tps: number;
  processed: number;
  cpuUsPerTxn: number | null;
  pgbenchUsPerTxn: number;
  poolerCores: string;
  peakRssMb: number | null;
  error: string | null;
}
const RUN_COLUMNS: (keyof RunRecord)[] = ['workload', 'clients', 'rep', 'order', 'target', 'tps', 'processed', 'cpuUsPerTxn', 'pgbenchUsPerTxn', 'poolerCores', 'peakRssMb', 'error'];

function fold(target: string, w: Workload, clients: number, rate: number, results: RunResult[], note: string, error: string | null, idleCores: number | null): Row {
  const ok = results.filter((r) => r.error === null && r.processed > 0);
  const asked = parseTarget(target)?.workers ?? 1;
  const seen = Math.max(0, ...ok.map((r) => r.pooler?.processes ?? 0));
  // A build whose setting exists but whose supervisor does not fork yet runs one process.
  if (asked > 1 && seen > 0 && seen < asked + 1) note = `${note}; asked for workers = ${asked}, ran as ${seen} process${seen === 1 ? '' : 'es'}`;
  const cpu = ok.filter((r) => r.pooler !== null && r.cpuTxns > 0).map((r) => r.pooler!.cpuUs / r.cpuTxns);
  const last = ok.at(-1);
  const coresOf = (r: RunResult) => r.pooler?.cores ?? [];
  // Cores per process averaged over the runs, by rank (busiest first).
  const ranks = Math.max(0, ...ok.map((r) => coresOf(r).length));
  const perRank = Array.from({ length: ranks }, (_, i) => ({ name: coresOf(last!)[i]?.name ?? '?', cores: mean(ok.map((r) => coresOf(r)[i]?.cores ?? 0)) }));
  const nodeNames = last === undefined ? [] : Object.keys(last.nodes);
  const nodes = nodeNames
    .map((n) => `${n}=${mean(ok.map((r) => (r.nodes[n]?.cpuUs ?? 0) / r.wallUs)).toFixed(3)}/${mean(ok.map((r) => r.throttled?.[n] ?? NaN)).toFixed(3)}`)
    .join(';');
  return {
    target,
    workload: w.name,
    clients,
    rate,
    reps: ok.length,
    tpsMean: mean(ok.map((r) => r.tps)),
    tpsStd: std(ok.map((r) => r.tps)),
    p50: mean(ok.map((r) => r.p50)),
    p95: mean(ok.map((r) => r.p95)),
    p99: mean(ok.map((r) => r.p99)),
    failed: results.reduce((a, r) => a + r.failed, 0),
    serverConnections: Math.max(0, ...ok.map((r) => r.serverConnections)),
    cpuUsPerTxn: cpu.length === 0 ? null : mean(cpu),
    cpuUsPerTxnStd: cpu.length === 0 ? null : std(cpu),
    pgbenchUsPerTxn: ok.length === 0 ? null : mean(ok.map((r) => r.pgbenchCpuUs / r.processed)),
    poolerCores: perRank.map((p) => `${p.cores.toFixed(2)} ${p.name}`).join(', '),
    poolerCoresTotal: cpu.length === 0 ? null : mean(ok.map((r) => (r.pooler?.cpuUs ?? 0) / r.wallUs)),
    processes: last?.pooler?.processes ?? null,
    peakRssMb: last?.pooler === null || last === undefined ? null : Math.max(...ok.map((r) => r.pooler?.peakRssMb ?? 0)),
    nodes,
    pgbenchCores: ok.length === 0 ? null : mean(ok.map((r) => r.pgbenchCpuUs / r.runWallUs)),
    machineCores: ok.length === 0 ? null : mean(ok.map((r) => r.machineCores)),
    idleCores,
    note,
    error: error ?? (ok.length === 0 ? (results[0]?.error ?? 'no run') : null),
  };
}

async function main(): Promise<void> {
  program.parse();
  const o = program.opts<Record<string, string | boolean | undefined>>();
  const s = (k: string) => String(o[k]);
  const log = (line: string) => console.error(line);
  const reportDirOf = (resultsDir: string) => (o.report === undefined ? resultsDir : o.report === 'docs' ? path.join(repoDir, 'docs') : path.resolve(String(o.report)));
  const notes = o.notes === undefined ? undefined : await readFile(String(o.notes), 'utf8');
  const write = async (rows: Row[], info: RunInfo, resultsDir: string) => {
    const dir = reportDirOf(resultsDir);
    const memoryProbe = await readFile(path.join(repoDir, 'bench/results/memory.txt'), 'utf8').catch(() => undefined);
    const howTo = path.relative(dir, path.join(repoDir, 'docs/benchmarking.md'));
    await writeReport(rows, { dir, info, targets: targetsBlock(rows, memoryProbe), hostsSim: hostsSimSection(rows, info), notes, howTo });
    if (o.report === 'docs') await copyFile(path.join(resultsDir, 'rows.csv'), path.join(repoDir, 'bench/results/benchmarks.csv'));
    log(`wrote ${path.join(dir, 'benchmarks.md')}`);
  };

  if (o.from !== undefined) {
    const from = path.resolve(String(o.from));
    const rows = fromCsv(await readFile(path.join(from, 'rows.csv'), 'utf8'));
    const info = JSON.parse(await readFile(path.join(from, 'run.json'), 'utf8')) as RunInfo;
    await write(rows, info, from);
    return;
  }

  const duration = Number(o.duration);
  const reps = Number(o.reps);
  const warmup = Number(o.warmup);
  const idleS = Number(o.idle);
  const concurrency = list(s('concurrency')).map(Number);
  const targets = list(s('targets'));
  for (const t of targets) if (parseTarget(t) === null) throw new Error(`unknown target ${t}`);
  const workloads = list(s('workloads')).map((n) => WORKLOADS.find((w) => w.name === n) ?? (() => { throw new Error(`unknown workload ${n}`); })());
  const simWorkloads = o.hostsSim === true ? list(s('hostsSimWorkloads')).map((n) => SIM_WORKLOADS.find((w) => w.name === n) ?? (() => { throw new Error(`unknown host-simulation workload ${n}`); })()) : [];
  const quota = Number(o.hostsSimQuota);
  const simClients = Number(o.hostsSimClients);
  const periodUs = Number(o.hostsSimPeriod);
  const latencyRate = Number(o.latencyRate);
  const reuseportProcs = Number(o.reuseportProcs);
  if (o.hostsSim === true) {
    const why = hostsSimUnavailable();
    if (why !== null) throw new Error(`--hosts-sim: ${why}`);
    if (!(quota > 0 && quota <= 64)) throw new Error('--hosts-sim-quota: a share of one core, e.g. 0.3');
    if (!(periodUs >= 1000 && periodUs <= 1_000_000)) throw new Error('--hosts-sim-period: microseconds from 1000 to 1000000');
  }
  const started = new Date();
  const command = [
    'npm run bench --',
    `--duration ${duration} --reps ${reps} --warmup ${warmup} --idle ${idleS}`,
    `--targets ${targets.join(',') || 'none'} --workloads ${workloads.map((w) => w.name).join(',') || 'none'}`,
    `--concurrency ${concurrency.join(',')} --scale ${s('scale')} --pool-size ${s('poolSize')}`,
    `--latency-rate ${latencyRate} --reuseport-procs ${reuseportProcs}`,
    ...(o.hostsSim === true ? [`--hosts-sim --hosts-sim-quota ${quota} --hosts-sim-period ${periodUs} --hosts-sim-clients ${simClients} --hosts-sim-workloads ${simWorkloads.map((w) => w.name).join(',')}`] : []),
    ...(o.report === 'docs' ? ['--report docs'] : []),
    ...(o.notes !== undefined ? [`--notes ${path.relative(repoDir, path.resolve(String(o.notes)))}`] : []),
  ].join(' ');
  const stamp = started.toISOString().replace(/[:]/g, '').replace(/\..*/, '');
  const resultsDir = path.join(path.resolve(s('results')), stamp);
  await mkdir(resultsDir, { recursive: true });
  log(`results: ${resultsDir}`);

  const allTargets = [...targets, ...simWorkloads.flatMap((w) => w.targets ?? [])];
  const haveBouncer = allTargets.some((t) => t.startsWith('pgbouncer')) ? await ensurePgbouncer(log) : false;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgmux-bench-'));
  log('starting a primary and two replicas');
  const cluster = await LocalCluster.start({ replicas: 2, settings: { max_connections: '800', shared_buffers: '128MB' }, log });
  const running: Running[] = [];
  let sim: HostsSim | null = null;
  let leftovers: string[] = [];
  const endSim = async () => {
    if (sim === null) return;
    const s = sim;
    sim = null;
    leftovers.push(...(await stopHostsSim(s)));
  };
  const cleanup = async () => {
    await Promise.all(running.splice(0).map((r) => r.stop().catch(() => {})));
    await endSim();
    await cluster.stop().catch(() => {});
    leftovers = removeLeftovers(leftovers);
    if (leftovers.length > 0) log(`could not remove the cgroups ${leftovers.join(', ')}: rmdir them once they are empty`);
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
    log(`pgbench -i -s ${s('scale')}`);
    await exec('pgbench', ['-i', '-q', '-s', s('scale'), direct(cluster.primary.port)], { maxBuffer: 64 << 20 });
    await cluster.waitForReplicas();
    const env: TargetEnv = {
      cluster,
      dir,
      user,
      password,
      database: user,
      sessionPoolSize: Math.max(...concurrency, ...workloads.flatMap((w) => w.clients ?? []), simClients, 20),
      transactionPoolSize: Number(o.poolSize),
      reuseportProcs,
      workersFlag: null,
      repoDir,
      nodeBin: process.execPath,
    };
    const hasWorkers = await workersFlag(env);
    if (!hasWorkers) log('this pgmux has no --workers flag: the -w<N> targets are skipped');
    const nodePorts = [cluster.primary, ...cluster.replicas].map((n) => n.port);
    const postmasterOf = (dataDir: string) => Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const nodeNames = ['primary', ...cluster.replicas.map((_, i) => `replica${i + 1}`)];
    const nodeDirs = [cluster.primary, ...cluster.replicas].map((n) => n.dataDir);

    type Cell = { workload: Workload; clients: number; targets: string[]; sim: boolean };
    const cells: Cell[] = [];
    for (const w of workloads) {
      const ts = targets.filter((t) => w.targets === undefined || w.targets.includes(t));
      for (const c of w.clients ?? concurrency) if (ts.length > 0) cells.push({ workload: w, clients: c, targets: ts, sim: false });
    }
    for (const w of simWorkloads) cells.push({ workload: w, clients: simClients, targets: w.targets ?? [], sim: true });
    const total = cells.reduce((a, c) => a + c.targets.length * reps, 0);
    let done = 0;
    const t0 = Date.now();
    const rows: Row[] = [];
    const runs: RunRecord[] = [];
    const saveCsv = async () => {
      await writeFile(path.join(resultsDir, 'rows.csv'), toCsv(rows, COLUMNS));
      await writeFile(path.join(resultsDir, 'runs.csv'), toCsv(runs, RUN_COLUMNS));
    };
    for (const cell of cells) {
      if (cell.sim && sim === null) {
        log(`host simulation: each node in a cpu cgroup of ${quota} of a core`);
        sim = await startHostsSim(nodeNames.map((name, i) => ({ name, postmaster: postmasterOf(nodeDirs[i]) })), quota, periodUs);
      }
      const w = cell.workload;
      const rate = w.ratePerClient === true ? latencyRate * cell.clients : 0;
      const args = await w.args(dir);
      const results = new Map<string, RunResult[]>();
      const errors = new Map<string, string>();
      const notes = new Map<string, string>();
      const up = new Map<string, Running>();
      for (const t of cell.targets) {
        results.set(t, []);
        const why = t.startsWith('pgbouncer') && !haveBouncer ? 'pgbouncer unavailable' : await unavailable(env, t);
        if (why !== null) {
          errors.set(t, why);
          continue;
        }
        try {
          const r = await startTarget(env, t);
          running.push(r);
          up.set(t, r);
          if (r.note !== undefined) notes.set(t, r.note);
        } catch (err) {
          errors.set(t, `did not start: ${(err as Error).message.split('\n').slice(0, 2).join(' ')}`);
        }
      }
      const measure = (t: string, seconds: number) => {
        const r = up.get(t)!;
        return runPgbench({
          url: direct(r.port),
          args,
          clients: cell.clients,
          durationS: seconds,
          rate: rate > 0 ? rate : undefined,
          logDir: path.join(dir, 'log'),
          poolerPids: r.pids,
          serverPorts: nodePorts,
          postmasters: cell.sim ? Object.fromEntries(nodeNames.map((n, i) => [n, postmasterOf(nodeDirs[i])])) : {},
        });
      };
      const idle = new Map<string, number>();
      try {
        if (warmup > 0) for (const t of up.keys()) await measure(t, warmup);
        // What each target spends with nobody connected (once warm), all of them idle together.
        if (idleS > 0 && up.size > 0) {
          const before = new Map([...up].map(([t, r]) => [t, sampleTree(r.pids)]));
          const start = process.hrtime.bigint();
          await new Promise((res) => setTimeout(res, idleS * 1000));
          const wallUs = Number(process.hrtime.bigint() - start) / 1000;
          for (const [t, r] of up) if (r.pids.length > 0) idle.set(t, usageBetween(before.get(t)!, sampleTree(r.pids), wallUs).cpuUs / wallUs);
        }
        for (let rep = 0; rep < reps; rep++) {
          // The targets take turns, A B A B …, each starting first in turn, so drift hits them all.
          const order = [...up.keys()];
          const turn = [...order.slice(rep % order.length), ...order.slice(0, rep % order.length)];
          for (const [i, t] of turn.entries()) {
            const eta = done === 0 ? '?' : `${Math.round((((Date.now() - t0) / done) * (total - done)) / 1000)} s`;
            log(`[${done + 1}/${total}] ${w.name} c=${cell.clients}${rate > 0 ? ` @ ${rate}/s` : ''} ${t} rep ${rep + 1}/${reps} (${Math.round((Date.now() - t0) / 1000)} s in, eta ${eta})`);
            const before = sim?.groups.map((g) => cpuStat(g.dir));
            const r = await measure(t, duration);
            if (sim !== null && before !== undefined) {
              const thr: Record<string, number> = {};
              sim.groups.forEach((g, k) => {
                const a = cpuStat(g.dir);
                const periods = (a.nr_periods ?? 0) - (before[k].nr_periods ?? 0);
                thr[g.name] = periods > 0 ? ((a.nr_throttled ?? 0) - (before[k].nr_throttled ?? 0)) / periods : NaN;
              });
              r.throttled = thr;
            }
            results.get(t)!.push(r);
            runs.push({
              workload: w.name,
              clients: cell.clients,
              rep: rep + 1,
              order: i + 1,
              target: t,
              tps: r.tps,
              processed: r.processed,
              cpuUsPerTxn: r.pooler === null || r.cpuTxns === 0 ? null : r.pooler.cpuUs / r.cpuTxns,
              pgbenchUsPerTxn: r.processed === 0 ? NaN : r.pgbenchCpuUs / r.processed,
              poolerCores: r.pooler?.cores.map((c) => `${c.cores.toFixed(2)} ${c.name}`).join(', ') ?? '',
              peakRssMb: r.pooler?.peakRssMb ?? null,
              error: r.error,
            });
            done++;
          }
        }
      } finally {
        await Promise.all([...up.values()].map((r) => r.stop().catch(() => {})));
        for (const r of up.values()) running.splice(running.indexOf(r), 1);
      }
      for (const t of cell.targets) {
        const e = errors.get(t) ?? null;
        if (e !== null) done += reps;
        rows.push(fold(t, w, cell.clients, rate, results.get(t)!, notes.get(t) ?? '', e, idle.get(t) ?? null));
      }
      await saveCsv();
    }
    await endSim();
    const info: RunInfo = {
      started: started.toISOString(),
      machine: machineDescription(),
      versions: {
        PostgreSQL: await version('/usr/lib/postgresql/15/bin/postgres', ['--version']),
        PgBouncer: await version('pgbouncer', ['--version']),
        Node: process.version,
      },
      command,
      cores: os.cpus().length,
      hostsSim: simWorkloads.length > 0 ? { quota, clients: simClients, periodUs } : null,
      deviceLent: false,
      reuseportProcs,
      latencyRate,
      workersFlag: hasWorkers,
      poolSize: Number(o.poolSize),
    };
    await writeFile(path.join(resultsDir, 'run.json'), JSON.stringify(info, null, 2) + '\n');
    await saveCsv();
    // The report from the CSV as written, so that --from gives the same report.
    await write(fromCsv(toCsv(rows, COLUMNS)), info, resultsDir);
    log(`took ${((Date.now() - t0) / 1000).toFixed(0)} s; results in ${resultsDir}`);
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
