/**
 * What a pooler's processes cost, read from /proc: the started process and
 * every process below it (pgmux's supervisor and its workers, runuser and
 * the PgBouncer it runs), found by parent pid.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export const HZ = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** One process's CPU (user + system, µs) and memory (kB). */
export interface ProcSample {
  pid: number;
  name: string;
  cpuUs: number;
  rssKb: number;
  hwmKb: number;
}

export function readStat(pid: number): { ppid: number; name: string; cpuUs: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = text.lastIndexOf(')');
    const comm = text.slice(text.indexOf('(') + 1, close);
    // Node names its main thread, and so its process, MainThread.
    const name = comm === 'MainThread' ? 'node' : comm;
    const f = text.slice(close + 2).split(' ');
    // f[0] is field 3 (state): ppid is field 4, utime 14, stime 15, and
    // cutime 16, cstime 17: children that exited and were waited for
    // (PostgreSQL backends of -C runs, a restarted worker) still count.
    return { ppid: Number(f[1]), name, cpuUs: ((Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 1e6) / HZ };
  } catch {
    return null;
  }
}

/** The pids of each root and all its descendants. */
export function processTree(roots: number[]): number[] {
  const children = new Map<number, number[]>();
  for (const e of readdirSync('/proc')) {
    const pid = Number(e);
    if (!Number.isInteger(pid)) continue;
    const s = readStat(pid);
    if (s === null) continue;
    const list = children.get(s.ppid) ?? [];
    list.push(pid);
    children.set(s.ppid, list);
  }
  const out: number[] = [];
  const todo = [...roots];
  while (todo.length > 0) {
    const pid = todo.pop()!;
    if (out.includes(pid)) continue;
    out.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** CPU and memory of each process in the trees of `roots`. */
export function sampleTree(roots: number[]): ProcSample[] {
  const out: ProcSample[] = [];
  for (const pid of processTree(roots)) {
    const s = readStat(pid);
    if (s === null) continue;
    let rssKb = 0;
    let hwmKb = 0;
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      rssKb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
      hwmKb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
    } catch {
      continue;
    }
    out.push({ pid, name: s.name, cpuUs: s.cpuUs, rssKb, hwmKb });
  }
  return out;
}

/** What the processes did between two samples. */
export interface TreeUsage {
  /** User + system µs of all processes together. */
  cpuUs: number;
  /** Cores each process used (its CPU time over the wall time), busiest first. */
  cores: { pid: number; name: string; cores: number }[];
  /** Peak resident memory: the sum over processes of each one's VmHWM, MB. */
  peakRssMb: number;
  processes: number;
}

export function usageBetween(before: ProcSample[], after: ProcSample[], wallUs: number): TreeUsage {
  const start = new Map(before.map((p) => [p.pid, p.cpuUs]));
  const cores = after
    .map((p) => ({ pid: p.pid, name: p.name, used: p.cpuUs - (start.get(p.pid) ?? 0) }))
    .filter((p) => p.used > 0 || after.length === 1)
    .map((p) => ({ pid: p.pid, name: p.name, cores: p.used / wallUs, used: p.used }))
    .sort((a, b) => b.cores - a.cores);
  return {
    cpuUs: cores.reduce((a, p) => a + p.used, 0),
    cores: cores.map(({ pid, name, cores: c }) => ({ pid, name, cores: c })),
    peakRssMb: after.reduce((a, p) => a + p.hwmKb, 0) / 1024,
    processes: after.length,
  };
}

/**
 * Established TCP connections the processes hold to any of `ports`
 * (a pooler's server connections), from their descriptors and /proc/net/tcp.
 */
export function connectionsTo(pids: number[], ports: number[]): number {
  const inodes = new Set<string>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m !== null) inodes.add(m[1]);
      } catch {
        // closed meanwhile
      }
    }
  }
  const wanted = new Set(ports.map((p) => p.toString(16).toUpperCase().padStart(4, '0')));
  let n = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      // f[2] remote address:port, f[3] state (01 = ESTABLISHED), f[9] inode.
      if (f[3] === '01' && wanted.has(f[2].split(':')[1]) && inodes.has(f[9])) n++;
    }
  }
  return n;
}

/** CPU time the whole machine spent busy (all processes, every core), µs, from /proc/stat. */
export function machineBusyUs(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: all but idle and iowait were busy.
  const busy = f.slice(0, 8).reduce((a, b) => a + b, 0) - f[3] - f[4];
  return (busy * 1e6) / HZ;
}
