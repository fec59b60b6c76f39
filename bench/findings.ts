import { COLUMNS, f1, findRow, type Row, type RunInfo } from './report.ts';

/** CSV written by toCsv(rows, COLUMNS), back into rows. */
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
  const text_ = new Set<keyof Row>(['target', 'workload', 'poolerCores', 'nodes', 'note']);
  const nullable = new Set<keyof Row>(['cpuUsPerTxn', 'cpuUsPerTxnStd', 'pgbenchUsPerTxn', 'poolerCoresTotal', 'processes', 'peakRssMb', 'pgbenchCores', 'machineCores', 'idleCores']);
  return lines.slice(1).map((line) => {
    const v = cells(line);
    const row: Record<string, unknown> = {};
    for (const k of COLUMNS) {
      const raw = v[head.indexOf(k)] ?? '';
      if (k === 'error') row[k] = raw === '' ? null : raw;
      else if (text_.has(k)) row[k] = raw;
      else if (nullable.has(k)) row[k] = raw === '' ? null : Number(raw);
      else row[k] = raw === '' ? NaN : Number(raw);
    }
    return row as unknown as Row;
  });
}

const ok = (b: boolean) => (b ? 'met' : '**not met**');
const x2 = (n: number) => `${n.toFixed(2)}×`;

/** Node figures stored as "primary=0.300/0.97;replica1=…" (cores used / share of periods throttled). */
export function parseNodes(s: string): { name: string; cores: number; throttled: number }[] {
  return s
    .split(';')
    .filter((p) => p.includes('='))
    .map((p) => {
      const [name, v] = p.split('=');
      const [cores, throttled] = v.split('/').map(Number);
      return { name, cores, throttled };
    });
}
export const nodesText = (s: string) =>
  parseNodes(s)
    .map((n) => `${n.name} ${n.cores.toFixed(2)}${Number.isFinite(n.throttled) ? ` (${(n.throttled * 100).toFixed(0)} % thr.)` : ''}`)
    .join(', ');

