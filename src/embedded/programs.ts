/**
 * Runs PostgreSQL 15's programs for the embedded cluster: as the `postgres`
 * OS user when pgmux runs as root (initdb and postgres refuse root), each
 * in a process group of its own. A terminal's Ctrl-C then reaches pgmux
 * alone, and pgmux decides what to stop, by process id.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { groupAlive, signal, waitFor, waitSync } from './processes.ts';

export const PG_BIN = '/usr/lib/postgresql/15/bin';

const asRoot = process.getuid?.() === 0;
let ids: { uid: number; gid: number } | undefined;

/** The `postgres` OS user's ids when running as root; undefined otherwise. */
export function postgresIds(): { uid: number; gid: number } | undefined {
  if (!asRoot) return undefined;
  ids ??= {
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
  };
  return ids;
}

/** How long a program asked to stop gets before it is killed. */
const GRACE_MS = 5_000;

export interface RunOptions {
  /** The caller's directory may be unreadable for `postgres`. */
  cwd: string;
  env?: NodeJS.ProcessEnv;
  /** A log file whose tail goes into the error when the program fails. */
  logFile?: string;
}

export class Programs {
  /** Process groups of programs run to their end that are still running. */
  private readonly groups = new Set<number>();

  private spawn(bin: string, args: string[], cwd: string, env: NodeJS.ProcessEnv | undefined, stdio: 'pipe' | number): ChildProcess {
    return spawn(path.join(PG_BIN, bin), args, {
      cwd,
      env: { ...process.env, ...env },
      // A group of its own (its leader's id is the child's pid).
      detached: true,
      stdio: ['ignore', stdio, stdio],
      ...postgresIds(),
    });
  }

  /** Runs a program to its end: its standard output, or an error with its standard error and the log's tail. */
  run(bin: string, args: string[], opts: RunOptions): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = this.spawn(bin, args, opts.cwd, opts.env, 'pipe');
      const pgid = child.pid;
      if (pgid !== undefined) this.groups.add(pgid);
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('error', (err) => {
        if (pgid !== undefined) this.groups.delete(pgid);
        reject(err);
      });
      child.once('close', (code, sig) => {
        // Whatever it forked (pg_basebackup's WAL streamer) may outlive it briefly.
        if (pgid !== undefined && !groupAlive(pgid)) this.groups.delete(pgid);
        if (code === 0) return resolve(stdout);
        void failure(bin, args, code, sig, stderr, opts.logFile).then(reject);
      });
    });
  }

  /** Starts a program that keeps running (a postmaster), its output appended to `logFile`. */
  start(bin: string, args: string[], opts: { cwd: string; logFile: string }): ChildProcess {
    // Opened here, so the file need not be writable by `postgres`.
    const fd = openSync(opts.logFile, 'a');
    try {
      const child = this.spawn(bin, args, opts.cwd, undefined, fd);
      // Nothing of pgmux waits on it: stopping goes by its pid.
      child.unref();
      return child;
    } finally {
      closeSync(fd);
    }
  }

  /** Stops every program run() started that still runs, and waits until they are gone. */
  async stopAll(): Promise<void> {
    const groups = [...this.groups];
    for (const g of groups) signal(-g, 'SIGTERM');
    for (const g of groups) {
      if (!(await waitFor(() => !groupAlive(g), GRACE_MS))) {
        signal(-g, 'SIGKILL');
        await waitFor(() => !groupAlive(g), GRACE_MS);
      }
      this.groups.delete(g);
    }
  }

  /** stopAll for exit handlers, where nothing asynchronous runs. */
  stopAllNow(): void {
    for (const g of this.groups) {
      signal(-g, 'SIGKILL');
      waitSync(() => !groupAlive(g), GRACE_MS);
    }
    this.groups.clear();
  }
}

async function failure(bin: string, args: string[], code: number | null, sig: NodeJS.Signals | null, stderr: string, logFile?: string): Promise<Error> {
  let detail = stderr.trim() || (sig !== null ? `ended by ${sig}` : `exit status ${code}`);
  if (logFile !== undefined) {
    const log = await readFile(logFile, 'utf8').catch(() => '');
    detail += `\n--- ${logFile} (tail) ---\n${log.split('\n').slice(-20).join('\n')}`;
  }
  return new Error(`${bin} ${args.join(' ')} failed: ${detail}`);
}
