import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';

/** One (target, workload, clients) cell, reps folded. */
export interface Row {
  target: string;
  workload: string;
  clients: number;
  reps: number;
  tpsMean: number;
  tpsStd: number;
  p50: number;
  p95: number;
  p99: number;
  failed: number;
  serverConnections: number;
  peakRssMb: number | null;
  cpuS: number | null;
  error: string | null;
}

const COLUMNS: (keyof Row)[] = ['target', 'workload', 'clients', 'reps', 'tpsMean', 'tpsStd', 'p50', 'p95', 'p99', 'failed', 'serverConnections', 'peakRssMb', 'cpuS', 'error'];

export function toCsv(rows: Row[]): string {
  const cell = (v: unknown) => {
    if (v === null || v === undefined) return '';
    const t = typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : String(v);
    return /[",\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
  };
  return [COLUMNS.join(','), ...rows.map((r) => COLUMNS.map((c) => cell(r[c])).join(','))].join('\n') + '\n';
}

async function plot(rows: Row[], workload: string, field: 'tpsMean' | 'p99', file: string): Promise<void> {
  const data = rows.filter((r) => r.workload === workload && r.error === null).map((r) => ({ target: r.target, clients: r.clients, value: r[field] }));
  const spec: vegaLite.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: `${workload}: ${field === 'tpsMean' ? 'TPS' : 'p99 latency (ms)'} by clients`,
    width: 520,
    height: 300,
    data: { values: data },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'clients', type: 'quantitative', scale: { type: 'log' }, title: 'clients' },
      y: { field: 'value', type: 'quantitative', title: field === 'tpsMean' ? 'transactions per second' : 'p99 latency (ms)' },
      color: { field: 'target', type: 'nominal' },
    },
  };
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  await writeFile(file, await view.toSVG());
}

const f1 = (n: number | null) => (n === null || !Number.isFinite(n) ? '—' : n >= 100 ? n.toFixed(0) : n.toFixed(1));
const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || !(b > 0) ? '—' : `${(a / b).toFixed(2)}×`);

export async function writeReport(rows: Row[], opts: { docsDir: string; machine: string; started: Date; settings: string; findings?: string; notes?: string }): Promise<void> {
  const plotsDir = path.join(opts.docsDir, 'bench');
  await mkdir(plotsDir, { recursive: true });
  const workloads = [...new Set(rows.map((r) => r.workload))];
  const out: string[] = [];
  out.push('# Benchmarks', '');
  out.push(`Measured ${opts.started.toISOString().slice(0, 16).replace('T', ' ')} UTC on ${opts.machine}.`, '');
  out.push(`Run: \`${opts.settings}\`. How to run it and what each column means: [benchmarking.md](benchmarking.md).`, '');
  if (opts.findings !== undefined) out.push(opts.findings);
  if (opts.notes !== undefined) out.push(opts.notes, '');
  const find = (t: string, w: string, c: number) => rows.find((r) => r.target === t && r.workload === w && r.clients === c && r.error === null);
  for (const w of workloads) {
    out.push(`## ${w}`, '');
    out.push('| target | clients | TPS (mean ± std) | p50 ms | p95 ms | p99 ms | failed | server conns | pgmux RSS MB | pgmux CPU s | vs PgBouncer | vs direct |');
    out.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const r of rows.filter((x) => x.workload === w)) {
      if (r.error !== null) {
        out.push(`| ${r.target} | ${r.clients} | failed: ${r.error.replace(/\|/g, '/').slice(0, 120)} | | | | | | | | | |`);
        continue;
      }
      const mode = r.target.includes('transaction') ? 'pgbouncer-transaction' : r.target.startsWith('pgmux-session') ? 'pgbouncer-session' : null;
      const vsBouncer = r.target.startsWith('pgmux') && mode !== null ? ratio(r.tpsMean, find(mode, w, r.clients)?.tpsMean) : '';
      const vsDirect = r.target === 'direct' ? '' : ratio(r.tpsMean, find('direct', w, r.clients)?.tpsMean);
      out.push(
        `| ${r.target} | ${r.clients} | ${f1(r.tpsMean)} ± ${f1(r.tpsStd)} | ${f1(r.p50)} | ${f1(r.p95)} | ${f1(r.p99)} | ${r.failed} | ${r.serverConnections} | ${r.target.startsWith('pgmux') ? f1(r.peakRssMb) : ''} | ${r.target.startsWith('pgmux') ? f1(r.cpuS) : ''} | ${vsBouncer} | ${vsDirect} |`,
      );
    }
    out.push('');
    await plot(rows, w, 'tpsMean', path.join(plotsDir, `${w}-tps.svg`));
    await plot(rows, w, 'p99', path.join(plotsDir, `${w}-p99.svg`));
    out.push(`![${w} TPS](bench/${w}-tps.svg)`, '', `![${w} p99](bench/${w}-p99.svg)`, '');
  }
  await writeFile(path.join(opts.docsDir, 'benchmarks.md'), out.join('\n'));
}

export function machineDescription(versions: Record<string, string>): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} × ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Linux ${os.release()}; ${Object.entries(versions)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')}`;
}
