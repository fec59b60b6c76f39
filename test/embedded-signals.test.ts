import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { freePort, LocalCluster } from '../src/embedded/cluster.ts';
import { CliProcess } from './helpers/cli.ts';
import { tempDir } from './helpers/temp.ts';

/**
 * Processes that belong to a directory: their command line names a path
 * under it (a postmaster's -D, initdb's and pg_basebackup's -D) or their
 * working directory is under it (every postgres process works in its data
 * directory).
 */
function processesUnder(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      let cwd = '';
      try {
        cwd = readlinkSync(`/proc/${entry}/cwd`);
      } catch {
        // A process that has just exited.
      }
      if (cmdline.includes(dir) || cwd.startsWith(dir)) found.push(`${entry}: ${cmdline}`);
    } catch {
      // Gone while looking.
    }
  }
  return found;
}

/** A private TMPDIR for one pgmux, so what it leaves behind is all that is in it. */
async function privateTmp(): Promise<string> {
  // postgres (as which the servers run when the tests run as root) must reach the cluster below it.
  return tempDir('pgmux-sigtest-', 0o755);
}

describe('Ctrl-C while the embedded cluster is being built', () => {
  // The lines pgmux --embedded prints as it goes, each a moment to be interrupted at.
  const moments: [string, string | RegExp][] = [
    ['during initdb', '[embedded] initdb '],
    ['while the primary starts', '[embedded] starting primary'],
    ['during pg_basebackup', '[embedded] pg_basebackup '],
    ['while the replica starts', '[embedded] starting replica'],
    ['while the demo role is created', '[embedded] cluster ready'],
  ];

  it.each(moments)('%s: SIGINT to the process group stops every server it started and removes its files', async (_moment, line) => {
    const tmp = await privateTmp();
    const pgmux = new CliProcess(['--embedded', '--listen', `127.0.0.1:${await freePort()}`], { TMPDIR: tmp }, { detached: true });
    try {
      await pgmux.waitFor(line);
      // As a terminal's Ctrl-C does: to pgmux and everything in its process group.
      pgmux.signal('SIGINT', true);
      const { code } = await pgmux.exited;
      expect(code, pgmux.output).toBe(130);
      expect(pgmux.output).toContain('pgmux: SIGINT while starting; stopping what was started');
      expect(processesUnder(tmp)).toEqual([]);
      expect(readdirSync(tmp)).toEqual([]);
    } finally {
      await pgmux.kill();
    }
  });

  it('SIGTERM to pgmux alone during pg_basebackup does the same', async () => {
    const tmp = await privateTmp();
    const pgmux = new CliProcess(['--embedded', '--listen', `127.0.0.1:${await freePort()}`], { TMPDIR: tmp });
    try {
      await pgmux.waitFor('[embedded] pg_basebackup ');
      pgmux.signal('SIGTERM');
      expect((await pgmux.exited).code, pgmux.output).toBe(143);
      expect(processesUnder(tmp)).toEqual([]);
      expect(readdirSync(tmp)).toEqual([]);
    } finally {
      await pgmux.kill();
    }
  });

  it('Ctrl-C once it serves stops it cleanly (exit 0), servers and files gone', async () => {
    const tmp = await privateTmp();
    const pgmux = new CliProcess(['--embedded', '--listen', `127.0.0.1:${await freePort()}`], { TMPDIR: tmp }, { detached: true });
    try {
      await pgmux.waitFor('Ctrl-C stops pgmux');
      expect(processesUnder(tmp)).not.toEqual([]);
      pgmux.signal('SIGINT', true);
      expect((await pgmux.exited).code, pgmux.output).toBe(0);
      expect(processesUnder(tmp)).toEqual([]);
      expect(readdirSync(tmp)).toEqual([]);
    } finally {
      await pgmux.kill();
    }
  });
});

describe('LocalCluster.start with an AbortSignal', () => {
  it('aborted at any of many moments, rejects with the reason and leaves no server and no file', async () => {
    const tmp = await privateTmp();
    const old = process.env.TMPDIR;
    // os.tmpdir() reads it at each call: the clusters below go there.
    process.env.TMPDIR = tmp;
    try {
      // Spread over a start of a second or two: before initdb, during it,
      // while the primary starts, during the base backup, and so on.
      for (const delayMs of [0, 30, 150, 400, 700, 1000, 1400]) {
        const controller = new AbortController();
        const reason = new Error(`aborted after ${delayMs} ms`);
        const timer = setTimeout(() => controller.abort(reason), delayMs);
        const got = await LocalCluster.start({ replicas: 1, signal: controller.signal }).then(
          (c) => c,
          (err: unknown) => err,
        );
        clearTimeout(timer);
        // Started before the abort came: an ordinary stop then.
        if (got instanceof LocalCluster) await got.stop();
        else expect(got).toBe(reason);
        expect(processesUnder(tmp), `${delayMs} ms`).toEqual([]);
        expect(readdirSync(tmp), `${delayMs} ms`).toEqual([]);
      }
    } finally {
      process.env.TMPDIR = old;
    }
  });
});
