import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CliProcess, runCli } from './helpers/cli.ts';
import { psql } from './helpers/clients.ts';
import { tempDir } from './helpers/temp.ts';

/** Holds a port on 127.0.0.1 as another program would, until released. */
async function takePort(): Promise<{ port: number; release: () => Promise<void> }> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  return { port, release: () => new Promise((r) => srv.close(() => r())) };
}

describe('auth_file mistakes are configuration errors', () => {
  it('a missing auth_file exits 2 with "invalid configuration", before anything is started', async () => {
    const run = await runCli(['--embedded', '--listen', '127.0.0.1:0', '--auth-file', '/nonexistent/userlist.txt']);
    expect(run.stderr).toBe('pgmux: invalid configuration\nauth_file "/nonexistent/userlist.txt" does not exist\n');
    expect(run.code).toBe(2);
  });

  it('every bad line is named with the file and its line, and no secret is quoted', async () => {
    const dir = await tempDir('pgmux-cli-');
    const file = path.join(dir, 'userlist.txt');
    await writeFile(file, '"app" hunter2\n"ok" "fine"\n"bob" "SCRAM-SHA-256$4096:c2FsdA==$AAAA:BBBB"\n', { mode: 0o600 });
    const run = await runCli(['--endpoint', 'main=127.0.0.1:1', '--listen', '127.0.0.1:0', '--auth-file', file]);
    expect(run.code).toBe(2);
    const lines = run.stderr.trim().split('\n');
    expect(lines[0]).toBe('pgmux: invalid configuration');
    expect(lines.slice(1).map((l) => l.split(': ')[0])).toEqual([`${file}:1`, `${file}:3`]);
    expect(lines[2]).toContain('malformed SCRAM verifier');
    for (const secret of ['hunter2', 'c2FsdA', 'AAAA']) expect(run.stderr).not.toContain(secret);
  });
});

describe('missing files are configuration errors', () => {
  it('every configured file that is missing is named at once, exit 2', async () => {
    const run = await runCli([
      '--endpoint', 'main=127.0.0.1:1', '--listen', '127.0.0.1:0',
      '--auth-file', '/nonexistent/userlist.txt',
      '--client-tls-sslmode', 'require', '--client-tls-cert-file', '/nonexistent/server.crt',
      '--server-tls-ca-file', '/nonexistent/ca.crt',
    ]);
    expect(run.code).toBe(2);
    expect(run.stderr.trim().split('\n')).toEqual([
      'pgmux: invalid configuration',
      'auth_file "/nonexistent/userlist.txt" does not exist',
      'client_tls_sslmode = require needs client_tls_key_file',
      'server_tls_ca_file "/nonexistent/ca.crt" does not exist',
      'client_tls_cert_file "/nonexistent/server.crt" does not exist',
    ]);
  });
});

describe('a listen address that is taken', () => {
  it('stops npm start at once, before any cluster is built, saying how to choose another port', async () => {
    const taken = await takePort();
    try {
      const tmp = await tempDir('pgmux-cli-', 0o755);
      const run = await runCli(['--embedded', '--listen', `127.0.0.1:${taken.port}`], { TMPDIR: tmp });
      expect(run.code).toBe(1);
      expect(run.stderr).toBe(
        `pgmux: cannot listen on 127.0.0.1:${taken.port}: the address is already in use (another pgmux or PgBouncer?); ` +
          `choose another with --listen 127.0.0.1:${taken.port + 1} (or listen in the configuration file, PGMUX_LISTEN in the environment; ` +
          `with npm start: npm start -- --listen 127.0.0.1:${taken.port + 1})\n`,
      );
      // Nothing else: no cluster built and taken down, no log lines.
      expect(run.stdout).toBe('');
    } finally {
      await taken.release();
    }
  });

  it('the same for metrics_listen, and without --embedded', async () => {
    const taken = await takePort();
    try {
      const run = await runCli(['--endpoint', 'main=127.0.0.1:1', '--listen', '127.0.0.1:0', '--metrics-listen', `127.0.0.1:${taken.port}`]);
      expect(run.code).toBe(1);
      expect(run.stderr).toContain(`pgmux: cannot listen on 127.0.0.1:${taken.port}: the address is already in use`);
      expect(run.stderr).toContain(`choose another with --metrics-listen 127.0.0.1:${taken.port + 1}`);
      expect(run.stdout).toBe('');
    } finally {
      await taken.release();
    }
  });
});

describe('npm start (--embedded)', () => {
  it('prints how to reach the admin console and /metrics, and both answer as printed', async () => {
    const tmp = await tempDir('pgmux-cli-', 0o755);
    const taken = await takePort();
    // A port that was free a moment ago, for pgmux itself.
    await taken.release();
    const pgmux = new CliProcess(['--embedded', '--listen', `127.0.0.1:${taken.port}`], { TMPDIR: tmp });
    try {
      await pgmux.waitFor('Ctrl-C stops pgmux');
      const admin = /psql "(postgresql:\/\/[^"]*\/pgmux)" -c "SHOW POOLS"/.exec(pgmux.output);
      const metrics = /curl (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(pgmux.output);
      expect(admin, pgmux.output).not.toBeNull();
      expect(metrics, pgmux.output).not.toBeNull();
      expect(await psql(admin![1], 'SHOW POOLS')).toBeDefined();
      expect(await psql(admin![1], 'SHOW VERSION')).toMatch(/^pgmux/);
      const res = await fetch(metrics![1]);
      expect(res.status).toBe(200);
      expect(await res.text()).toContain('pgmux_clients');
      pgmux.signal('SIGINT');
      expect((await pgmux.exited).code).toBe(0);
    } finally {
      await pgmux.kill();
    }
  });
});
