/**
 * How one pgmux worker process talks to the others (through the
 * supervisor, over Node's IPC channel). Every server has a link: with
 * workers = 1 it is a SoloLink, so the admin console, cancels and limits
 * take one path whether pgmux runs one process or many.
 *
 * Messages are rare by design (a cancel, an admin command, a connection
 * grant when a pool grows): nothing here is on the path of a query.
 */
export interface WorkerLink {
  /** This worker's index, 0 .. count - 1. */
  readonly id: number;
  /** How many workers pgmux runs (1 without a supervisor). */
  readonly count: number;
  /**
   * Ask every worker, this one included, and gather their answers in
   * worker order. A worker that does not answer within `timeoutMs` (it
   * died, it is restarting) is left out of the result.
   */
  askAll<T = unknown>(topic: string, payload?: unknown, timeoutMs?: number): Promise<{ worker: number; answer: T }[]>;
  /** Ask one worker (this one included); rejects when it does not answer in time. */
  ask<T = unknown>(worker: number, topic: string, payload?: unknown, timeoutMs?: number): Promise<T>;
  /** Tell one worker, without waiting for anything. */
  tell(worker: number, topic: string, payload?: unknown): void;
  /** How this worker answers (ask/askAll) or takes (tell) a topic. One handler per topic. */
  handle(topic: string, handler: (payload: unknown, from: number) => unknown): void;
}

/** The link of a pgmux that is its only worker: everything is asked of itself. */
export class SoloLink implements WorkerLink {
  readonly id = 0;
  readonly count = 1;
  private readonly handlers = new Map<string, (payload: unknown, from: number) => unknown>();

  handle(topic: string, handler: (payload: unknown, from: number) => unknown): void {
    this.handlers.set(topic, handler);
  }

  async ask<T>(worker: number, topic: string, payload?: unknown): Promise<T> {
    if (worker !== 0) throw new Error(`no worker ${worker}`);
    const handler = this.handlers.get(topic);
    if (handler === undefined) throw new Error(`no handler for ${topic}`);
    return (await handler(payload, 0)) as T;
  }

  async askAll<T>(topic: string, payload?: unknown): Promise<{ worker: number; answer: T }[]> {
    return [{ worker: 0, answer: await this.ask<T>(0, topic, payload) }];
  }

  tell(worker: number, topic: string, payload?: unknown): void {
    if (worker === 0) void Promise.resolve(this.handlers.get(topic)?.(payload, 0));
  }
}
