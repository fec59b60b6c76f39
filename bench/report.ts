import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';

/** One (target, workload, clients) cell, repetitions folded. */
export interface Row {
  target: string;
  workload: string;
  clients: number;
  /** pgbench -R total (transactions per second), or 0 for as fast as it goes. */
  rate: number;
  reps: number;
  tpsMean: number;
  tpsStd: number;
  p50: number;
  p95: number;
  p99: number;
  failed: number;
  serverConnections: number;
  /** User + system µs of all the pooler's processes per transaction pgbench processed (mean, std over reps). */
  cpuUsPerTxn: number | null;
  cpuUsPerTxnStd: number | null;
  /** pgbench's own CPU per transaction. */
  pgbenchUsPerTxn: number | null;
  /** Cores each pooler process used while pgbench ran ("0.62 node, 0.05 node"), busiest first. */
  poolerCores: string;
  poolerCoresTotal: number | null;
  processes: number | null;
  /** Sum over the pooler's processes of each one's peak resident memory. */
  peakRssMb: number | null;
  /** Host simulation: cores each PostgreSQL node used and how often its cgroup was throttled. */
  nodes: string;
  pgbenchCores: number | null;
  /** Cores the pooler's processes used while nobody was connected (health checks, replay-position reads): its cost that no transaction causes. */
  idleCores: number | null;
  /** Cores the whole machine kept busy while the runs went (other users' work included). */
  machineCores: number | null;
  note: string;
  error: string | null;
}

export const COLUMNS: (keyof Row)[] = [
  'target', 'workload', 'clients', 'rate', 'reps', 'tpsMean', 'tpsStd', 'p50', 'p95', 'p99', 'failed', 'serverConnections',
  'cpuUsPerTxn', 'cpuUsPerTxnStd', 'pgbenchUsPerTxn', 'poolerCores', 'poolerCoresTotal', 'processes', 'peakRssMb', 'nodes', 'pgbenchCores', 'machineCores', 'idleCores', 'note', 'error',
];

export function toCsv<T extends object>(rows: T[], columns: (keyof T)[]): string {
  const cell = (v: unknown) => {
    if (v === null || v === undefined) return '';
    const t = typeof v === 'number' ? (Number.isInteger(v) ? String(v) : Number.isFinite(v) ? String(Number(v.toFixed(6))) : '') : String(v);
    return /[",\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
  };
  return [columns.join(','), ...rows.map((r) => columns.map((c) => cell(r[c])).join(','))].join('\n') + '\n';
}

/** What the run was: stored next to the CSV so a report can be written again from it. */
export interface RunInfo {
  started: string;
  machine: string;
  versions: Record<string, string>;
  /** The command that repeats the run. */
  command: string;
  cores: number;
  hostsSim: { quota: number; clients: number; periodUs: number } | null;
  deviceLent: boolean;
  reuseportProcs: number;
  latencyRate: number;
  workersFlag: boolean;
  /** Server connections per transaction-mode pool (per node). */
  poolSize: number;
}

async function plot(rows: Row[], workload: string, field: 'tpsMean' | 'p99' | 'cpuUsPerTxn', file: string): Promise<void> {
  const data = rows.filter((r) => r.workload === workload && r.error === null && r[field] !== null).map((r) => ({ target: r.target, clients: r.clients, value: r[field] }));
  const label = { tpsMean: 'transactions per second', p99: 'p99 latency (ms)', cpuUsPerTxn: 'pooler CPU per transaction (µs)' }[field];
  const spec: vegaLite.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: `${workload}: ${label} by clients`,
    width: 520,
    height: 300,
    data: { values: data },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'clients', type: 'quantitative', scale: { type: 'log' }, title: 'clients' },
      y: { field: 'value', type: 'quantitative', title: label },
      color: { field: 'target', type: 'nominal' },
    },
  };
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  await writeFile(file, await view.toSVG());
}

export const f1 = (n: number | null | undefined) => (n === null || n === undefined || !Number.isFinite(n) ? '—' : Math.abs(n) >= 100 ? n.toFixed(0) : n.toFixed(1));
const us = (ms: number) => (Number.isFinite(ms) ? (ms * 1000).toFixed(0) : '—');
const ratio = (a: number | null | undefined, b: number | null | undefined) => (a === null || a === undefined || b === null || b === undefined || !(b > 0) ? '—' : `${(a / b).toFixed(2)}×`);

/** The PgBouncer target in the same pool mode, for the "vs PgBouncer" column. */
function bouncerFor(target: string): string | null {
  if (!target.startsWith('pgmux')) return null;
  if (target.includes('transaction')) return 'pgbouncer-transaction';
  if (target.startsWith('pgmux-session')) return 'pgbouncer-session';
  return null;
}

export function findRow(rows: Row[], t: string, w: string, c: number): Row | undefined {
  return rows.find((r) => r.target === t && r.workload === w && r.clients === c && r.error === null);
}

