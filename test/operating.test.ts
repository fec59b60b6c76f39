import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { createLogger } from '../src/logging.ts';
import { freePort } from '../src/embedded/cluster.ts';
import { sleep, startPgmux, writeAuthFile } from './helpers/pgmux.ts';
import { psql } from './helpers/clients.ts';
import { getCluster } from './cluster-context.ts';
import { tempDir } from './helpers/temp.ts';

describe('metrics and health', () => {
  it('serves Prometheus metrics, /healthz and /readyz', async () => {
    const pgmux = await startPgmux({ metrics_listen: '127.0.0.1:0', pool_mode: 'transaction' });
    try {
      const { port } = pgmux.server.metricsAddress()!;
      const c = new pg.Client({ connectionString: pgmux.url() });
      c.on('error', () => {});
      await c.connect();
      await c.query({ name: 'm', text: 'SELECT $1::int', values: [1] });
      await c.query({ name: 'm', text: 'SELECT $1::int', values: [2] });
      await expect(psql(pgmux.url('app', 'appdb', 'wrong'), 'SELECT 1')).rejects.toThrow();
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      // The text exposition format: comments, or "name{labels} value" samples.
      for (const line of text.split('\n')) {
        if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
        expect(line).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? -?(?:[0-9.e+-]+|NaN|\+Inf|-Inf)$/);
      }
      expect(text).toMatch(/^pgmux_clients\{endpoint="main",state="idle"\} 1$/m);
      expect(text).toMatch(/^pgmux_auth_successes_total [1-9]/m);
      expect(text).toMatch(/^pgmux_auth_failures_total 1$/m);
      expect(text).toMatch(/^pgmux_queries_total [1-9]/m);
      expect(text).toMatch(/^pgmux_server_connections\{endpoint="main",node="0",state="idle"\} 1$/m);
      expect(text).toMatch(/^pgmux_pool_wait_seconds_count /m);
      expect(text).toMatch(/^pgmux_prepared_cache_misses_total 1$/m);
      // A process metric is one series per worker.
      expect(text).toMatch(/^pgmux_process_resident_memory_bytes\{worker="0"\} /m);
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${port}/nope`)).status).toBe(404);
      await c.end();
    } finally {
      await pgmux.stop();
    }
  });
});

describe('logs', () => {
  it('never contain passwords, proofs or verifiers, at any level', async () => {
    let text = '';
    const sink = new Writable({
      write(chunk, _enc, cb) {
        text += chunk.toString();
        cb();
      },
    });
    const logger = createLogger({ level: 'trace', format: 'json', destination: sink });
    const c = getCluster();
    const pgmux = await startPgmux({ log_level: 'trace', pool_mode: 'transaction', users: { app: { password: c.roles.app.password } } }, { logger });
    try {
      expect(await psql(pgmux.url(), 'SELECT 1')).toBe('1');
      await expect(psql(pgmux.url('app', 'appdb', 'not-the-password'), 'SELECT 1')).rejects.toThrow();
      await expect(psql(pgmux.url('nobody', 'appdb', 'whatever-secret'), 'SELECT 1')).rejects.toThrow();
      logger.info({ password: 'leak-1', nested: { secret: 'leak-2', deeper: { verifier: 'leak-3' } } }, 'redaction check');
    } finally {
      await pgmux.stop();
    }
    expect(text).toContain('"msg":"login"');
    expect(text).toContain('[redacted]');
    for (const secret of [c.roles.app.password, c.roles.app.verifier, 'SCRAM-SHA-256$', 'not-the-password', 'whatever-secret', 'leak-1', 'leak-2', 'leak-3', 'p=', 'c=biws']) {
      expect(text, secret).not.toContain(secret);
    }
  });
});

describe('signals', () => {
  it('SIGHUP reloads the configuration (a bad one is refused), SIGTERM stops', async () => {
    const c = getCluster();
    const dir = await tempDir('pgmux-signals-');
    const file = path.join(dir, 'pgmux.toml');
    const node = `postgresql://${c.primary.host}:${c.primary.port}`;
    const port = await freePort();
    const config = (endpoints: string) => `listen = "127.0.0.1:${port}"\nauth_file = "${authFile}"\nlog_format = "json"\n${endpoints}`;
    const authFile = await writeAuthFile();
    await writeFile(file, config(`[endpoints.first]\nnodes = ["${node}/appdb"]\n`));
    const child = spawn(process.execPath, ['--liftoff-only', 'src/cli.ts', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const url = (db: string) => `postgresql://app:${c.roles.app.password}@127.0.0.1:${port}/${db}`;
    try {
      for (let i = 0; i < 300 && !out.includes('listening') && child.exitCode === null; i++) await sleep(100);
      expect(out, out).toContain('listening');
      expect(await psql(url('first'), 'SELECT current_database()')).toBe('appdb');
      await writeFile(file, config(`[endpoints.first]\nnodes = ["${node}/appdb"]\n[endpoints.second]\nnodes = ["${node}/appdb"]\n`));
      child.kill('SIGHUP');
      for (let i = 0; i < 50 && !out.includes('configuration reloaded'); i++) await sleep(100);
      expect(await psql(url('second'), 'SELECT 2')).toBe('2');
      await writeFile(file, config('[endpoints.first]\nnodes = "not a list"\n'));
      child.kill('SIGHUP');
      for (let i = 0; i < 50 && !out.includes('configuration not reloaded'); i++) await sleep(100);
      expect(out).toContain('configuration not reloaded');
      expect(await psql(url('second'), 'SELECT 3')).toBe('3');
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 30_000);
});
