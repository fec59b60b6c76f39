/**
 * The WorkerLink of a worker process: every message goes to the
 * supervisor, which passes it to the worker it is for (or answers it
 * itself: the ledger of shared limits is the supervisor's). A question
 * to a worker that is not running (it died, it is being restarted) is
 * answered at once with an error by the supervisor; one lost on the way
 * times out.
 */
import { SUPERVISOR, type LinkMessage } from './ipc.ts';
import type { WorkerLink } from './link.ts';

const DEFAULT_TIMEOUT_MS = 5000;

type Handler = (payload: unknown, from: number) => unknown;

/** Something messages can be sent to and come from: a child process seen from its parent, or `process` in the child. */
export interface Channel {
  send(message: LinkMessage): void;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Questions and answers over one channel, for whichever side holds it:
 * the worker's ProcessLink and the supervisor's side of each worker
 * share this.
 */
export class LinkEndpoint {
  readonly handlers = new Map<string, Handler>();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;

  /** This side's address: a worker index, or SUPERVISOR. */
  readonly self: number;
  private readonly send: (m: LinkMessage) => void;

  constructor(self: number, send: (m: LinkMessage) => void) {
    this.self = self;
    this.send = send;
  }

  ask<T>(to: number, topic: string, payload: unknown, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<T> {
    if (to === this.self) return this.answerLocally(topic, payload, this.self) as Promise<T>;
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${describe(to)} did not answer ${topic} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      try {
        this.send({ pgmux: 'ask', id, from: this.self, to, topic, payload });
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(err as Error);
      }
    });
  }

  tell(to: number, topic: string, payload: unknown): void {
    if (to === this.self) {
      void this.answerLocally(topic, payload, this.self).catch(() => {});
      return;
    }
    try {
      this.send({ pgmux: 'tell', from: this.self, to, topic, payload });
    } catch {
      // The channel is closed: this process is stopping.
    }
  }

  /** A link message for this side. */
  receive(m: LinkMessage): void {
    switch (m.pgmux) {
      case 'answer': {
        const p = this.pending.get(m.id);
        if (p === undefined) return; // Timed out already.
        this.pending.delete(m.id);
        clearTimeout(p.timer);
        if (m.ok) p.resolve(m.value);
        else p.reject(new Error(m.error ?? 'failed'));
        return;
      }
      case 'tell':
        void this.answerLocally(m.topic, m.payload, m.from).catch(() => {});
        return;
      case 'ask':
        this.answerLocally(m.topic, m.payload, m.from).then(
          (value) => this.reply({ pgmux: 'answer', id: m.id, to: m.from, ok: true, value }),
          (err: Error) => this.reply({ pgmux: 'answer', id: m.id, to: m.from, ok: false, error: err.message }),
        );
        return;
    }
  }

  private reply(m: LinkMessage): void {
    try {
      this.send(m);
    } catch {
      // The asker is gone, or this process is stopping.
    }
  }

  private async answerLocally(topic: string, payload: unknown, from: number): Promise<unknown> {
    const handler = this.handlers.get(topic);
    if (handler === undefined) throw new Error(`${describe(this.self)} has no handler for ${topic}`);
    return await handler(payload, from);
  }

  /** Every question still waiting fails (the channel closed). */
  failAll(why: string): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error(why));
      this.pending.delete(id);
    }
  }
}

const describe = (who: number) => (who === SUPERVISOR ? 'the supervisor' : `worker ${who}`);

/** A worker's link to the others, through the supervisor. */
export class ProcessLink implements WorkerLink {
  private readonly endpoint: LinkEndpoint;

  readonly id: number;
  readonly count: number;

  constructor(id: number, count: number, send: (m: LinkMessage) => void) {
    this.id = id;
    this.count = count;
    this.endpoint = new LinkEndpoint(id, send);
  }

  /** A link message from the supervisor. */
  receive(m: LinkMessage): void {
    this.endpoint.receive(m);
  }

  handle(topic: string, handler: Handler): void {
    this.endpoint.handlers.set(topic, handler);
  }

  ask<T = unknown>(worker: number, topic: string, payload?: unknown, timeoutMs?: number): Promise<T> {
    return this.endpoint.ask<T>(worker, topic, payload, timeoutMs);
  }

  async askAll<T = unknown>(topic: string, payload?: unknown, timeoutMs?: number): Promise<{ worker: number; answer: T }[]> {
    const asked = await Promise.allSettled(Array.from({ length: this.count }, (_, w) => this.ask<T>(w, topic, payload, timeoutMs)));
    const out: { worker: number; answer: T }[] = [];
    asked.forEach((r, worker) => {
      if (r.status === 'fulfilled') out.push({ worker, answer: r.value });
    });
    return out;
  }

  tell(worker: number, topic: string, payload?: unknown): void {
    this.endpoint.tell(worker, topic, payload);
  }

  /** Ask the supervisor itself (the ledger of shared limits). */
  askSupervisor<T = unknown>(topic: string, payload?: unknown, timeoutMs?: number): Promise<T> {
    return this.endpoint.ask<T>(SUPERVISOR, topic, payload, timeoutMs);
  }

  tellSupervisor(topic: string, payload?: unknown): void {
    this.endpoint.tell(SUPERVISOR, topic, payload);
  }

  /** The supervisor is gone: nothing will be answered. */
  close(): void {
    this.endpoint.failAll('the supervisor is gone');
  }
}
