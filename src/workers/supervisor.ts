/**
 * workers > 1: this process serves no client itself. It forks the worker
 * processes, which all listen on the same addresses (SO_REUSEPORT), gives
 * each its configuration, restarts one that dies, passes signals on,
 * routes the messages of the workers' links, and keeps the ledger of the
 * limits that are the whole pgmux's.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { parseListenList } from '../listeners.ts';
import type { Socket } from 'node:net';
import { isPgmuxMessage, SUPERVISOR, type LinkMessage, type SupervisorMessage, type WorkerMessage } from './ipc.ts';
import type { HandedConnection } from '../pool/server-connection.ts';
import { TERMINATE } from '../protocol/messages.ts';
import { ClientLedger } from './client-ledger.ts';
import { Ledger } from './ledger.ts';
import { LinkEndpoint } from './process-link.ts';

/** The worker's entry: the bundle's own when this runs from dist/, else the TypeScript source. */
function workerEntry(): string {
  const here = import.meta.url;
  return fileURLToPath(new URL(here.endsWith('.ts') ? './worker-main.ts' : './worker.js', here));
}

/** A worker that lived less than this was not well: its restart waits, longer each time. */
const QUICK_DEATH_MS = 2000;
const MAX_BACKOFF_MS = 10_000;

type Signal = 'SIGTERM' | 'SIGINT' | 'SIGQUIT' | 'SIGUSR1' | 'SIGUSR2';

interface Worker {
  index: number;
  child: ChildProcess | null;
  startedAt: number;
  /** Deaths in a row, each soon after its start. */
  quickDeaths: number;
  listening: boolean;
  /** Said hello: its own signal handlers are in place (before, SIGUSR1 would open Node's inspector). */
  greeted: boolean;
}

export interface SupervisorOptions {
  config: Config;
  count: number;
  log: Logger;
  /** Reads the configuration again (SIGHUP, RELOAD). */
  reloadSource: () => Promise<Config>;
  /** -q: workers log nowhere unless log_file is set. */
  quiet: boolean;
  /** The admin console's SHUTDOWN in a worker: how the whole pgmux stops. */
  onShutdown: (mode: string) => void;
}

export interface Listening {
  tcp: { host: string; port: number }[];
  unixSocket: string | null;
  metrics: { host: string; port: number } | null;
}

const hostPort = (host: string, port: number) => `${host.includes(':') ? `[${host}]` : host}:${port}`;

export class Supervisor {
  private config: Config;
  private readonly opts: SupervisorOptions;
  private readonly log: Logger;
  private readonly workers: Worker[];
  private stopping = false;
  /** Ports that were 0 in the configuration, as worker 0 got them: every worker listens there. */
  private listenResolved: string | null = null;
  private metricsResolved: string | undefined = undefined;
  private readonly endpoint: LinkEndpoint;
  readonly ledger: Ledger;
  private readonly clients: ClientLedger;
  private allStopped: (() => void) | null = null;
  /** Resolves once every worker has exited after stop(). */
  readonly stopped: Promise<void>;

  constructor(opts: SupervisorOptions) {
    this.opts = opts;
    this.config = opts.config;
    this.log = opts.log;
    this.workers = Array.from({ length: opts.count }, (_, index) => ({ index, child: null, startedAt: 0, quickDeaths: 0, listening: false, greeted: false }));
    this.stopped = new Promise((resolve) => (this.allStopped = resolve));
    this.endpoint = new LinkEndpoint(SUPERVISOR, (m) => this.route(m, SUPERVISOR));
    // The admin console's RELOAD in a worker: the configuration read again, which a restarted worker gets too.
    this.endpoint.handlers.set('config', async (worker) => {
      this.config = await this.opts.reloadSource();
      return this.workerConfig(this.config, worker as number);
    });
    this.ledger = new Ledger(this.endpoint, () => this.live(), this.log);
    this.clients = new ClientLedger(this.endpoint);
  }

  /** Workers running now. */
  private live(): number[] {
    return this.workers.filter((w) => w.child !== null && w.listening).map((w) => w.index);
  }

