import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { sleep, startPgmux, trustSettings, type RunningPgmux } from './helpers/pgmux.ts';
import { RawClient } from './helpers/clients.ts';
import { cancelRequest, query } from '../src/protocol/messages.ts';

function sendCancel(port: number, processId: number, secretKey: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.end(cancelRequest(processId, secretKey)));
    s.on('close', () => resolve());
    s.on('error', () => resolve());
  });
}

describe('cancellation in session mode', () => {
  let pgmux: RunningPgmux;
  beforeAll(async () => {
    pgmux = await startPgmux({ ...trustSettings(), default_pool_size: 2 });
  });
  afterAll(async () => {
    await pgmux.stop();
    await sleep(100);
  });

  it('a CancelRequest with the key pgmux gave reaches the backend; a forged one cancels nothing', async () => {
    const c = await RawClient.login(pgmux.port, 'app', 'appdb');
    expect(c.backendKey).not.toBeNull();
    const { processId, secretKey } = c.backendKey!;
    c.write(query('SELECT pg_sleep(1.5)'));
    await sleep(200);
    await sendCancel(pgmux.port, processId, secretKey ^ 1);
    await sendCancel(pgmux.port, processId + 1, secretKey);
    await c.until((m) => m.type === 'Z', 5000);
    expect(c.errorCode()).toBeUndefined();

    c.messages.length = 0;
    c.write(query('SELECT pg_sleep(30)'));
    await sleep(200);
    const started = Date.now();
    await sendCancel(pgmux.port, processId, secretKey);
    await c.until((m) => m.type === 'Z', 5000);
    expect(c.errorCode()).toBe('57014');
    // Long before pg_sleep(30) could have ended by itself.
    expect(Date.now() - started).toBeLessThan(5000);
    c.close();
  });
});
