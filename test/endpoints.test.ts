import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { LocalCluster } from '../src/embedded/cluster.ts';
import { ConfigSchema } from '../src/config/schema.ts';
import { sleep, startPgmux, type RunningPgmux } from './helpers/pgmux.ts';
import { psql } from './helpers/clients.ts';
import { makeTestCerts, type TestCerts } from './helpers/tls.ts';
import { getCluster } from './cluster-context.ts';

const password = () => getCluster().roles.app.password;

/** A cluster with role app, database appdb and a marker table naming it. */
async function computeNamed(name: string, settings: Record<string, string> = {}): Promise<LocalCluster> {
  const c = await LocalCluster.start({ settings });
  await c.query(`CREATE ROLE app LOGIN PASSWORD '${password()}'`);
  await c.query('CREATE DATABASE appdb OWNER app');
  const admin = new pg.Client({ connectionString: c.url(c.primary, c.superuser, undefined, 'appdb') });
  await admin.connect();
  await admin.query(`CREATE TABLE marker (name text); INSERT INTO marker VALUES ('${name}'); GRANT SELECT ON marker TO app`);
  await admin.end();
  return c;
}

const nodeUrl = (c: LocalCluster) => `postgresql://${c.primary.host}:${c.primary.port}`;

describe('endpoints over two clusters', () => {
  let a: LocalCluster;
  let b: LocalCluster;
  let certs: TestCerts;
  let pgmux: RunningPgmux;
  let controlPlane: http.Server;
  let cpUp = true;
  let cpRequests = 0;

  beforeAll(async () => {
    certs = await makeTestCerts(['*.db.example.com']);
    [a, b] = await Promise.all([computeNamed('A'), computeNamed('B')]);
    controlPlane = http.createServer((req, res) => {
      cpRequests++;
      const name = new URL(req.url!, 'http://x').searchParams.get('endpoint');
      if (!cpUp) {
        res.writeHead(503).end();
        return;
      }
      if (name === 'ep-dyn') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ nodes: [nodeUrl(b)] }));
        return;
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => controlPlane.listen(0, '127.0.0.1', r));
    pgmux = await startPgmux({
      endpoints: { 'ep-a': { nodes: [nodeUrl(a)] }, 'ep-b': { nodes: [`${nodeUrl(b)}/appdb`] } },
      default_endpoint: 'ep-a',
      default_pool_size: 3,
      users: { app: { password: password() } },
      client_tls_sslmode: 'prefer',
      client_tls_cert_file: certs.certFile,
      client_tls_key_file: certs.keyFile,
      sni_domain: 'db.example.com',
      control_plane_url: `http://127.0.0.1:${(controlPlane.address() as AddressInfo).port}/endpoints`,
      control_plane_cache_ttl: 0.5,
      control_plane_retries: 1,
    });
  }, 120_000);

  afterAll(async () => {
    await pgmux?.stop();
    controlPlane?.close();
    await Promise.all([a?.stop(), b?.stop()]);
  });

  const url = (endpoint?: string, database = 'appdb') =>
    `postgresql://app:${encodeURIComponent(password())}@127.0.0.1:${pgmux.port}/${database}${endpoint ? `?options=${encodeURIComponent(`endpoint=${endpoint}`)}` : ''}`;

  it('sends each endpoint to its own cluster and reuses one pooled connection per endpoint', async () => {
    const pids = { A: new Set<string>(), B: new Set<string>() };
    for (let i = 0; i < 5; i++) {
      expect(await psql(url('ep-a'), 'SELECT name FROM marker')).toBe('A');
      expect(await psql(url('ep-b'), 'SELECT name FROM marker')).toBe('B');
      pids.A.add(await psql(url('ep-a'), 'SELECT pg_backend_pid()'));
      pids.B.add(await psql(url('ep-b'), 'SELECT pg_backend_pid()'));
    }
    expect(pids.A.size).toBe(1);
    expect(pids.B.size).toBe(1);
  });

  it('keeps 20 clients with interleaved A and B traffic isolated', async () => {
    const wrong: string[] = [];
    await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const want = i % 2 === 0 ? 'A' : 'B';
        const c = new pg.Client({ connectionString: url(want === 'A' ? 'ep-a' : 'ep-b') });
        await c.connect();
        for (let q = 0; q < 20; q++) {
          const got = (await c.query('SELECT name FROM marker')).rows[0].name;
          if (got !== want) wrong.push(`${i}:${got}`);
        }
        await c.end();
      }),
    );
    expect(wrong).toEqual([]);
  });

  it('chooses by database name and by default_endpoint; unknown names get a clear FATAL', async () => {
    // A database named like an endpoint: that endpoint, and the database its URL names.
    expect(await psql(url(undefined, 'ep-b'), 'SELECT name FROM marker')).toBe('B');
    expect(await psql(url(), 'SELECT name FROM marker')).toBe('A');
    await expect(psql(url('ep-zzz'), 'SELECT 1')).rejects.toThrow(/endpoint "ep-zzz" does not exist/);
    await expect(psql(url('ep-a', 'ep-b'), 'SELECT 1')).rejects.toThrow(/disagree/);
  });

  it('takes the endpoint from the TLS server name, with psql verifying the certificate', async () => {
    const conn = (host: string, extra = '') =>
      `host=${host} hostaddr=127.0.0.1 port=${pgmux.port} user=app password=${password()} dbname=appdb sslmode=verify-full sslrootcert=${certs.caFile} ${extra}`;
    expect(await psql(conn('ep-b.db.example.com'), 'SELECT name FROM marker')).toBe('B');
    expect(await psql(conn('ep-a.db.example.com'), 'SELECT name FROM marker')).toBe('A');
    expect(await psql(conn('ep-b.db.example.com'), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).toBe('f');
    await expect(psql(conn('ep-a.db.example.com', 'options=endpoint=ep-b'), 'SELECT 1')).rejects.toThrow(/disagree/);
    await expect(psql(conn('ep-nope.db.example.com'), 'SELECT 1')).rejects.toThrow(/endpoint "ep-nope" does not exist/);
  });

  it('asks the control plane for unknown endpoints, caches, and serves a known one through an outage', async () => {
    const before = cpRequests;
    // With worker processes each worker caches what it asked (docs/scaling.md):
    // enough clients that every worker gets some, and one request per worker.
    // At once, within the cache's TTL; a worker asks once for clients that come together.
    const workers = Number(process.env.PGMUX_TEST_WORKERS ?? '1');
    if (workers > 1) expect(await Promise.all(Array.from({ length: 10 }, () => psql(url('ep-dyn'), 'SELECT name FROM marker')))).toEqual(Array(10).fill('B'));
    else for (let i = 0; i < 2; i++) expect(await psql(url('ep-dyn'), 'SELECT name FROM marker')).toBe('B');
    expect(cpRequests - before).toBeGreaterThanOrEqual(1);
    expect(cpRequests - before).toBeLessThanOrEqual(workers);
    await expect(psql(url('ep-unknown-to-all'), 'SELECT 1')).rejects.toThrow(/does not exist/);
    cpUp = false;
    await sleep(600); // past the cache TTL
    expect(await psql(url('ep-dyn'), 'SELECT name FROM marker')).toBe('B');
    cpUp = true;
  });

  it('reloads endpoints: a new one appears, a removed one refuses new clients while its clients finish', async () => {
    const held = new pg.Client({ connectionString: url('ep-b') });
    await held.connect();
    const next = ConfigSchema.parse({
      ...pgmux.server.currentConfig,
      endpoints: { 'ep-a': { nodes: [nodeUrl(a)] }, 'ep-c': { nodes: [nodeUrl(b)] } },
    });
    await pgmux.server.reload(next);
    expect(await psql(url('ep-c'), 'SELECT name FROM marker')).toBe('B');
    await expect(psql(url('ep-b'), 'SELECT 1')).rejects.toThrow(/endpoint "ep-b" does not exist/);
    expect((await held.query('SELECT name FROM marker')).rows[0].name).toBe('B');
    await held.end();
    expect(await psql(url('ep-a'), 'SELECT name FROM marker')).toBe('A');
  });
});

