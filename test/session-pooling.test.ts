import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { backendsOf, onPrimary, readResultSlowly, sleep, startPgmux, trustSettings, type RunningPgmux } from './helpers/pgmux.ts';
import { pgbench, psql, psqlScript, RawClient } from './helpers/clients.ts';
import { query } from '../src/protocol/messages.ts';
import { createHash } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tempDir } from './helpers/temp.ts';

describe('session pooling', () => {
  let pgmux: RunningPgmux;
  beforeAll(async () => {
    pgmux = await startPgmux({ default_pool_size: 10, pool_mode: 'session' });
  });
  afterAll(async () => {
    await pgmux.stop();
    await sleep(100);
  });

  it('five sequential psql sessions reuse one backend', async () => {
    const pids = new Set<string>();
    for (let i = 0; i < 5; i++) pids.add(await psql(pgmux.url(), 'SELECT pg_backend_pid()'));
    expect(pids.size).toBe(1);
    expect(await backendsOf('app')).toBe(1);
  });

  it('a client sees none of the session state the previous client left', async () => {
    const a = await psqlScript(
      pgmux.url(),
      `SET statement_timeout = '42s';
       SET search_path = pg_catalog;
       CREATE TEMP TABLE leftover (x int);
       PREPARE leftover_stmt AS SELECT 1;
       SELECT pg_backend_pid();`,
    );
    expect(a.code, a.stderr).toBe(0);
    const b = await psqlScript(
      pgmux.url(),
      `SELECT pg_backend_pid();
       SHOW statement_timeout;
       SHOW search_path;
       SELECT count(*) FROM pg_prepared_statements;
       SELECT count(*) FROM pg_class WHERE relname = 'leftover';`,
    );
    expect(b.code, b.stderr).toBe(0);
    const [pid, timeout, searchPath, prepared, temp] = b.stdout.split('\n');
    expect(pid).toBe(a.stdout.split('\n').at(-1));
    expect(timeout).toBe('0');
    expect(searchPath).toBe('"$user", public');
    expect(prepared).toBe('0');
    expect(temp).toBe('0');
  });

  it('100 concurrent node-postgres clients share a pool of 10', async () => {
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, await backendsOf('app'));
        await sleep(20);
      }
    })();
    const results = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const client = new pg.Client({ connectionString: pgmux.url() });
        await client.connect();
        const r = await client.query('SELECT $1::int AS i, pg_sleep(0.02)', [i]);
        await client.end();
        return r.rows[0].i as number;
      }),
    );
    sampling = false;
    await sampler;
    expect(results.sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(10);
  });

  it('startup settings reach the server, and the next client does not inherit them', async () => {
    const url = `${pgmux.url()}?application_name=first&options=${encodeURIComponent('-c statement_timeout=1234 -c search_path=pg_catalog,public')}`;
    expect(await psql(url, "SELECT current_setting('application_name') || ' ' || current_setting('statement_timeout') || ' ' || current_setting('search_path')")).toBe(
      'first 1234ms pg_catalog,public',
    );
    expect(await psql(`${pgmux.url()}?application_name=second`, "SELECT current_setting('application_name') || ' ' || current_setting('statement_timeout')")).toBe('second 0');
  });

  it('a startup setting the server refuses gets the server\'s own error', async () => {
    const client = new pg.Client({ connectionString: pgmux.url(), options: '-c no_such_setting_at_all=1' } as pg.ClientConfig);
    await expect(client.connect()).rejects.toMatchObject({ code: '42704' });
    const bad = new pg.Client({ connectionString: pgmux.url(), options: '-c DateStyle=nonsense' } as pg.ClientConfig);
    await expect(bad.connect()).rejects.toMatchObject({ code: '22023' });
    expect(await psql(pgmux.url(), 'SELECT 1')).toBe('1');
  });

  it('a pooled server connection that dies is dropped and replaced', async () => {
    const before = await psql(pgmux.url(), 'SELECT pg_backend_pid()');
    await onPrimary('SELECT pg_terminate_backend($1::int)', [before]);
    await sleep(200);
    const after = await psql(pgmux.url(), 'SELECT pg_backend_pid()');
    expect(after).not.toBe(before);
    // And while in use: the client hears about it, the next one is served.
    const client = new pg.Client({ connectionString: pgmux.url() });
    await client.connect();
    client.on('error', () => {});
    const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    await onPrimary('SELECT pg_terminate_backend($1::int)', [pid]);
    await expect(client.query('SELECT 1')).rejects.toThrow();
    expect(await psql(pgmux.url(), 'SELECT 1')).toBe('1');
  });

  it('pgbench -S -C through pgmux: no failed transactions', async () => {
    const init = await pgbench(['-i', '-s', '1', '-q', pgmux.url()]);
    expect(init.stderr).toMatch(/done/);
    const run = await pgbench(['-S', '-C', '-c', '10', '-j', '2', '-T', '5', pgmux.url()]);
    expect(run.failed).toBe(0);
    expect(run.processed).toBeGreaterThan(100);
  });
});