  /** Pids of the running workers, by index (null: not running). */
  pids(): (number | null)[] {
    return this.workers.map((w) => w.child?.pid ?? null);
  }

  /** What worker `index` runs with: ports resolved, SO_REUSEPORT on, the socket and the pid_file only where they belong. */
  private workerConfig(config: Config, index: number): Config {
    return {
      ...config,
      so_reuseport: true,
      listen: this.listenResolved ?? config.listen,
      metrics_listen: this.metricsResolved ?? config.metrics_listen,
      // A Unix-domain socket cannot be shared: worker 0 listens on it.
      unix_socket_dir: index === 0 ? config.unix_socket_dir : '',
      pid_file: undefined,
    };
  }

  /**
   * Starts worker 0, then the others (on the ports it got, where `listen`
   * or `metrics_listen` asks for a free port); resolves when all listen.
   * Worker 0 first also makes its `listening` line, the one that names
   * the Unix-domain socket, the first.
   */
  async start(): Promise<Listening> {
    const first = await this.spawn(this.workers[0]);
    if (parseListenList(this.config.listen).some((a) => a.port === 0)) {
      const port = first.tcp[0].port;
      this.listenResolved = parseListenList(this.config.listen)
        .map((a) => hostPort(a.host, a.port === 0 ? port : a.port))
        .join(',');
    }
    if (this.config.metrics_listen !== undefined && first.metrics !== null) this.metricsResolved = hostPort(first.metrics.host, first.metrics.port);
    // Stopped meanwhile (a signal while starting): no more workers.
    if (!this.stopping) await Promise.all(this.workers.slice(1).map((w) => this.spawn(w)));
    return { tcp: first.tcp, unixSocket: first.unixSocket, metrics: first.metrics };
  }

