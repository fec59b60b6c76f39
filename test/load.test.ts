import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { readdir, readFile } from 'node:fs/promises';
import { freePort } from '../src/embedded/cluster.ts';
import { query } from '../src/protocol/messages.ts';
import { trustLogin } from './helpers/clients.ts';
import { sleep, writeAuthFile } from './helpers/pgmux.ts';
import { getCluster } from './cluster-context.ts';

/** Logs in (trust) and resolves with the socket once ReadyForQuery arrives. */
const login = (port: number) => trustLogin(port, 'app', 'appdb');

async function usage(pid: number): Promise<{ rssMb: number; fds: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return { rssMb: Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024, fds: (await readdir(`/proc/${pid}/fd`)).length };
}

/**
 * pgmux runs as its own process here, with the descriptor limit raised to
 * the hard limit, so that it and this test each hold one end of every
 * connection. One worker (`--workers 1`): the descriptors and memory
 * measured are those of the process that holds every client.
 */
describe('load', () => {
  it('holds 10,000 logged-in clients and serves them; after they and 2 × 2,000 more come and go, descriptors are back to the baseline and memory stays flat', async () => {
    const c = getCluster();
    const port = await freePort();
    const authFile = await writeAuthFile();
    const child = spawn(
      'bash',
      ['-c', 'ulimit -n "$(ulimit -Hn)"; exec "$@"', 'pgmux', process.execPath, '--liftoff-only', '--max-semi-space-size=4', 'src/cli.ts',
        '--listen', `127.0.0.1:${port}`, '--endpoint', `main=postgresql://${c.primary.host}:${c.primary.port}`, '--auth-type', 'trust',
        '--auth-file', authFile, '--user-password', `app=${c.roles.app.password}`, '--pool-mode', 'transaction', '--default-pool-size', '10',
        '--max-client-conn', '12000', '--log-level', 'warn', '--workers', '1'],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    try {
      for (let i = 0; i < 100; i++) {
        const up = await new Promise<boolean>((r) => net.connect({ host: '127.0.0.1', port }).on('connect', function (this: net.Socket) { this.destroy(); r(true); }).on('error', () => r(false)));
        if (up) break;
        await sleep(100);
      }
      const warm = await login(port);
      warm.destroy();
      await sleep(300);
      const base = await usage(child.pid!);
      const sockets: net.Socket[] = [];
      for (let i = 0; i < 10_000; i += 500) sockets.push(...(await Promise.all(Array.from({ length: 500 }, () => login(port)))));
      expect(sockets).toHaveLength(10_000);
      const held = await usage(child.pid!);
      expect(held.fds).toBeGreaterThanOrEqual(base.fds + 10_000);
      // Every hundredth client runs a query while all are connected.
      const answers = await Promise.all(
        sockets.filter((_, i) => i % 100 === 0).map(
          (s) =>
            new Promise<boolean>((resolve) => {
              let got = '';
              s.on('data', (d: Buffer) => {
                got += d.toString('latin1');
                if (got.includes('Z\0\0\0\x05I')) resolve(got.includes('42'));
              });
              s.write(query('SELECT 42'));
            }),
        ),
      );
      expect(answers.every(Boolean)).toBe(true);
      for (const s of sockets) s.destroy();
      // Churn: 2,000 more come and go, 200 at a time, twice: memory and
      // descriptors must not grow from one round to the next.
      const churn = async () => {
        for (let i = 0; i < 2000; i += 200) for (const s of await Promise.all(Array.from({ length: 200 }, () => login(port)))) s.destroy();
        await sleep(1000);
        return usage(child.pid!);
      };
      const first = await churn();
      const second = await churn();
      expect(first.fds).toBeLessThanOrEqual(base.fds + 20);
      expect(second.fds).toBeLessThanOrEqual(base.fds + 20);
      expect(second.rssMb).toBeLessThan(first.rssMb + 15);
      console.log(
        `load: baseline ${base.rssMb.toFixed(0)} MB / ${base.fds} fds; 10,000 clients ${held.rssMb.toFixed(0)} MB / ${held.fds} fds; ` +
          `after churn ${first.rssMb.toFixed(0)} MB / ${first.fds} fds, then ${second.rssMb.toFixed(0)} MB / ${second.fds} fds`,
      );
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  }, 120_000);
});