describe('pool_mode = none', () => {
  it('gives each client its own server connection, closed with it, and runs pgbench -S -C', async () => {
    const pgmux = await startPgmux({ pool_mode: 'none' });
    try {
      const a = await psql(pgmux.url(), 'SELECT pg_backend_pid()');
      const b = await psql(pgmux.url(), 'SELECT pg_backend_pid()');
      expect(a).not.toBe(b);
      await sleep(200);
      expect(await backendsOf('app')).toBe(0);
      const url = `${pgmux.url()}?options=${encodeURIComponent('-c statement_timeout=777')}`;
      expect(await psql(url, 'SHOW statement_timeout')).toBe('777ms');
      const run = await pgbench(['-S', '-C', '-c', '10', '-j', '2', '-T', '5', pgmux.url()]);
      expect(run.failed).toBe(0);
      // Ran on: a connection per transaction (what it reaches is the
      // machine's business, and other tests may share its cores).
      expect(run.processed).toBeGreaterThan(10);
    } finally {
      await pgmux.stop();
    }
  });
});

describe('waiting for a server connection', () => {
  it('queues clients in order and ends the wait with query_wait_timeout', async () => {
    const pgmux = await startPgmux({ default_pool_size: 1, query_wait_timeout: 1 });
    try {
      const holder = new pg.Client({ connectionString: pgmux.url() });
      await holder.connect();
      const waiter = new pg.Client({ connectionString: pgmux.url() });
      const started = Date.now();
      await expect(waiter.connect()).rejects.toThrow(/query_wait_timeout/);
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      // Once the holder leaves, the next client gets the connection.
      const next = new pg.Client({ connectionString: pgmux.url() });
      const nextReady = next.connect();
      await sleep(100);
      await holder.end();
      await nextReady;
      expect((await next.query('SELECT 1 AS one')).rows[0].one).toBe(1);
      await next.end();
    } finally {
      await pgmux.stop();
    }
  });
});

describe('a client that leaves with work in flight', () => {
  it('leaves a connection that is drained before anyone else gets it', async () => {
    const pgmux = await startPgmux({ ...trustSettings(), default_pool_size: 1 });
    try {
      const a = await RawClient.login(pgmux.port, 'app', 'appdb');
      // Three pipelined queries, then gone before any answer arrives.
      a.write(Buffer.concat([query("SELECT pg_sleep(0.3), 'late-1'"), query("SELECT 'late-2'"), query("SELECT 'late-3'")]));
      await sleep(20);
      a.close();
      const b = new pg.Client({ connectionString: pgmux.url() });
      await b.connect();
      for (let i = 0; i < 20; i++) {
        const r = await b.query('SELECT $1::text AS v', [`mine-${i}`]);
        expect(r.rows).toEqual([{ v: `mine-${i}` }]);
      }
      await b.end();
    } finally {
      await pgmux.stop();
    }
  });

  it('rolls back an open transaction and resets before reuse', async () => {
    const pgmux = await startPgmux({ ...trustSettings(), default_pool_size: 1 });
    try {
      await onPrimary('DROP TABLE IF EXISTS left_open; CREATE TABLE left_open (x int); GRANT ALL ON left_open TO app');
      const a = await RawClient.login(pgmux.port, 'app', 'postgres');
      a.write(query('BEGIN; INSERT INTO left_open VALUES (1);'));
      await a.until((m) => m.type === 'Z');
      a.close();
      const b = new pg.Client({ connectionString: pgmux.url('app', 'postgres') });
      await b.connect();
      expect((await b.query('SELECT count(*)::int AS n FROM left_open')).rows[0].n).toBe(0);
      expect((await b.query("SELECT current_setting('transaction_isolation') AS t, txid_current_if_assigned() AS x")).rows[0].x).toBeNull();
      await b.end();
    } finally {
      await pgmux.stop();
    }
  });
});

describe('session pooling under backpressure', () => {
  let pgmux: RunningPgmux;
  beforeAll(async () => {
    pgmux = await startPgmux({ default_pool_size: 4, pool_mode: 'session' });
  });
  afterAll(async () => {
    await pgmux.stop();
    await sleep(100);
  });

  it('reads forwarded from reused buffers arrive intact when the other side stalls, both ways', async () => {
    // Server to client: a 40 MB result to a client that stops reading for a while.
    const c = new pg.Client({ connectionString: pgmux.url() });
    await c.connect();
    const slow = await readResultSlowly(c);
    expect(slow.got).toBe(slow.want);

    // Client to server: 24 MB of COPY data while the table is locked, so the
    // server stops reading and pgmux's writes to it wait.
    await c.query('DROP TABLE IF EXISTS copy_in; CREATE TABLE copy_in (n int, v text)');
    const locker = new pg.Client({ connectionString: pgmux.url() });
    await locker.connect();
    await locker.query('BEGIN; LOCK TABLE copy_in');
    const lines: string[] = [];
    for (let i = 0; i < 200_000; i++) lines.push(`${i}\t${createHash('md5').update(String(i)).digest('hex').repeat(3)}`);
    const file = path.join(await tempDir('pgmux-copy-'), 'in.tsv');
    await writeFile(file, lines.join('\n') + '\n');
    const copying = psql(pgmux.url(), `\\copy copy_in FROM '${file}'`);
    await sleep(700);
    await locker.query('COMMIT');
    await copying;
    const got = (await c.query("SELECT md5(string_agg(n || E'\\t' || v, E'\\n' ORDER BY n)) AS sum FROM copy_in")).rows[0].sum;
    expect(got).toBe(createHash('md5').update(lines.join('\n')).digest('hex'));
    await rm(file);
    await c.query('DROP TABLE copy_in');
    await locker.end();
    await c.end();
  });
});
