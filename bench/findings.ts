import { readFile } from 'node:fs/promises';
import type { Row } from './report.ts';

/** CSV written by toCsv, back into rows. */
export function fromCsv(text: string): Row[] {
  const lines = text.trim().split('\n');
  const head = lines[0].split(',');
  const cells = (line: string): string[] => {
    const out: string[] = [];
    let cur = '';
    let quoted = false;
    for (let i = 0; i < line.length; i++) {
      const ch = line[i];
      if (quoted) {
        if (ch === '"' && line[i + 1] === '"') (cur += '"'), i++;
        else if (ch === '"') quoted = false;
        else cur += ch;
      } else if (ch === '"') quoted = true;
      else if (ch === ',') (out.push(cur), (cur = ''));
      else cur += ch;
    }
    out.push(cur);
    return out;
  };
  return lines.slice(1).map((line) => {
    const v = cells(line);
    const get = (k: string) => v[head.indexOf(k)] ?? '';
    const num = (k: string) => (get(k) === '' ? NaN : Number(get(k)));
    const opt = (k: string) => (get(k) === '' ? null : Number(get(k)));
    return {
      target: get('target'),
      workload: get('workload'),
      clients: num('clients'),
      reps: num('reps'),
      tpsMean: num('tpsMean'),
      tpsStd: num('tpsStd'),
      p50: num('p50'),
      p95: num('p95'),
      p99: num('p99'),
      failed: num('failed'),
      serverConnections: num('serverConnections'),
      peakRssMb: opt('peakRssMb'),
      cpuS: opt('cpuS'),
      error: get('error') === '' ? null : get('error'),
    };
  });
}

/** The targets pgmux is held to, each checked against a run: a Markdown section. */
export async function findings(rows: Row[], memoryFile: string): Promise<string> {
  const ok = (b: boolean) => (b ? 'met' : '**not met**');
  const find = (t: string, w: string, c: number) => rows.find((r) => r.target === t && r.workload === w && r.clients === c && r.error === null);
  const out: string[] = ['## Targets', '', '| target | result |', '|---|---|'];
  const pairs: [string, string][] = [['pgmux-session', 'pgbouncer-session'], ['pgmux-transaction', 'pgbouncer-transaction']];
  for (const w of [...new Set(rows.map((r) => r.workload))]) {
    for (const [mine, theirs] of pairs) {
      const cells = rows.filter((r) => r.target === mine && r.workload === w && r.error === null);
      const ratios = cells.map((r) => ({ c: r.clients, ratio: r.tpsMean / (find(theirs, w, r.clients)?.tpsMean ?? NaN) })).filter((x) => Number.isFinite(x.ratio));
      if (ratios.length === 0) continue;
      const good = ratios.every((x) => (x.c >= 10 ? x.ratio >= 1 : x.ratio >= 0.9));
      out.push(`| ${w}: ${mine} TPS ≥ ${theirs} at C ≥ 10, ≥ 0.9× at C = 1 | ${ok(good)}: ${ratios.map((x) => `C=${x.c} ${x.ratio.toFixed(2)}×`).join(', ')} |`);
    }
  }
  const s = rows.filter((r) => r.target === 'pgmux-session' && r.workload === 'readonly-short' && r.error === null);
  const shortRatios = s.map((r) => ({ c: r.clients, ratio: r.tpsMean / (find('pgmux-none', 'readonly-short', r.clients)?.tpsMean ?? NaN) })).filter((x) => Number.isFinite(x.ratio));
  if (shortRatios.length > 0) {
    const best = Math.max(...shortRatios.map((x) => x.ratio));
    out.push(`| readonly-short: pgmux-session ≥ 2.4× pgmux-none | ${ok(best >= 2.4)}: best ${best.toFixed(2)}× (${shortRatios.map((x) => `C=${x.c} ${x.ratio.toFixed(2)}×`).join(', ')}) |`);
  }
  const think = rows.filter((r) => r.target === 'pgmux-transaction' && r.workload === 'think-time' && r.error === null).sort((a, b) => a.clients - b.clients);
  if (think.length > 1) {
    const base = think[0].p99;
    const served = think.filter((r) => r.p99 < 2 * base && r.failed === 0).map((r) => r.clients);
    const most = Math.max(...served);
    out.push(`| think-time: pgmux-transaction serves ≥ 5× its pool (20) with p99 < 2× the no-contention p99 (${base.toFixed(1)} ms at C=${think[0].clients}) | ${ok(most >= 100)}: up to ${most} clients (${think.map((r) => `C=${r.clients} p99 ${r.p99.toFixed(1)} ms`).join(', ')}) |`);
  }
  const rep = rows.filter((r) => r.target === 'pgmux-transaction-replicas' && r.workload === 'readonly-steady' && r.error === null);
  if (rep.length > 0) {
    const cmp = rep.map((r) => ({ c: r.clients, ratio: r.tpsMean / (find('pgmux-transaction', 'readonly-steady', r.clients)?.tpsMean ?? NaN) })).filter((x) => Number.isFinite(x.ratio));
    out.push(`| reads over 2 replicas: higher TPS than the single node (readonly-steady) | ${ok(cmp.filter((x) => x.c >= 10).every((x) => x.ratio > 1))}: ${cmp.map((x) => `C=${x.c} ${x.ratio.toFixed(2)}×`).join(', ')} |`);
  }
  const rss = rows.filter((r) => r.target.startsWith('pgmux') && r.clients === 100 && r.peakRssMb !== null);
  if (rss.length > 0) {
    const peak = Math.max(...rss.map((r) => r.peakRssMb!));
    out.push(`| peak RSS ≤ 60 MB at C = 100 | ${ok(peak <= 60)}: up to ${peak.toFixed(0)} MB |`);
  }
  const mem = await readFile(memoryFile, 'utf8').catch(() => '');
  const m = /RSS (\d+) MB before, (\d+) MB with them/.exec(mem);
  if (m !== null) out.push(`| 10,000 idle clients ≤ 250 MB RSS | ${ok(Number(m[2]) <= 250)}: ${m[2]} MB (${m[1]} MB before they connected) |`);
  out.push('');
  return out.join('\n');
}
