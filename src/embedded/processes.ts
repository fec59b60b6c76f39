/**
 * Processes the embedded cluster started, looked at and ended by process
 * id (or process group id), never by name: other PostgreSQL servers on the
 * machine are not ours to touch.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** State and process group from /proc/PID/stat; undefined where /proc has no such process (or no /proc). */
function procStat(pid: number): { state: string; pgrp: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may hold anything, ")" included.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0], pgrp: Number(fields[2]) };
  } catch {
    return undefined;
  }
}

const hasProc = (() => {
  try {
    readdirSync('/proc/self');
    return true;
  } catch {
    return false;
  }
})();

/**
 * Whether a process still runs. A zombie (ended, not yet reaped by its
 * parent) does not count: it holds no files and no ports.
 */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return procStat(pid)?.state !== 'Z';
}

/** Whether any process of a process group still runs (zombies aside). */
export function groupAlive(pgid: number): boolean {
  if (!hasProc) {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  }
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const s = procStat(Number(entry));
    if (s !== undefined && s.pgrp === pgid && s.state !== 'Z') return true;
  }
  return false;
}

/** Sends a signal to a process or (negative id) a process group; false when there is none. */
export function signal(target: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(target, sig);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether `pid` is a postgres server for `dataDir`: a pid from a stale
 * postmaster.pid may since belong to anything. Where /proc cannot say, it
 * is taken to be.
 */
export function isPostmasterOf(pid: number, dataDir: string): boolean {
  if (!hasProc) return alive(pid);
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    if (cmdline.includes(dataDir)) return true;
    // Started without -D (PGDATA): its working directory is the data directory.
    return readlinkSync(`/proc/${pid}/cwd`) === dataDir;
  } catch {
    return false;
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Polls `done` until it holds or `timeoutMs` passes, blocking the thread: for exit handlers only. */
export function waitSync(done: () => boolean, timeoutMs: number): boolean {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) return false;
    Atomics.wait(sleeper, 0, 0, 20);
  }
  return true;
}

/** Polls `done` until it holds or `timeoutMs` passes. */
export async function waitFor(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}