/** Every target of the performance issue, met or not, with its figure: a Markdown section. */
export function targetsBlock(rows: Row[], memoryProbe?: string): string {
  const out: string[] = ['## Targets', '', 'All from this run; a target whose cells were not run says so.', '', '| target | result |', '|---|---|'];
  const cpuRatios = (mine: string, theirs: string, w: string) =>
    rows
      .filter((r) => r.target === mine && r.workload === w && r.error === null && r.cpuUsPerTxn !== null)
      .map((r) => ({ c: r.clients, a: r.cpuUsPerTxn!, b: findRow(rows, theirs, w, r.clients)?.cpuUsPerTxn ?? NaN }))
      .filter((x) => Number.isFinite(x.b) && x.b > 0);
  const cpuTarget = (label: string, mine: string, theirs: string, limit: number) => {
    for (const w of ['readonly-steady', 'tpcb-steady']) {
      const rs = cpuRatios(mine, theirs, w);
      const name = `${label} (${w === 'readonly-steady' ? '-S' : 'TPC-B'}): CPU/txn ≤ ${limit}× ${theirs}`;
      if (rs.length === 0) {
        out.push(`| ${name} | not run |`);
        continue;
      }
      const good = rs.every((x) => x.a / x.b <= limit);
      out.push(`| ${name} | ${ok(good)}: ${rs.map((x) => `C=${x.c} ${f1(x.a)} vs ${f1(x.b)} µs = ${x2(x.a / x.b)}`).join('; ')} |`);
    }
  };
  cpuTarget('session mode', 'pgmux-session', 'pgbouncer-session', 1.3);
  cpuTarget('transaction mode', 'pgmux-transaction', 'pgbouncer-transaction', 1.5);
  cpuTarget('transaction mode', 'pgmux-transaction', 'pgmux-session', 1.2);

  for (const [mine, theirs] of [['pgmux-session', 'pgbouncer-session'], ['pgmux-transaction', 'pgbouncer-transaction']]) {
    const a = findRow(rows, mine, 'latency', 1);
    const b = findRow(rows, theirs, 'latency', 1);
    const d = findRow(rows, 'direct', 'latency', 1);
    const name = `${mine}: added p50 latency at C = 1 ≤ ${theirs}'s + 20 µs`;
    if (a === undefined || b === undefined || d === undefined) {
      out.push(`| ${name} | not run |`);
      continue;
    }
    const addA = (a.p50 - d.p50) * 1000;
    const addB = (b.p50 - d.p50) * 1000;
    out.push(`| ${name} | ${ok(addA <= addB + 20)}: ${addA.toFixed(0)} µs vs ${addB.toFixed(0)} µs (p50 direct ${(d.p50 * 1000).toFixed(0)} µs, at ${a.rate}/s) |`);
  }

  const rss = rows.filter((r) => (r.target === 'pgmux-session' || r.target === 'pgmux-transaction') && r.clients === 100 && r.peakRssMb !== null && r.error === null);
  const rssPairs = rss.map((r) => ({ r, floor: findRow(rows, 'bare-proxy', r.workload, 100)?.peakRssMb ?? NaN })).filter((x) => Number.isFinite(x.floor));
  if (rssPairs.length === 0) out.push('| peak RSS at C = 100 ≤ 1.1× the bare Node.js proxy | not run (needs bare-proxy and pgmux at C = 100) |');
  else {
    const good = rssPairs.every((x) => x.r.peakRssMb! <= 1.1 * x.floor);
    out.push(`| peak RSS at C = 100 ≤ 1.1× the bare Node.js proxy | ${ok(good)}: ${rssPairs.map((x) => `${x.r.target} ${x.r.workload} ${f1(x.r.peakRssMb)} vs ${f1(x.floor)} MB = ${x2(x.r.peakRssMb! / x.floor)}`).join('; ')} |`);
  }

  const single = rows.find((r) => r.workload === 'sim-readonly' && r.target === 'pgmux-transaction' && r.error === null);
  const rep = rows.find((r) => r.workload === 'sim-readonly' && r.target === 'pgmux-transaction-replicas' && r.error === null);
  if (single === undefined || rep === undefined) out.push('| host simulation: reads over 2 replicas ≥ 2.5× the single node | not run (--hosts-sim) |');
  else out.push(`| host simulation: reads over 2 replicas ≥ 2.5× the single node | ${ok(rep.tpsMean >= 2.5 * single.tpsMean)}: ${f1(rep.tpsMean)} vs ${f1(single.tpsMean)} TPS = ${x2(rep.tpsMean / single.tpsMean)} (see the host simulation section for why) |`);
  const t1 = rows.find((r) => r.workload === 'sim-tpcb' && r.target === 'pgmux-transaction' && r.error === null);
  const t2 = rows.find((r) => r.workload === 'sim-tpcb' && r.target === 'pgmux-transaction-replicas' && r.error === null);
  if (t1 === undefined || t2 === undefined) out.push('| host simulation: TPC-B unchanged within noise | not run (--hosts-sim) |');
  else {
    const noise = Math.max(0.1, 2 * Math.hypot(t1.tpsStd / t1.tpsMean, t2.tpsStd / t2.tpsMean));
    out.push(`| host simulation: TPC-B over primary + 2 replicas unchanged within noise (±${(noise * 100).toFixed(0)} %: 10 % or twice the runs' spread) | ${ok(Math.abs(t2.tpsMean / t1.tpsMean - 1) <= noise)}: ${f1(t2.tpsMean)} vs ${f1(t1.tpsMean)} TPS = ${x2(t2.tpsMean / t1.tpsMean)} |`);
  }
  // Read-your-writes: on -S (no client writes: only the tracking of replay positions)
  // and on the mix where one transaction in ten writes (reads after a write held back).
  for (const [w, label, why] of [
    ['sim-readonly', '-S', 'no client writes, so this is the cost of tracking replay positions'],
    ['sim-mixed', 'one transaction in ten an UPDATE', 'a client that wrote reads from the primary until a replica has replayed its write'],
  ] as const) {
    const name = `host simulation: read-your-writes on (lsn, the default) costs ≤ 10 % of the gain (${label})`;
    const one = rows.find((r) => r.workload === w && r.target === 'pgmux-transaction' && r.error === null);
    const on = rows.find((r) => r.workload === w && r.target === 'pgmux-transaction-replicas' && r.error === null);
    const no = rows.find((r) => r.workload === w && r.target === 'pgmux-transaction-replicas-ryw-off' && r.error === null);
    if (one === undefined || on === undefined || no === undefined) {
      out.push(`| ${name} | not run (--hosts-sim, ${w}) |`);
      continue;
    }
    const gain = no.tpsMean - one.tpsMean;
    const cost = no.tpsMean - on.tpsMean;
    const figures = `off ${f1(no.tpsMean)}, on ${f1(on.tpsMean)}, one node ${f1(one.tpsMean)} TPS`;
    // With no gain over one node (within 10 %), a share of it says nothing.
    if (!(gain > 0.1 * one.tpsMean)) out.push(`| ${name} | **not measurable**: the replicas gave no gain to share (${figures}) |`);
    else out.push(`| ${name} | ${ok(Math.max(0, cost) / gain <= 0.1)}: ${figures}: cost ${f1(cost)} of a gain of ${f1(gain)} TPS = ${((cost / gain) * 100).toFixed(0)} % (${why}) |`);
  }
  // npm run bench:memory's last result, when there is one: not measured by this run.
  const m = /^(\S+)\n.*RSS (\d+) MB before, (\d+) MB with them/s.exec(memoryProbe ?? '');
  if (m !== null) out.push(`| 10,000 idle clients ≤ 250 MB RSS (\`npm run bench:memory\`, run ${m[1].slice(0, 16).replace('T', ' ')} UTC, not part of this run) | ${ok(Number(m[3]) <= 250)}: ${m[3]} MB (${m[2]} MB before they connected) |`);
  out.push('');
  return out.join('\n');
}