/** "postgres (PostgreSQL) 15.18 (Debian …)" → "15.18"; "PgBouncer 1.18.0" → "1.18.0". */
export function shortVersion(v: string): string {
  return /(\d+\.\d+(?:\.\d+)?)/.exec(v)?.[1] ?? v;
}

export function machineDescription(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} × ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Linux ${os.release()}`;
}

function workloadTable(rows: Row[], w: string): string[] {
  const out: string[] = [];
  out.push('| target | clients | TPS (mean ± std) | pooler CPU µs/txn (± std) | pgbench CPU µs/txn | p50 ms | p95 ms | p99 ms | failed | server conns | cores per pooler process | idle cores | peak RSS MB | CPU/txn vs PgBouncer | TPS vs PgBouncer | TPS vs direct | machine busy, cores |');
  out.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows.filter((x) => x.workload === w)) {
    if (r.error !== null) {
      out.push(`| ${r.target} | ${r.clients} | ${r.error.replace(/\|/g, '/').replace(/\n/g, ' ').slice(0, 160)} | | | | | | | | | | | | | | |`);
      continue;
    }
    const b = bouncerFor(r.target);
    const bRow = b === null ? undefined : findRow(rows, b, w, r.clients);
    const cpu = r.cpuUsPerTxn === null ? '' : `${f1(r.cpuUsPerTxn)} ± ${f1(r.cpuUsPerTxnStd)}`;
    out.push(
      `| ${r.target}${r.note ? ` (${r.note})` : ''} | ${r.clients}${r.rate > 0 ? ` @ ${r.rate}/s` : ''} | ${f1(r.tpsMean)} ± ${f1(r.tpsStd)} | ${cpu} | ${f1(r.pgbenchUsPerTxn)} | ${r.p50.toFixed(3)} | ${r.p95.toFixed(3)} | ${r.p99.toFixed(3)} | ${r.failed} | ${r.serverConnections} | ${r.poolerCores} | ${r.idleCores === null ? '' : r.idleCores.toFixed(3)} | ${r.peakRssMb === null ? '' : f1(r.peakRssMb)} | ${b === null ? '' : ratio(r.cpuUsPerTxn, bRow?.cpuUsPerTxn)} | ${b === null ? '' : ratio(r.tpsMean, bRow?.tpsMean)} | ${r.target === 'direct' ? '' : ratio(r.tpsMean, findRow(rows, 'direct', w, r.clients)?.tpsMean)} | ${f1(r.machineCores)} |`,
    );
  }
  return out;
}

/** The latency workload: p50/p99 through each target minus direct's, at the same clients and rate. */
function latencySection(rows: Row[], info: RunInfo): string[] {
  const lat = rows.filter((r) => r.workload === 'latency');
  if (lat.length === 0) return [];
  const out = ['## Latency added at a load that does not saturate', ''];
  out.push(
    `pgbench -S at a fixed rate of ${info.latencyRate} transactions per second per client (\`-R\`, no \`--latency-limit\`), latencies from its per-transaction log (\`-l\`, counted from each transaction's scheduled start). Added = through the target minus direct to PostgreSQL, same clients, same rate, same run.`,
    '',
  );
  out.push('| target | clients @ rate | p50 µs | p99 µs | added p50 µs | added p99 µs | pooler CPU µs/txn |', '|---|---|---|---|---|---|---|');
  for (const r of lat) {
    if (r.error !== null) {
      out.push(`| ${r.target} | ${r.clients} | ${r.error.replace(/\|/g, '/').slice(0, 120)} | | | | |`);
      continue;
    }
    const d = findRow(rows, 'direct', 'latency', r.clients);
    const add = (k: 'p50' | 'p99') => (r.target === 'direct' || d === undefined ? '' : us(r[k] - d[k]));
    out.push(`| ${r.target} | ${r.clients} @ ${r.rate}/s | ${us(r.p50)} | ${us(r.p99)} | ${add('p50')} | ${add('p99')} | ${f1(r.cpuUsPerTxn)} |`);
  }
  out.push('');
  return out;
}

