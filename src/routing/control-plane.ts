import { z } from 'zod';
import type { Logger } from 'pino';
import { nodeUrlProblem } from '../config/endpoint-spec.ts';

export interface ResolvedEndpoint {
  name: string;
  /** postgresql:// URLs, the primary first. */
  nodes: string[];
  weights?: number[];
}

export interface ControlPlaneOptions {
  url: string;
  cacheTtlMs: number;
  cacheSize: number;
  timeoutMs: number;
  retries: number;
  log?: Logger;
}

const Answer = z.object({
  nodes: z
    .array(
      z.string().superRefine((url, ctx) => {
        const problem = nodeUrlProblem(url);
        if (problem !== null) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(url)}: ${problem}` });
      }),
    )
    .min(1),
  weights: z.array(z.number().min(0)).optional(),
});

interface Entry {
  endpoint: ResolvedEndpoint | null;
  at: number;
}

/** How long an endpoint the control plane does not know stays unknown. */
const NEGATIVE_TTL_MS = 5000;

/**
 * Asks an HTTP control plane for the nodes of endpoints pgmux has no
 * configuration for: `GET <url>?endpoint=<name>` answers
 * `{"nodes": ["postgresql://host:port", ...], "weights": [...]}`, or 404 for
 * an unknown endpoint. Answers are cached (TTL, bounded, least recently used
 * evicted); concurrent look-ups of one name share one request; failures are
 * retried with exponential backoff; while the control plane is down an
 * expired answer is served rather than failing clients of known endpoints.
 */
export class ControlPlane {
  private readonly opts: ControlPlaneOptions;
  private readonly cache = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<ResolvedEndpoint | null>>();
  /** Requests sent, for tests and metrics. */
  requests = 0;

  constructor(opts: ControlPlaneOptions) {
    this.opts = opts;
  }

  async resolve(name: string): Promise<ResolvedEndpoint | null> {
    const hit = this.cache.get(name);
    const now = Date.now();
    if (hit !== undefined) {
      const ttl = hit.endpoint === null ? Math.min(NEGATIVE_TTL_MS, this.opts.cacheTtlMs) : this.opts.cacheTtlMs;
      if (now - hit.at <= ttl) {
        this.touch(name, hit);
        return hit.endpoint;
      }
    }
    let p = this.inflight.get(name);
    if (p === undefined) {
      p = this.fetchWithRetries(name).finally(() => this.inflight.delete(name));
      this.inflight.set(name, p);
    }
    try {
      return await p;
    } catch (err) {
      if (hit !== undefined && hit.endpoint !== null) {
        this.opts.log?.warn({ endpoint: name, err: (err as Error).message }, 'control plane unreachable; serving the cached endpoint');
        return hit.endpoint;
      }
      throw err;
    }
  }

  /** Forgets an endpoint (connecting to what the control plane returned failed). */
  invalidate(name: string): void {
    this.cache.delete(name);
  }

  private touch(name: string, e: Entry): void {
    this.cache.delete(name);
    this.cache.set(name, e);
  }

  private async fetchWithRetries(name: string): Promise<ResolvedEndpoint | null> {
    let delay = 100;
    for (let attempt = 0; ; attempt++) {
      try {
        const endpoint = await this.fetchOnce(name);
        this.cache.delete(name);
        this.cache.set(name, { endpoint, at: Date.now() });
        while (this.cache.size > this.opts.cacheSize) this.cache.delete(this.cache.keys().next().value!);
        return endpoint;
      } catch (err) {
        if (err instanceof BadAnswer || attempt >= this.opts.retries) throw err;
        await new Promise((r) => setTimeout(r, delay));
        delay *= 2;
      }
    }
  }

  private async fetchOnce(name: string): Promise<ResolvedEndpoint | null> {
    const url = new URL(this.opts.url);
    url.searchParams.set('endpoint', name);
    this.requests++;
    let res: Response;
    try {
      res = await fetch(url, { signal: AbortSignal.timeout(this.opts.timeoutMs), headers: { accept: 'application/json' } });
    } catch (err) {
      throw new Error(`control plane ${this.opts.url} did not answer: ${(err as Error).message}`);
    }
    if (res.status === 404) return null;
    if (res.status !== 200) throw new Error(`control plane ${this.opts.url} answered ${res.status} for endpoint "${name}"`);
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      throw new BadAnswer(`control plane answered invalid JSON for endpoint "${name}"`);
    }
    return parseAnswer(name, body);
  }
}

/** An answer that retrying will not fix. */
export class BadAnswer extends Error {}

/** A control plane's JSON answer for `name`, checked; BadAnswer says what is wrong. */
export function parseAnswer(name: string, body: unknown): ResolvedEndpoint {
  const parsed = Answer.safeParse(body);
  if (!parsed.success) {
    throw new BadAnswer(`control plane answer for endpoint "${name}" is not usable: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  }
  return { name, nodes: parsed.data.nodes, weights: parsed.data.weights };
}
