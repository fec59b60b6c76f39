/**
 * Host simulation: each PostgreSQL node's processes (the postmaster and
 * every child; new backends fork from the postmaster and inherit it) in a
 * cgroup v1 `cpu` cgroup of its own, capped at a fraction of a core with
 * cpu.cfs_quota_us / cpu.cfs_period_us, as if each node had a small
 * machine to itself. pgbench and the poolers stay where they were and share
 * what is left. Undone by moving every process back and removing the cgroups.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { processTree } from './procs.ts';

const CPU_ROOT = '/sys/fs/cgroup/cpu';

export interface SimNode {
  name: string;
  postmaster: number;
}

export interface HostsSim {
  /** Per node: its cgroup, for cpu.stat. */
  groups: { name: string; dir: string; home: string }[];
  quota: number;
  periodUs: number;
}

/** Why the simulation cannot run here, or null. */
export function hostsSimUnavailable(): string | null {
  if (!existsSync(path.join(CPU_ROOT, 'cpu.cfs_quota_us'))) return `no cgroup v1 cpu controller at ${CPU_ROOT}`;
  if (process.getuid?.() !== 0) return 'moving processes between cgroups needs root';
  return null;
}

/** The cpu cgroup a process is in, as a directory under CPU_ROOT. */
function cpuCgroupOf(pid: number): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .find((l) => l.split(':')[1]?.split(',').includes('cpu'));
  return path.join(CPU_ROOT, line?.split(':')[2] ?? '/');
}

function moveTree(postmaster: number, dir: string): void {
  for (const pid of processTree([postmaster])) {
    try {
      writeFileSync(path.join(dir, 'cgroup.procs'), String(pid));
    } catch (err) {
      // A backend that exited meanwhile; anything else is a real failure.
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
}

export async function startHostsSim(nodes: SimNode[], quota: number, periodUs = 100_000): Promise<HostsSim> {
  const sim: HostsSim = { groups: [], quota, periodUs };
  try {
    for (const n of nodes) {
      const home = cpuCgroupOf(n.postmaster);
      const dir = path.join(CPU_ROOT, `pgmux-bench-${process.pid}-${n.name}`);
      mkdirSync(dir);
      sim.groups.push({ name: n.name, dir, home });
      writeFileSync(path.join(dir, 'cpu.cfs_period_us'), String(periodUs));
      writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), String(Math.max(1000, Math.round(quota * periodUs))));
      moveTree(n.postmaster, dir);
    }
  } catch (err) {
    const left = await stopHostsSim(sim);
    if (left.length > 0) (err as Error).message += ` (and could not remove ${left.join(', ')})`;
    throw err;
  }
  return sim;
}

/** nr_periods, nr_throttled and throttled_time (ns) of a node's cgroup. */
export function cpuStat(dir: string): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const line of readFileSync(path.join(dir, 'cpu.stat'), 'utf8').split('\n')) {
      const [k, v] = line.split(' ');
      if (k) out[k] = Number(v);
    }
  } catch {
    // gone
  }
  return out;
}

/**
 * Moves every process back to where it was and removes the cgroups. A
 * backend that exited but is not yet reaped by its postmaster keeps its
 * cgroup busy, so this tries again for a while.
 */
export async function stopHostsSim(sim: HostsSim, timeoutMs = 10_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  const left: string[] = [];
  for (const g of sim.groups.splice(0)) {
    for (;;) {
      let pids: string[] = [];
      try {
        pids = readFileSync(path.join(g.dir, 'cgroup.procs'), 'utf8').split('\n').filter((p) => p !== '');
      } catch {
        break;
      }
      for (const pid of pids) {
        try {
          writeFileSync(path.join(g.home, 'cgroup.procs'), pid);
        } catch {
          // exited meanwhile
        }
      }
      try {
        rmdirSync(g.dir);
        break;
      } catch {
        if (Date.now() > deadline) {
          left.push(g.dir);
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  return left;
}

/** Removes cgroups that stopHostsSim could not (once their last processes are gone). */
export function removeLeftovers(dirs: string[]): string[] {
  return dirs.filter((d) => {
    try {
      rmdirSync(d);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code !== 'ENOENT';
    }
  });
}
