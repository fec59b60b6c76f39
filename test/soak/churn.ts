/**
 * Soak: 1,000 client connects per second for 60 s (SOAK_SECONDS,
 * SOAK_RATE) against a pgmux in transaction mode, each client logging in,
 * running a query and leaving. Fails (exit 1) on any client error, or if
 * pgmux's descriptors or memory grow from the first sample to the last.
 * Run with `npm run soak`.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LocalCluster, freePort } from '../../src/embedded/cluster.ts';
import { query, startupMessage } from '../../src/protocol/messages.ts';

const seconds = Number(process.env.SOAK_SECONDS ?? 60);
const rate = Number(process.env.SOAK_RATE ?? 1000);

function oneClient(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(Buffer.concat([startupMessage([['user', 'app'], ['database', 'app']]), query('SELECT 1')])));
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.startsWith('E')) {
        s.destroy();
        reject(new Error(got));
      } else if ((got.match(/Z\0\0\0\x05I/g) ?? []).length >= 2) {
        s.end(Buffer.from([0x58, 0, 0, 0, 4]));
        resolve();
      }
    });
    s.on('error', reject);
  });
}

async function usage(pid: number): Promise<{ rssMb: number; fds: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return { rssMb: Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024, fds: (await readdir(`/proc/${pid}/fd`)).length };
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'pgmux-soak-'));
const cluster = await LocalCluster.start({ settings: { max_connections: '100' } });
let code = 0;
const child = { pid: 0, kill: (_: string) => {} };
try {
  await cluster.createRole('app', 'soak-secret');
  await cluster.query('CREATE DATABASE app OWNER app');
  await writeFile(path.join(dir, 'userlist.txt'), '"app" "soak-secret"\n', { mode: 0o600 });
  const port = await freePort();
  const p = spawn(process.execPath, ['--liftoff-only', '--max-semi-space-size=4', 'src/cli.ts', '--listen', `127.0.0.1:${port}`,
    '--endpoint', `main=postgresql://127.0.0.1:${cluster.primary.port}`, '--auth-type', 'trust', '--auth-file', path.join(dir, 'userlist.txt'),
    '--user-password', 'app=soak-secret', '--pool-mode', 'transaction', '--default-pool-size', '10', '--max-client-conn', '5000', '--log-level', 'warn'],
    { stdio: ['ignore', 'ignore', 'inherit'] });
  Object.assign(child, { pid: p.pid!, kill: (sig: string) => p.kill(sig as NodeJS.Signals) });
  await new Promise((r) => setTimeout(r, 1500));
  let ok = 0;
  let failed = 0;
  const samples: { rssMb: number; fds: number }[] = [];
  const t0 = Date.now();
  for (let s = 0; s < seconds; s++) {
    const tick = Date.now();
    const results = await Promise.allSettled(Array.from({ length: rate }, () => oneClient(port)));
    for (const r of results) r.status === 'fulfilled' ? ok++ : failed++;
    if (failed > 0 && failed === results.filter((r) => r.status === 'rejected').length) {
      const first = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      console.error(`errors: ${String(first.reason).slice(0, 200)}`);
    }
    if (s % 10 === 0 || s === seconds - 1) samples.push(await usage(p.pid!));
    const spent = Date.now() - tick;
    if (spent < 1000) await new Promise((r) => setTimeout(r, 1000 - spent));
  }
  const first = samples[1] ?? samples[0];
  const last = samples[samples.length - 1];
  console.log(
    `soak: ${ok} clients in ${((Date.now() - t0) / 1000).toFixed(0)} s (${(ok / ((Date.now() - t0) / 1000)).toFixed(0)}/s), ${failed} failed; ` +
      `pgmux ${samples.map((x) => `${x.rssMb.toFixed(0)} MB/${x.fds} fds`).join(' → ')}`,
  );
  if (failed > 0 || last.fds > first.fds + 20 || last.rssMb > first.rssMb + 30) code = 1;
} finally {
  child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 500));
  await cluster.stop();
  await rm(dir, { recursive: true, force: true });
}
process.exit(code);
