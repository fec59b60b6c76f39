/**
 * pid_file: the process id of the running pgmux, for init scripts and
 * `kill -HUP $(cat …)`, as PgBouncer's pidfile. Written when pgmux starts,
 * removed when it stops. A file naming a process that is still running
 * means another pgmux (or PgBouncer) uses the same file, and this one
 * refuses to start rather than overwrite it.
 */
import { readFileSync, rmSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { ConfigError } from '../config/errors.ts';

/** Whether a process with this id exists (EPERM: it does, owned by someone else). */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class PidFileInUse extends Error {}

export class PidFile {
  readonly path: string;
  private removed = false;

  private constructor(path: string) {
    this.path = path;
  }

  /** Checks the file is free (absent, or naming a process that has gone) and writes this process's id. */
  static async claim(path: string): Promise<PidFile> {
    const old = await readFile(path, 'utf8').catch(() => '');
    const pid = Number.parseInt(old.trim(), 10);
    if (pid > 0 && pid !== process.pid && running(pid)) {
      throw new PidFileInUse(`pid_file "${path}" names process ${pid}, which is running: is another pgmux using this file?`);
    }
    try {
      await writeFile(path, `${process.pid}\n`);
    } catch (err) {
      throw new ConfigError(`pid_file "${path}": ${(err as Error).message}`);
    }
    return new PidFile(path);
  }

  /** Removes the file if it still names this process. Safe to call more than once, and at exit. */
  remove(): void {
    if (this.removed) return;
    this.removed = true;
    try {
      if (readFileSync(this.path, 'utf8').trim() === String(process.pid)) rmSync(this.path, { force: true });
    } catch {
      // Already gone.
    }
  }
}
