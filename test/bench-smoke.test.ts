import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './helpers/temp.ts';

const exec = promisify(execFile);

/** The benchmark runner end to end, as small as it goes: it measures nothing worth keeping. */
describe('benchmark runner (smoke run)', () => {
  it('runs one workload for 1 s against direct and pgmux and writes its CSV, report and plots', async () => {
    const dir = await tempDir('pgmux-bench-smoke-');
    const csv = path.join(dir, 'out.csv');
    await exec(
      process.execPath,
      ['bench/run.ts', '--duration', '1', '--reps', '1', '--concurrency', '2', '--scale', '1', '--targets', 'direct,pgmux-transaction', '--workloads', 'readonly-steady', '--report', dir, '--csv', csv],
      { maxBuffer: 16 << 20 },
    );
    const lines = (await readFile(csv, 'utf8')).trim().split('\n');
    expect(lines[0]).toMatch(/^target,workload,clients,reps,tpsMean/);
    expect(lines).toHaveLength(3);
    for (const l of lines.slice(1)) expect(l).toMatch(/,readonly-steady,2,1,\d+\.\d+,.*,$/);
    const report = await readFile(path.join(dir, 'benchmarks.md'), 'utf8');
    expect(report).toContain('| pgmux-transaction | 2 |');
    expect(await readFile(path.join(dir, 'bench', 'readonly-steady-tps.svg'), 'utf8')).toMatch(/^<svg/);
  }, 120_000);
});
