import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { spawn } from 'node:child_process';
import postgres from 'postgres';
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

/** Runs psql with pg_sleep(30) and interrupts it as Ctrl-C would; returns its stderr and how long the cancel took. */
function psqlInterrupted(url: string): Promise<{ stderr: string; ms: number }> {
  return new Promise((resolve) => {
    const child = spawn('psql', ['-X', '-c', 'SELECT pg_sleep(30)', url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let sentAt = 0;
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    setTimeout(() => {
      sentAt = Date.now();
      child.kill('SIGINT');
    }, 700);
    child.on('close', () => resolve({ stderr, ms: Date.now() - sentAt }));
  });
}

for (const mode of ['session', 'transaction'] as const) {
  describe(`cancellation from real clients in ${mode} mode`, () => {
    let pgmux: RunningPgmux;
    beforeAll(async () => {
      pgmux = await startPgmux({ pool_mode: mode, default_pool_size: 3 });
    });
    afterAll(async () => {
      await pgmux.stop();
      await sleep(100);
    });

    it('psql interrupted during pg_sleep(30) gets 57014', async () => {
      const r = await psqlInterrupted(pgmux.url());
      expect(r.stderr).toContain('canceling statement due to user request');
      expect(r.ms).toBeLessThan(10_000);
    });

    it('postgres.js cancelling pg_sleep(30) gets 57014, and the connection goes on serving', async () => {
      const sql = postgres(pgmux.url(), { max: 1 });
      try {
        const q = sql`SELECT pg_sleep(30)`;
        const outcome = q.then(
          () => null,
          (e: { code?: string }) => e.code,
        );
        await sleep(500);
        const started = Date.now();
        q.cancel();
        expect(await outcome).toBe('57014');
        expect(Date.now() - started).toBeLessThan(10_000);
        expect((await sql`SELECT 1 AS one`)[0].one).toBe(1);
      } finally {
        await sql.end();
      }
    });

    it('an idle client\'s cancel is dropped and cancels nobody else', async () => {
      const trust = await startPgmux({ ...trustSettings(), pool_mode: mode, default_pool_size: 2 });
      try {
        const idle = await RawClient.login(trust.port, 'app', 'appdb');
        const busy = await RawClient.login(trust.port, 'app', 'appdb');
        busy.write(query('SELECT pg_sleep(1)'));
        await sleep(200);
        await sendCancel(trust.port, idle.backendKey!.processId, idle.backendKey!.secretKey);
        await busy.until((m) => m.type === 'Z', 5000);
        expect(busy.errorCode()).toBeUndefined();
        idle.close();
        busy.close();
      } finally {
        await trust.stop();
      }
    });
  });
}
