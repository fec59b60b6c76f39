/**
 * Several pgmux workers in this process, joined by in-memory links that
 * carry what an IPC channel carries: each message a copy made through
 * JSON (as Node's IPC serializes it), delivered on a later turn of the
 * event loop, and an error as its message alone. Each worker is a whole
 * PgmuxServer with its own listener.
 */
import pino from 'pino';
import { ConfigSchema, type Config } from '../../src/config/schema.ts';
import { PgmuxServer } from '../../src/server.ts';
import type { WorkerLink } from '../../src/workers/link.ts';
import { getCluster } from '../cluster-context.ts';
import { writeAuthFile } from './pgmux.ts';

type Handler = (payload: unknown, from: number) => unknown;

const DEFAULT_TIMEOUT_MS = 5000;

const carried = <T>(value: T): T => (value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T));

/** One worker's end of a set of in-memory links. */
export class MemoryLink implements WorkerLink {
  readonly id: number;
  readonly count: number;
  private readonly handlers = new Map<string, Handler>();
  private readonly all: MemoryLink[];
  /** A stopped worker answers nothing (its questions time out, as a dead worker's do). */
  down = false;

  constructor(id: number, count: number, all: MemoryLink[]) {
    this.id = id;
    this.count = count;
    this.all = all;
  }

  handle(topic: string, handler: Handler): void {
    this.handlers.set(topic, handler);
  }

  /** How this worker answers a message from `from`: on a later turn, on a copy. */
  private answer(topic: string, payload: unknown, from: number): Promise<unknown> {
    return new Promise((resolve, reject) =>
      setImmediate(() => {
        const handler = this.handlers.get(topic);
        if (handler === undefined) return reject(new Error(`worker ${this.id} has no handler for ${topic}`));
        Promise.resolve()
          .then(() => handler(carried(payload), from))
          .then((v) => resolve(carried(v)), (err: Error) => reject(new Error(err.message)));
      }),
    );
  }

  ask<T = unknown>(worker: number, topic: string, payload?: unknown, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<T> {
    const to = this.all[worker];
    if (to === undefined) return Promise.reject(new Error(`no worker ${worker}`));
    if (to.down) return Promise.reject(new Error(`worker ${worker} is not running`));
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker ${worker} did not answer ${topic} within ${timeoutMs} ms`)), timeoutMs);
      to.answer(topic, payload, this.id).then(
        (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        (err: Error) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  async askAll<T = unknown>(topic: string, payload?: unknown, timeoutMs?: number): Promise<{ worker: number; answer: T }[]> {
    const answers = await Promise.allSettled(this.all.map((_, w) => this.ask<T>(w, topic, payload, timeoutMs)));
    return answers.flatMap((a, worker) => (a.status === 'fulfilled' ? [{ worker, answer: a.value }] : []));
  }

  tell(worker: number, topic: string, payload?: unknown): void {
    const to = this.all[worker];
    if (to !== undefined && !to.down) to.answer(topic, payload, this.id).catch(() => {});
  }
}

/** `n` links, one per worker, each reaching all. */
export function memoryLinks(n: number): MemoryLink[] {
  const all: MemoryLink[] = [];
  for (let i = 0; i < n; i++) all.push(new MemoryLink(i, n, all));
  return all;
}

export interface RunningWorker {
  server: PgmuxServer;
  link: MemoryLink;
  port: number;
  /** Where /metrics is served (with metrics_listen). */
  metricsPort: number | null;
  url(user?: string, database?: string): string;
}

/** Starts `n` workers in front of the test cluster's primary, with one configuration, each listening on a port of its own. */
export async function startWorkers(n: number, overrides: Partial<Record<keyof Config, unknown>> = {}): Promise<{ workers: RunningWorker[]; config: Config; stop(): Promise<void> }> {
  const c = getCluster();
  const config = ConfigSchema.parse({
    listen: '127.0.0.1:0',
    unix_socket_dir: '',
    endpoints: { main: { nodes: [`postgresql://${c.primary.host}:${c.primary.port}`] } },
    auth_file: await writeAuthFile(),
    ...overrides,
  });
  const workers: RunningWorker[] = [];
  for (const link of memoryLinks(n)) {
    const server = new PgmuxServer(config, { logger: pino({ level: process.env.PGMUX_TEST_LOG ?? 'silent' }).child({ worker: link.id }), link });
    const { port } = await server.start();
    workers.push({
      server,
      link,
      port,
      metricsPort: server.metricsAddress()?.port ?? null,
      url: (user = 'app', database = 'appdb') =>
        `postgresql://${user}:${encodeURIComponent(c.roles[user as keyof typeof c.roles]?.password ?? '')}@127.0.0.1:${port}/${database}`,
    });
  }
  return { workers, config, stop: async () => void (await Promise.all(workers.map((w) => w.server.stop()))) };
}