  /** Forks one worker and resolves once it listens; rejects if it cannot start. */
  private spawn(w: Worker): Promise<Listening> {
    const child = fork(workerEntry(), [], {
      execArgv: process.execArgv,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    w.child = child;
    w.startedAt = Date.now();
    w.listening = false;
    w.greeted = false;
    return new Promise((resolve, reject) => {
      let settled = false;
      child.on('message', (m: unknown, handle: unknown) => {
        if (!isPgmuxMessage(m)) return;
        const msg = m as WorkerMessage;
        switch (msg.pgmux) {
          case 'hand-over':
            this.handOver(msg, handle as Socket | undefined, w.index);
            return;
          case 'hello':
            w.greeted = true;
            child.send({ pgmux: 'start', config: this.workerConfig(this.config, w.index), worker: w.index, count: this.workers.length, quiet: this.opts.quiet });
            return;
          case 'listening':
            w.listening = true;
            // PAUSE (SIGUSR1) holds for a worker that started after it, until SIGUSR2.
            if (this.paused && child.pid !== undefined) process.kill(child.pid, 'SIGUSR1');
            settled = true;
            resolve({ tcp: msg.tcp, metrics: msg.metrics, unixSocket: null });
            return;
          case 'failed':
            this.log.error({ worker: w.index, err: msg.error }, 'worker could not start');
            if (!settled) {
              settled = true;
              reject(new Error(msg.error));
            }
            return;
          case 'shutdown':
            this.opts.onShutdown(msg.mode);
            return;
          default:
            this.route(msg, w.index);
        }
      });
      child.on('error', (err) => this.log.warn({ worker: w.index, err: err.message }, 'worker channel error'));
      child.once('exit', (code, signal) => {
        if (w.child === child) w.child = null;
        w.listening = false;
        this.ledger.workerGone(w.index);
        this.clients.workerGone(w.index);
        if (!settled) {
          settled = true;
          reject(new Error(`worker ${w.index} exited (${signal ?? code}) before it listened`));
          if (this.stopping || this.startedAll === false) return this.checkAllStopped();
        }
        if (this.stopping) return this.checkAllStopped();
        this.restart(w, code, signal);
      });
    });
  }

  /** Set once every worker listened: before that a death fails the start instead of restarting. */
  private startedAll: boolean = false;

  markStarted(): void {
    this.startedAll = true;
  }

  private restart(w: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    const lived = Date.now() - w.startedAt;
    w.quickDeaths = lived < QUICK_DEATH_MS ? w.quickDeaths + 1 : 0;
    const delay = w.quickDeaths === 0 ? 0 : Math.min(MAX_BACKOFF_MS, 100 * 2 ** (w.quickDeaths - 1));
    this.log.warn({ worker: w.index, code, signal, livedMs: lived, restartInMs: delay }, 'worker died; its clients are disconnected; restarting it');
    setTimeout(() => {
      if (this.stopping) return;
      this.spawn(w).then(
        () => this.log.info({ worker: w.index, pid: w.child?.pid }, 'worker restarted'),
        (err: Error) => this.log.error({ worker: w.index, err: err.message }, 'worker restart failed'),
      );
    }, delay).unref();
  }

  /** A link message from `from` (a worker, or the supervisor's own endpoint), to where it goes. */
  private route(m: LinkMessage, from: number): void {
    if (m.pgmux === 'ask' || m.pgmux === 'tell') m.from = from;
    if (m.to === SUPERVISOR) {
      this.endpoint.receive(m);
      return;
    }
    const target = this.workers[m.to]?.child;
    if (target !== undefined && target !== null && target.connected) {
      target.send(m);
      return;
    }
    // Nobody there now (it died, it is restarting): the asker hears so at once.
    if (m.pgmux === 'ask') this.route({ pgmux: 'answer', id: m.id, to: from, ok: false, error: `worker ${m.to} is not running` }, SUPERVISOR);
  }

  /** An idle server connection on its way from worker `from` to another: its grant moves in the ledger, its socket on. */
  private handOver(m: { key: string; to: number; conn: HandedConnection }, socket: Socket | undefined, from: number): void {
    // Node starts reading a socket that arrives, and keeps this copy of
    // the handle open until the receiver acknowledges it: a reply the
    // receiver asks for meanwhile must not be read here.
    (socket as (Socket & { _handle?: { readStop?: () => number } }) | undefined)?._handle?.readStop?.();
    const target = this.workers[m.to]?.child;
    const alive = socket !== undefined && target !== undefined && target !== null && target.connected;
    this.ledger.handedOver(from, m.to, m.key, alive);
    if (socket === undefined) return;
    if (!alive) {
      socket.on('error', () => {});
      socket.end(TERMINATE);
      return;
    }
    const out: SupervisorMessage = { pgmux: 'take-over', key: m.key, conn: m.conn };
    target.send(out, socket, {}, (err) => {
      if (err === null || err === undefined) return;
      socket.destroy();
      this.ledger.lost(m.to, m.key);
    });
  }

  /** SIGHUP: the configuration is read once, here, and sent to every worker. */
  async reload(): Promise<void> {
    const next = await this.opts.reloadSource();
    this.config = next;
    // A worker starting now gets the new configuration with its 'start'.
    for (const w of this.workers) if (w.child?.connected === true) w.child.send({ pgmux: 'reload', config: this.workerConfig(next, w.index) });
  }

  /** SIGUSR1 came, and no SIGUSR2 since. */
  private paused = false;

  /** Passes a signal on to every worker that can take it (a worker still starting is told of a pause once it listens). */
  signal(sig: Signal): void {
    if (sig === 'SIGUSR1') this.paused = true;
    if (sig === 'SIGUSR2') this.paused = false;
    for (const w of this.workers) {
      if (!w.greeted && (sig === 'SIGUSR1' || sig === 'SIGUSR2')) continue;
      const pid = w.child?.pid;
      if (pid !== undefined) {
        try {
          process.kill(pid, sig);
        } catch {
          // Gone already.
        }
      }
    }
  }

  /** Stops every worker with `sig` (SIGTERM, SIGINT or SIGQUIT); resolves once all have exited. */
  stop(sig: 'SIGTERM' | 'SIGINT' | 'SIGQUIT'): Promise<void> {
    this.stopping = true;
    this.signal(sig);
    this.checkAllStopped();
    return this.stopped;
  }

  private checkAllStopped(): void {
    if (this.stopping && this.workers.every((w) => w.child === null)) this.allStopped?.();
  }
}