/** The host-simulation section: what it models, the figures, and why the reads target is met or not. */
export function hostsSimSection(rows: Row[], info: RunInfo): string | undefined {
  const sim = rows.filter((r) => r.workload.startsWith('sim-'));
  if (sim.length === 0 || info.hostsSim === null) return undefined;
  const q = info.hostsSim.quota;
  const period = info.hostsSim.periodUs;
  const out: string[] = ['## Read scale-out, by host simulation', ''];
  out.push(
    `**This is a simulation, not separate machines.** Each PostgreSQL node — the primary and its two streaming replicas — ran with its postmaster and every child process in a cgroup v1 \`cpu\` cgroup of its own, capped at ${(q * 100).toFixed(0)} % of one core (\`cpu.cfs_quota_us\` = ${Math.round(q * 100000)} per \`cpu.cfs_period_us\` = 100000; new backends fork from the postmaster and inherit it). pgbench and pgmux ran outside those cgroups and shared the rest of this machine's ${info.cores} cores. It models one thing: that each node has CPU of its own, so a replica adds capacity instead of taking it from the primary. It does not model a network between hosts (everything is on loopback), separate memory, page cache or disks (the nodes share them), or replication over a network. Transaction mode, ${info.hostsSim.clients} clients, pool size ${info.poolSize} per node, reads balanced per statement (\`load_balance = statement\`); "one node" is pgmux with an endpoint of the primary alone.`,
    '',
  );
  out.push('| workload | target | TPS (mean ± std) | vs one node | pgmux CPU µs/txn | pgmux cores (idle) | pgbench cores | pgbench CPU µs/txn | nodes: cores used (share of periods throttled) | server conns | p50 ms | p99 ms | machine busy, cores |');
  out.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of sim) {
    if (r.error !== null) {
      out.push(`| ${r.workload} | ${r.target} | ${r.error.replace(/\|/g, '/').slice(0, 140)} | | | | | | | | | |`);
      continue;
    }
    const base = rows.find((x) => x.workload === r.workload && x.target === 'pgmux-transaction' && x.error === null);
    out.push(
      `| ${r.workload} | ${r.target} | ${f1(r.tpsMean)} ± ${f1(r.tpsStd)} | ${base === undefined || base === r ? '' : x2(r.tpsMean / base.tpsMean)} | ${f1(r.cpuUsPerTxn)} | ${f1(r.poolerCoresTotal)} (${r.idleCores === null ? '—' : r.idleCores.toFixed(3)}) | ${f1(r.pgbenchCores)} | ${f1(r.pgbenchUsPerTxn)} | ${nodesText(r.nodes)} | ${r.serverConnections} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${f1(r.machineCores)} |`,
    );
  }
  out.push('');
  const single = rows.find((r) => r.workload === 'sim-readonly' && r.target === 'pgmux-transaction' && r.error === null);
  const rep = rows.find((r) => r.workload === 'sim-readonly' && r.target === 'pgmux-transaction-replicas' && r.error === null);
  if (single !== undefined && rep !== undefined) {
    const ratio = rep.tpsMean / single.tpsMean;
    const nodes = parseNodes(rep.nodes);
    const used = nodes.reduce((a, n) => a + n.cores, 0);
    const cap = nodes.length * q;
    const pgmuxCores = rep.poolerCoresTotal ?? NaN;
    const benchCores = rep.pgbenchCores ?? NaN;
    const total = used + pgmuxCores + benchCores;
    const one = parseNodes(single.nodes)[0];
    out.push(`### Why reads over 2 replicas gave ${x2(ratio)}${ratio >= 2.5 ? '' : ', not 2.5×'}`, '');
    if (one !== undefined) out.push(`- One node: ${f1(single.tpsMean)} TPS with the primary using ${one.cores.toFixed(2)} of its ${q} core${Number.isFinite(one.throttled) ? `, throttled in ${(one.throttled * 100).toFixed(0)} % of periods` : ''}: the node's CPU is the limit there, as the simulation intends.`);
    out.push(`- Primary + 2 replicas: ${f1(rep.tpsMean)} TPS; the nodes used ${used.toFixed(2)} of their ${cap.toFixed(1)} cores (${nodesText(rep.nodes)}).`);
    const busy = rep.machineCores ?? NaN;
    out.push(
      `- The machine: nodes ${used.toFixed(2)} + pgmux ${pgmuxCores.toFixed(2)} + pgbench ${benchCores.toFixed(2)} = ${total.toFixed(2)} of ${info.cores} cores${Number.isFinite(busy) ? `; all its processes together kept ${busy.toFixed(2)} cores busy, so ${Math.max(0, busy - total).toFixed(2)} went to other work (the kernel's network stack on behalf of all, WAL replay, anything else running)` : ''}.`,
    );
    const need = 2.5 * single.tpsMean;
    const needPgmux = (need * (rep.cpuUsPerTxn ?? NaN)) / 1e6;
    const needBench = (need * (rep.pgbenchUsPerTxn ?? NaN)) / 1e6;
    const needNodes = Math.min(cap, (2.5 * (one?.cores ?? q)));
    out.push(
      `- 2.5× the one node is ${f1(need)} TPS. At this run's costs that needs pgmux ${needPgmux.toFixed(2)} cores (${f1(rep.cpuUsPerTxn)} µs/txn), pgbench ${needBench.toFixed(2)} cores (${f1(rep.pgbenchUsPerTxn)} µs/txn) and the nodes ${needNodes.toFixed(2)} cores: ${(needPgmux + needBench + needNodes).toFixed(2)} cores of the ${info.cores} this machine has${needPgmux + needBench + needNodes > info.cores ? ' — more than it has, so pgbench and pgmux, which on real hosts would not share the nodes\' machine, hold the figure down' : ''}.`,
    );
    if (needPgmux > 0.9) out.push(`- pgmux (one process here) would need ${needPgmux.toFixed(2)} cores: one process cannot pass ${f1(1e6 / (rep.cpuUsPerTxn ?? NaN))} TPS at ${f1(rep.cpuUsPerTxn)} µs/txn; workers (one process per core) lift that.`);
    // What pgmux spends with nobody connected (health checks; over replicas also the
    // replay positions read every replication_check_period) is no routing cost.
    const perTxn = (r: Row) => (r.cpuUsPerTxn ?? NaN) - ((r.idleCores ?? 0) * 1e6) / r.tpsMean;
    const idleRep = ((rep.idleCores ?? 0) * 1e6) / rep.tpsMean;
    const idleOne = ((single.idleCores ?? 0) * 1e6) / single.tpsMean;
    if (rep.idleCores !== null && single.idleCores !== null) {
      out.push(
        `- Of pgmux's CPU per transaction, what it spends with nobody connected (health checks, and over replicas the replay positions read every 0.1 s) is ${f1(idleRep)} µs over the replicas (${rep.idleCores.toFixed(3)} cores idle) and ${f1(idleOne)} µs on one node (${single.idleCores.toFixed(3)} cores): a cost per second, not per transaction.`,
      );
    }
    const dRoute = perTxn(rep) - perTxn(single);
    if (Number.isFinite(dRoute)) {
      out.push(
        `- Routing cost: ${rep.idleCores !== null && single.idleCores !== null ? 'without that idle part ' : ''}pgmux spends ${f1(perTxn(rep))} µs per transaction over the replicas against ${f1(perTxn(single))} µs on one node (${dRoute >= 0 ? '+' : ''}${f1(dRoute)} µs, ${((dRoute / perTxn(single)) * 100).toFixed(0)} %)${dRoute / perTxn(single) > 0.2 ? ': that difference is what choosing a node per statement costs (classifying the statement as a read, the node choice, and the replay-position checks); it is the part of pgmux to make cheaper first' : ', which is not where the shortfall comes from'}.`,
      );
    }
    if (used < 0.85 * cap) out.push(`- The nodes left ${(cap - used).toFixed(2)} cores of their quota unused: they were not the limit.`);
    // Reads queued on a throttled node while another had CPU to spare: the spread, not the nodes, held TPS down.
    const hot = nodes.filter((n) => n.throttled >= 0.3);
    const cold = nodes.filter((n) => n.cores < 0.6 * q);
    if (hot.length > 0 && cold.length > 0) {
      out.push(
        `- Uneven: ${hot.map((n) => `${n.name} was throttled in ${(n.throttled * 100).toFixed(0)} % of periods`).join(', ')} while ${cold.map((n) => `${n.name} used ${n.cores.toFixed(2)} of its ${q}`).join(', ')}. pgmux picks a read's node by weight, blind to how many statements a node already has in flight, so in a closed loop the clients gather on the node that is stalled. To change in pgmux: send the next read to the usable node with the fewest statements in flight (least outstanding), weights breaking ties.`,
      );
    }
    out.push(`- The pool is not the limit: ${info.hostsSim.clients} clients, ${info.poolSize} server connections per node; at most ${rep.serverConnections} server connections were open. pgbench -S never writes, so no read waited for a replica to replay a write.`);
    const mixOn = rows.find((r) => r.workload === 'sim-mixed' && r.target === 'pgmux-transaction-replicas' && r.error === null);
    const mixOff = rows.find((r) => r.workload === 'sim-mixed' && r.target === 'pgmux-transaction-replicas-ryw-off' && r.error === null);
    if (mixOn !== undefined && mixOff !== undefined) {
      out.push(`- With writes (sim-mixed, one transaction in ten an UPDATE): read-your-writes on ${f1(mixOn.tpsMean)} TPS, off ${f1(mixOff.tpsMean)} TPS (${x2(mixOn.tpsMean / mixOff.tpsMean)}): after its write a client reads from the primary until a replica has replayed it.`);
    }
    out.push('');
  }
  return out.join('\n');
}
