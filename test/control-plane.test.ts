import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ControlPlane } from '../src/routing/control-plane.ts';

/** A real HTTP control plane whose answers each test scripts. */
describe('control plane resolver', () => {
  let server: http.Server;
  let base = '';
  let requests: string[] = [];
  let answer: (name: string, n: number) => { status: number; body?: string; delayMs?: number } = () => ({ status: 404 });

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const name = new URL(req.url!, 'http://x').searchParams.get('endpoint') ?? '';
      requests.push(name);
      const a = answer(name, requests.filter((r) => r === name).length);
      setTimeout(() => res.writeHead(a.status, { 'content-type': 'application/json' }).end(a.body ?? ''), a.delayMs ?? 0);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/ep`;
  });
  afterAll(() => server.close());

  const make = (over: Partial<ConstructorParameters<typeof ControlPlane>[0]> = {}) => {
    requests = [];
    return new ControlPlane({ url: base, cacheTtlMs: 60_000, cacheSize: 100, timeoutMs: 1000, retries: 3, ...over });
  };
  const ok = (port: number) => ({ status: 200, body: JSON.stringify({ nodes: [`postgresql://127.0.0.1:${port}`], weights: [1] }) });

  it('resolves, caches, and coalesces 20 concurrent look-ups into one request', async () => {
    answer = () => ({ ...ok(5433), delayMs: 50 });
    const cp = make();
    const all = await Promise.all(Array.from({ length: 20 }, () => cp.resolve('ep-a')));
    expect(all.every((e) => e?.nodes[0] === 'postgresql://127.0.0.1:5433')).toBe(true);
    await cp.resolve('ep-a');
    expect(requests).toEqual(['ep-a']);
  });

  it('answers null for 404, and refuses answers that are not usable', async () => {
    const cp = make();
    answer = (name) => (name === 'bad-json' ? { status: 200, body: '{nope' } : name === 'bad-url' ? { status: 200, body: '{"nodes":["http://x"]}' } : { status: 404 });
    expect(await cp.resolve('missing')).toBeNull();
    await expect(cp.resolve('bad-json')).rejects.toThrow(/invalid JSON/);
    await expect(cp.resolve('bad-url')).rejects.toThrow(/not usable/);
  });

  it('retries with backoff after server errors', async () => {
    const cp = make();
    answer = (_name, n) => (n <= 2 ? { status: 500 } : ok(5434));
    expect((await cp.resolve('flaky'))?.nodes).toEqual(['postgresql://127.0.0.1:5434']);
    expect(requests).toEqual(['flaky', 'flaky', 'flaky']);
  });

  it('serves an expired entry while the control plane is down, and re-fetches after invalidate', async () => {
    const cp = make({ cacheTtlMs: 10, retries: 1 });
    answer = () => ok(5435);
    await cp.resolve('warm');
    await new Promise((r) => setTimeout(r, 30));
    answer = () => ({ status: 503 });
    expect((await cp.resolve('warm'))?.nodes).toEqual(['postgresql://127.0.0.1:5435']);
    cp.invalidate('warm');
    await expect(cp.resolve('warm')).rejects.toThrow(/503/);
  });

  it('keeps at most cache_size endpoints, dropping the least recently used', async () => {
    const cp = make({ cacheSize: 2 });
    answer = () => ok(5436);
    await cp.resolve('one');
    await cp.resolve('two');
    await cp.resolve('one');
    await cp.resolve('three');
    requests = [];
    await cp.resolve('one');
    await cp.resolve('two');
    expect(requests).toEqual(['two']);
  });
});
