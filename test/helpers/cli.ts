import { spawn, type ChildProcess } from 'node:child_process';

/** The pgmux command line as the tests run it: the sources, with the flags bin/pgmux.js gives node. */
export const CLI = ['--liftoff-only', '--max-semi-space-size=4', 'src/cli.ts'];

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs pgmux to its end; for the runs that are expected to stop on their own. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/**
 * A pgmux left running: its output so far, and a wait for a line of it.
 * `detached` makes it a process group leader, so a test can signal the
 * group as a terminal's Ctrl-C does.
 */
export class CliProcess {
  readonly child: ChildProcess;
  output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly lineListeners: ((line: string) => void)[] = [];

  constructor(args: string[], env: NodeJS.ProcessEnv = {}, opts: { detached?: boolean } = {}) {
    this.child = spawn(process.execPath, [...CLI, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: opts.detached ?? false,
    });
    // Each stream is cut into whole lines of its own: a log line written at once is never split by the other stream.
    const partial = { stdout: '', stderr: '' };
    const take = (stream: 'stdout' | 'stderr', text: string) => {
      this.output += text;
      const parts = (partial[stream] + text).split('\n');
      partial[stream] = parts.pop()!;
      for (const line of parts) this.emitLine(line);
    };
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => take('stdout', d));
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => take('stderr', d));
    this.exited = new Promise((resolve) =>
      this.child.once('close', (code, signal) => {
        // A last line without its newline still counts.
        for (const stream of ['stdout', 'stderr'] as const) if (partial[stream] !== '') this.emitLine(partial[stream]);
        partial.stdout = partial.stderr = '';
        resolve({ code, signal });
      }),
    );
  }

  /** Calls `fn` with each whole line of output from now on, as it comes. */
  onLine(fn: (line: string) => void): void {
    this.lineListeners.push(fn);
  }

  private emitLine(line: string): void {
    for (const fn of this.lineListeners) fn(line);
  }

  /** Resolves once the output contains `text`; rejects if pgmux exits first or after timeoutMs. */
  async waitFor(text: string | RegExp, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const seen = () => (typeof text === 'string' ? this.output.includes(text) : text.test(this.output));
    while (!seen()) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`pgmux exited before printing ${String(text)}:\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`pgmux did not print ${String(text)} in ${timeoutMs} ms:\n${this.output}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Signals pgmux alone, or its whole process group (as Ctrl-C in a terminal does) when started detached. */
  signal(sig: NodeJS.Signals, group = false): void {
    if (group) process.kill(-this.child.pid!, sig);
    else this.child.kill(sig);
  }

  /**
   * For a test that failed half way: asks pgmux to stop (so it stops the
   * servers it started), and kills it if it has not within 15 s.
   */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const ended = await Promise.race([this.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 15_000))]);
    if (!ended) this.child.kill('SIGKILL');
  }
}
