import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './helpers/temp.ts';

const exec = promisify(execFile);

/** The one folder a run made under `results`. */
function runFolder(results: string): string {
  const dirs = readdirSync(results);
  expect(dirs).toHaveLength(1);
  return path.join(results, dirs[0]);
}

const canSimulateHosts = process.getuid?.() === 0 && existsSync('/sys/fs/cgroup/cpu/cpu.cfs_quota_us');

/** The benchmark runner end to end, as small as it goes: it measures nothing worth keeping. */
describe('benchmark runner (smoke run)', () => {
  it('runs targets in turns, measures their CPU per transaction and the latency they add, and writes CSV, report and plots to a results folder', async () => {
    const results = await tempDir('pgmux-bench-smoke-');
    const docs = await stat('docs/benchmarks.md');
    await exec(
      process.execPath,
      [
        'bench/run.ts', '--duration', '1', '--reps', '2', '--warmup', '0', '--idle', '1', '--concurrency', '2', '--scale', '1',
        '--targets', 'direct,bare-proxy,pgmux-transaction', '--workloads', 'readonly-steady,latency', '--latency-rate', '50', '--results', results,
      ],
      { maxBuffer: 16 << 20 },
    );
    const dir = runFolder(results);
    const rows = (await readFile(path.join(dir, 'rows.csv'), 'utf8')).trim().split('\n');
    expect(rows[0]).toMatch(/^target,workload,clients,rate,reps,tpsMean,tpsStd,p50,p95,p99,failed,serverConnections,cpuUsPerTxn,/);
    // readonly-steady at 2 clients, latency at 1 and 10: three targets each.
    expect(rows).toHaveLength(1 + 3 * 3);
    const head = rows[0].split(',');
    const col = (line: string, k: string) => line.split(',')[head.indexOf(k)];
    const pgmux = rows.find((l) => l.startsWith('pgmux-transaction,readonly-steady,2,'))!;
    expect(col(pgmux, 'reps')).toBe('2');
    expect(Number(col(pgmux, 'cpuUsPerTxn'))).toBeGreaterThan(0);
    expect(Number(col(pgmux, 'peakRssMb'))).toBeGreaterThan(0);
    expect(col(pgmux, 'idleCores')).toMatch(/^\d/);
    expect(Number(col(rows.find((l) => l.startsWith('bare-proxy,readonly-steady,'))!, 'cpuUsPerTxn'))).toBeGreaterThan(0);
    expect(col(rows.find((l) => l.startsWith('direct,latency,10,'))!, 'rate')).toBe('500');
    // The targets take turns, each starting a repetition in turn.
    const runs = (await readFile(path.join(dir, 'runs.csv'), 'utf8')).trim().split('\n').slice(1).filter((l) => l.startsWith('readonly-steady,'));
    expect(runs.map((l) => l.split(',').slice(2, 5).join(' '))).toEqual([
      '1 1 direct', '1 2 bare-proxy', '1 3 pgmux-transaction',
      '2 1 bare-proxy', '2 2 pgmux-transaction', '2 3 direct',
    ]);
    const report = await readFile(path.join(dir, 'benchmarks.md'), 'utf8');
    expect(report).toMatch(/PostgreSQL \d+\.\d+, PgBouncer [\d.]+|PostgreSQL \d+\.\d+, PgBouncer unavailable/);
    expect(report).toContain('Run: `npm run bench -- --duration 1 --reps 2 --warmup 0 --idle 1 --targets direct,bare-proxy,pgmux-transaction --workloads readonly-steady,latency --concurrency 2 --scale 1 --pool-size 20 --latency-rate 50 --reuseport-procs 2`');
    expect(report).toContain('## Targets');
    expect(report).toContain('## Latency added at a load that does not saturate');
    expect(report).toContain('No 16-core machine was lent to this run');
    expect(report).toMatch(/\| pgmux-transaction \(workers = 1\) \| 2 \|/);
    expect(await readFile(path.join(dir, 'bench', 'readonly-steady-cpu.svg'), 'utf8')).toMatch(/^<svg/);
    // The committed report is written only when asked (--report docs).
    expect((await stat('docs/benchmarks.md')).mtimeMs).toBe(docs.mtimeMs);

    // The report again from the results folder, somewhere else.
    const again = await tempDir('pgmux-bench-report-');
    await exec(process.execPath, ['bench/run.ts', '--from', dir, '--report', again], { maxBuffer: 16 << 20 });
    const link = (md: string) => md.replace(/\]\([^)]*benchmarking\.md\)/, '](…)');
    expect(link(await readFile(path.join(again, 'benchmarks.md'), 'utf8'))).toBe(link(report));
  }, 240_000);

  it.skipIf(!canSimulateHosts)('simulates hosts with a cpu cgroup per PostgreSQL node and removes the cgroups afterwards', async () => {
    const results = await tempDir('pgmux-bench-sim-');
    await exec(
      process.execPath,
      ['bench/run.ts', '--duration', '1', '--reps', '1', '--warmup', '0', '--scale', '1', '--workloads', 'none', '--hosts-sim', '--hosts-sim-quota', '0.5', '--hosts-sim-clients', '4', '--hosts-sim-workloads', 'sim-readonly,sim-tpcb', '--results', results],
      { maxBuffer: 16 << 20 },
    );
    expect(readdirSync('/sys/fs/cgroup/cpu').filter((d) => d.startsWith('pgmux-bench-'))).toEqual([]);
    const dir = runFolder(results);
    const report = await readFile(path.join(dir, 'benchmarks.md'), 'utf8');
    expect(report).toContain('**This is a simulation, not separate machines.**');
    expect(report).toContain('`cpu.cfs_quota_us` = 50000 per `cpu.cfs_period_us` = 100000');
    expect(report).toMatch(/\| host simulation: reads over 2 replicas ≥ 2\.5× the single node \| (met|\*\*not met\*\*): /);
    expect(report).toMatch(/\| host simulation: read-your-writes on \(lsn, the default\) costs ≤ 10 % of the gain \(-S\) \| /);
    expect(report).toMatch(/\| sim-readonly \| pgmux-transaction-replicas \| .*primary [\d.]+ \(\d+ % thr\.\), replica1 [\d.]+/);
    expect(report).toContain('--hosts-sim --hosts-sim-quota 0.5 --hosts-sim-period 100000 --hosts-sim-clients 4 --hosts-sim-workloads sim-readonly,sim-tpcb');
  }, 240_000);
});