/** Cores each pooler process used, for the multi-process targets, and the no-device model. */
function scalingSection(rows: Row[], info: RunInfo): string[] {
  const out = ['## Cores, and the ceiling on a larger machine', ''];
  const multi = rows.filter((r) => r.error === null && (r.processes ?? 0) > 1 && (r.workload === 'tpcb-steady' || r.workload === 'readonly-steady'));
  if (multi.length > 0) {
    out.push(
      'Cores each process of a pooler used while pgbench ran (its CPU time over the wall time, busiest first); pgmux with workers is its supervisor and every worker, PgBouncer with so_reuseport each of its processes (runuser, which starts it as postgres, included).',
      '',
      '| target | workload | clients | TPS | cores per process | cores in all | CPU µs/txn |',
      '|---|---|---|---|---|---|---|',
    );
    for (const r of multi) out.push(`| ${r.target}${r.note ? ` (${r.note})` : ''} | ${r.workload} | ${r.clients} | ${f1(r.tpsMean)} | ${r.poolerCores} | ${f1(r.poolerCoresTotal)} | ${f1(r.cpuUsPerTxn)} |`);
    out.push('');
  }
  if (!info.workersFlag) {
    out.push('This build of pgmux has no `--workers` flag: the workers targets were skipped (their rows say so), and every pgmux target is one process.', '');
  }
  if (!info.deviceLent) {
    out.push(
      `No 16-core machine was lent to this run, so workers 1, 2, 4, 8 against PgBouncer and PgBouncer with so_reuseport × 4 were not measured there. In its place, the model: a pooler's TPS ceiling = cores × 1 / (CPU per transaction), with the CPU per transaction measured here (on ${info.cores} cores shared with pgbench and PostgreSQL, where the pooler never has a core to itself, so this is its cost, not its ceiling). A single-process pooler (PgBouncer, pgmux with workers = 1) can use one core whatever the machine: its ceiling is 1 / (CPU per transaction). With 16 cores for the pooler alone:`,
      '',
      '| target | workload | clients | CPU µs/txn | cores it can use | ceiling, TPS | ceiling with 16 cores (16 processes), TPS |',
      '|---|---|---|---|---|---|---|',
    );
    for (const r of rows.filter((x) => x.error === null && x.cpuUsPerTxn !== null && x.cpuUsPerTxn > 0 && (x.workload === 'tpcb-steady' || x.workload === 'readonly-steady') && !x.target.startsWith('bare'))) {
      const procs = r.target.includes('reuseport') ? info.reuseportProcs : Number(/-w(\d+)$/.exec(r.target)?.[1] ?? 1);
      const can = Math.min(16, procs);
      out.push(`| ${r.target} | ${r.workload} | ${r.clients} | ${f1(r.cpuUsPerTxn)} | ${can} | ${Math.round((can * 1e6) / r.cpuUsPerTxn!).toLocaleString('en-US')} | ${Math.round((16 * 1e6) / r.cpuUsPerTxn!).toLocaleString('en-US')} |`);
    }
    out.push(
      '',
      'The last column assumes the pooler runs as 16 processes (pgmux `workers = 16`, or 16 PgBouncers on so_reuseport) whose CPU per transaction stays what one process spends here, and that PostgreSQL and the clients are on other machines.',
      '',
    );
  }
  return out;
}

export async function writeReport(
  rows: Row[],
  opts: { dir: string; info: RunInfo; targets: string; hostsSim?: string; notes?: string; howTo?: string },
): Promise<void> {
  const plotsDir = path.join(opts.dir, 'bench');
  await mkdir(plotsDir, { recursive: true });
  const info = opts.info;
  const main = rows.filter((r) => !r.workload.startsWith('sim-'));
  const workloads = [...new Set(main.map((r) => r.workload))];
  const out: string[] = [];
  out.push('# Benchmarks', '');
  out.push(
    `Measured ${info.started.slice(0, 16).replace('T', ' ')} UTC on ${info.machine}; ${Object.entries(info.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}.`,
    '',
  );
  out.push(`Run: \`${info.command}\``, '');
  out.push(`How to run it and what each column means: [benchmarking.md](${opts.howTo ?? 'benchmarking.md'}).`, '');
  out.push(
    `CPU per transaction is the user + system time of all the pooler's processes (the started process and all its children, read from /proc from pgbench's first progress report, once its clients have logged in, to its end) divided by the transactions that ended in between; it is the basis of the comparisons with PgBouncer, because on ${info.cores} cores shared by pgbench, PostgreSQL and the pooler TPS moves from run to run with whoever takes the CPU. The poolers of a cell take turns (A B A B …) so drift hits them all.`,
    '',
  );
  out.push(opts.targets);
  if (opts.notes !== undefined) out.push(opts.notes, '');
  if (opts.hostsSim !== undefined) out.push(opts.hostsSim);
  out.push(...latencySection(rows, info));
  out.push(...scalingSection(rows, info));
  const plots = new Set<string>();
  for (const w of workloads) {
    if (w === 'latency') continue;
    out.push(`## ${w}`, '');
    out.push(...workloadTable(rows, w), '');
    for (const [field, label] of [['tpsMean', 'TPS'], ['cpuUsPerTxn', 'CPU per transaction'], ['p99', 'p99']] as const) {
      const file = `${w}-${field === 'tpsMean' ? 'tps' : field === 'p99' ? 'p99' : 'cpu'}.svg`;
      await plot(rows, w, field, path.join(plotsDir, file));
      plots.add(file);
      out.push(`![${w} ${label}](bench/${file})`, '');
    }
  }
  // Plots of an earlier report that this one does not draw would stay beside it, stale.
  for (const f of await readdir(plotsDir)) if (f.endsWith('.svg') && !plots.has(f)) await rm(path.join(plotsDir, f));
  const lat = rows.filter((r) => r.workload === 'latency');
  if (lat.length > 0) {
    out.push('## latency (all columns)', '', ...workloadTable(rows, 'latency'), '');
  }
  await writeFile(path.join(opts.dir, 'benchmarks.md'), out.join('\n'));
}