describe('TLS', () => {
  let certs: TestCerts;
  beforeAll(async () => {
    certs = await makeTestCerts([]);
  });

  it('client_tls_sslmode = require: psql with sslmode=require works, a plaintext client is refused', async () => {
    const pgmux = await startPgmux({ client_tls_sslmode: 'require', client_tls_cert_file: certs.certFile, client_tls_key_file: certs.keyFile });
    try {
      expect(await psql(`${pgmux.url()}?sslmode=require`, 'SELECT 1')).toBe('1');
      expect(await psql(`${pgmux.url()}?sslmode=verify-full&sslrootcert=${certs.caFile}`, 'SELECT 2')).toBe('2');
      await expect(psql(`${pgmux.url()}?sslmode=disable`, 'SELECT 1')).rejects.toThrow(/SSL required/);
    } finally {
      await pgmux.stop();
    }
  });

  it('server_tls_sslmode = verify-full reaches a PostgreSQL with ssl = on; require fails against one without', async () => {
    const secure = await LocalCluster.start({ settings: { ssl: 'on', ssl_cert_file: certs.certFile, ssl_key_file: certs.keyFile } });
    try {
      await secure.query(`CREATE ROLE app LOGIN PASSWORD '${password()}'`);
      await secure.query('CREATE DATABASE appdb OWNER app');
      const pgmux = await startPgmux({
        endpoints: { main: { nodes: [nodeUrl(secure)] } },
        users: { app: { password: password() } },
        server_tls_sslmode: 'verify-full',
        server_tls_ca_file: certs.caFile,
      });
      try {
        expect(await psql(pgmux.url(), 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).toBe('t');
      } finally {
        await pgmux.stop();
      }
      const plain = await startPgmux({ server_tls_sslmode: 'require' });
      try {
        await expect(psql(plain.url(), 'SELECT 1')).rejects.toThrow(/does not support SSL/);
      } finally {
        await plain.stop();
      }
    } finally {
      await secure.stop();
    }
  }, 60_000);
});
