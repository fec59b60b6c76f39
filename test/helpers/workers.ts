/**
 * pgmux with worker processes (workers > 1), started by its command line
 * in front of the test cluster's primary: the supervisor and the workers
 * are real processes, and what they say is read from their JSON log lines.
 */
import { CliProcess } from './cli.ts';
import { getCluster } from '../cluster-context.ts';
import { writeAuthFile } from './pgmux.ts';

export interface LogLine {
  msg: string;
  worker?: number;
  [key: string]: unknown;
}

export class RunningWorkers {
  readonly cli: CliProcess;
  port = 0;

  constructor(cli: CliProcess) {
    this.cli = cli;
  }

  lines(): LogLine[] {
    const out: LogLine[] = [];
    for (const l of this.cli.output.split('\n')) {
      if (!l.startsWith('{')) continue;
      try {
        out.push(JSON.parse(l) as LogLine);
      } catch {
        // A line cut by the read so far.
      }
    }
    return out;
  }

  /** The workers' pids, by index, as the last 'workers started' or 'worker restarted' lines say. */
  pids(): number[] {
    const pids: number[] = [];
    for (const l of this.lines()) {
      if (l.msg === 'workers started') (l.pids as number[]).forEach((p, i) => (pids[i] = p));
      if (l.msg === 'worker restarted') pids[l.worker!] = l.pid as number;
    }
    return pids;
  }

  async waitForLine(pred: (l: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines().find(pred);
      if (hit !== undefined) return hit;
      if (this.cli.child.exitCode !== null) throw new Error(`pgmux exited:\n${this.cli.output}`);
      if (Date.now() > deadline) throw new Error(`no such log line in ${timeoutMs} ms:\n${this.cli.output}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  url(user = 'app', database = 'appdb', password?: string): string {
    const c = getCluster();
    return `postgresql://${user}:${encodeURIComponent(password ?? c.roles[user as 'app' | 'other'].password)}@127.0.0.1:${this.port}/${database}`;
  }

  async stop(): Promise<void> {
    await this.cli.kill();
  }
}

/** Starts `pgmux --workers N` (the sources) in front of the primary; resolves once every worker listens. */
export async function startWorkers(count: number, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<RunningWorkers> {
  const c = getCluster();
  const cli = new CliProcess(
    [
      '--workers', String(count),
      '--listen', '127.0.0.1:0',
      '--unix-socket-dir', '',
      '--endpoint', `main=postgresql://${c.primary.host}:${c.primary.port}`,
      '--auth-file', await writeAuthFile(),
      '--log-format', 'json',
      ...args,
    ],
    env,
  );
  const w = new RunningWorkers(cli);
  try {
    await cli.waitFor('workers started');
    const listening = await w.waitForLine((l) => l.msg === 'listening');
    w.port = listening.port as number;
  } catch (err) {
    await cli.kill();
    throw err;
  }
  return w;
}
