/**
 * The link between a worker process and the supervisor, over a real IPC
 * channel: questions and answers, a question nobody answers times out, a
 * question to a worker that is not running is refused at once, and the
 * round trip a connection grant costs.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { SUPERVISOR, type LinkMessage } from '../src/workers/ipc.ts';
import { LinkEndpoint } from '../src/workers/process-link.ts';

it('asks through the parent, times out, and is refused for a worker that is not running', async () => {
  const child = fork(fileURLToPath(new URL('./fixtures/link-child.ts', import.meta.url)), ['2000'], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  // The parent in the supervisor's place: it answers 'want', never answers 'never', and knows no worker 0.
  const endpoint = new LinkEndpoint(SUPERVISOR, (m) => child.send(m));
  endpoint.handlers.set('want', () => true);
  endpoint.handlers.set('never', () => new Promise(() => {}));
  const report = await new Promise<{ median: number; p99: number; timedOut: string; toAbsent: string }>((resolve) => {
    child.on('message', (m: unknown) => {
      const msg = m as LinkMessage | { report: never };
      if ('report' in msg) return resolve(msg.report);
      if (msg.to === SUPERVISOR) endpoint.receive(msg);
      else if (msg.pgmux === 'ask') child.send({ pgmux: 'answer', id: msg.id, to: msg.from, ok: false, error: `worker ${msg.to} is not running` });
    });
  });
  child.kill();
  console.log(`grant round trip over IPC: median ${report.median.toFixed(3)} ms, p99 ${report.p99.toFixed(3)} ms`);
  expect(report.timedOut).toMatch(/did not answer never within 200 ms/);
  expect(report.toAbsent).toBe('worker 0 is not running');
}, 60_000);

it('a resolved configuration survives the IPC channel (structured clone) whole', async () => {
  const { ConfigSchema } = await import('../src/config/schema.ts');
  const config = ConfigSchema.parse({
    workers: 4,
    endpoints: { main: { nodes: ['postgresql://127.0.0.1:5432/app?sslmode=disable', 'postgresql://127.0.0.1:5433'], weights: [0, 1], pool_mode: 'transaction' } },
    users: { app: { password: 'secret', default_pool_size: 3 } },
    metrics_listen: '127.0.0.1:0',
  });
  const back = await new Promise<unknown>((resolve) => {
    const child = fork(fileURLToPath(new URL('./fixtures/echo-child.ts', import.meta.url)), [], { serialization: 'advanced' });
    child.once('message', resolve);
    child.send(config);
  });
  expect(back).toEqual(config);
});
