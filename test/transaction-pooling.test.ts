import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import { backendsOf, onPrimary, readResultSlowly, sleep, startPgmux, trustSettings, type RunningPgmux } from './helpers/pgmux.ts';
import { RawClient, pgbench, psql } from './helpers/clients.ts';
import { SYNC, buildParse } from '../src/protocol/extended.ts';
import { getCluster } from './cluster-context.ts';

/** Backends of role app on the primary that serve database appdb through pgmux. */
async function appBackends(): Promise<number> {
  return backendsOf('app');
}

describe('transaction pooling', () => {
  let pgmux: RunningPgmux;
  beforeAll(async () => {
    pgmux = await startPgmux({ pool_mode: 'transaction', default_pool_size: 5 });
    await onPrimary(
      `DROP TABLE IF EXISTS tx_items; CREATE TABLE tx_items (id int PRIMARY KEY, owner text);
       GRANT ALL ON tx_items TO app;
       DROP SCHEMA IF EXISTS alpha CASCADE; DROP SCHEMA IF EXISTS beta CASCADE;
       CREATE SCHEMA alpha AUTHORIZATION app; CREATE SCHEMA beta AUTHORIZATION app;`,
      [],
      'appdb',
    );
  });
  afterAll(async () => {
    await pgmux.stop();
    await sleep(100);
  });

  it('five sequential psql sessions reuse one backend', async () => {
    const pids = new Set<string>();
    for (let i = 0; i < 5; i++) pids.add(await psql(pgmux.url(), 'SELECT pg_backend_pid()'));
    expect(pids.size).toBe(1);
  });

  it('10 concurrent clients x 3 queries are served by at most 5 backends, several clients sharing one', async () => {
    const byClient = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const c = new pg.Client({ connectionString: pgmux.url() });
        await c.connect();
        const pids: number[] = [];
        for (let q = 0; q < 3; q++) {
          pids.push((await c.query('SELECT pg_backend_pid() AS pid, pg_sleep(0.02)')).rows[0].pid);
        }
        await c.end();
        return pids;
      }),
    );
    const all = new Set(byClient.flat());
    expect(all.size).toBeLessThanOrEqual(5);
    const clientsPerPid = new Map<number, number>();
    for (const pids of byClient) for (const p of new Set(pids)) clientsPerPid.set(p, (clientsPerPid.get(p) ?? 0) + 1);
    expect(Math.max(...clientsPerPid.values())).toBeGreaterThan(1);
    expect(await appBackends()).toBeLessThanOrEqual(5);
  });

  it('an idle client holds no server connection; a transaction holds one until it ends', async () => {
    const a = new pg.Client({ connectionString: pgmux.url() });
    const b = new pg.Client({ connectionString: pgmux.url() });
    await a.connect();
    await b.connect();
    await a.query('BEGIN');
    const inTx = (await a.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const other = (await b.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    expect(other).not.toBe(inTx);
    expect((await a.query('SELECT pg_backend_pid() AS pid')).rows[0].pid).toBe(inTx);
    await a.query('COMMIT');
    await a.end();
    await b.end();
  });

  it("parameters stay each client's own across 1000 alternating transactions on one server connection", async () => {
    const one = await startPgmux({ pool_mode: 'transaction', default_pool_size: 1 });
    try {
      const alpha = new pg.Client({
        connectionString: `${one.url()}?application_name=alpha`,
        options: '-c TimeZone=UTC -c DateStyle=ISO,DMY -c statement_timeout=1111',
      } as pg.ClientConfig);
      const beta = new pg.Client({
        connectionString: `${one.url()}?application_name=beta`,
        options: '-c TimeZone=America/New_York -c DateStyle=SQL,MDY -c lock_timeout=2222',
      } as pg.ClientConfig);
      const plain = new pg.Client({ connectionString: one.url() });
      await Promise.all([alpha.connect(), beta.connect(), plain.connect()]);
      await alpha.query('SET search_path = alpha, public');
      await beta.query("SET search_path TO beta; SET intervalstyle = 'iso_8601'");
      const sql = `SELECT current_setting('application_name') AS app, current_setting('TimeZone') AS tz,
        current_setting('DateStyle') AS ds, current_setting('search_path') AS sp,
        current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt,
        current_setting('IntervalStyle') AS iv, pg_backend_pid() AS pid`;
      const pids = new Set<number>();
      for (let i = 0; i < 500; i++) {
        const [a, b, p] = await Promise.all([alpha.query(sql), beta.query(sql), i % 50 === 0 ? plain.query(sql) : null]);
        const ra = a.rows[0];
        const rb = b.rows[0];
        pids.add(ra.pid).add(rb.pid);
        expect([ra.app, ra.tz, ra.ds, ra.sp, ra.st, ra.lt, ra.iv]).toEqual(['alpha', 'UTC', 'ISO, DMY', 'alpha, public', '1111ms', '0', 'postgres']);
        expect([rb.app, rb.tz, rb.ds, rb.sp, rb.st, rb.lt, rb.iv]).toEqual(['beta', 'America/New_York', 'SQL, MDY', 'beta', '0', '2222ms', 'iso_8601']);
        if (p !== null) {
          // The first client's values never show through to a client that set none.
          const rp = p.rows[0];
          expect([rp.app, rp.tz, rp.sp, rp.st, rp.lt, rp.iv]).toEqual(['', getDefaultTimeZone(), '"$user", public', '0', '0', 'postgres']);
        }
      }
      expect(pids.size).toBe(1);
      await Promise.all([alpha.end(), beta.end(), plain.end()]);
    } finally {
      await one.stop();
    }
  });

  it('a row of 64 MB goes through whole, in both directions', async () => {
    const c = new pg.Client({ connectionString: pgmux.url() });
    await c.connect();
    const halves = 32 * 1024 * 1024 + 5;
    const r = await c.query({ name: 'big', text: 'SELECT repeat($1, $2::int) AS big, md5(repeat($1, $2::int)) AS sum', values: ['xy', halves] });
    expect(r.rows[0].big.length).toBe(halves * 2);
    expect((await c.query('SELECT md5($1) AS sum', [r.rows[0].big])).rows[0].sum).toBe(r.rows[0].sum);
    await c.end();
  });

  it('a result read slowly arrives intact, and the connection serves the next client after it', async () => {
    const one = await startPgmux({ pool_mode: 'transaction', default_pool_size: 1 });
    try {
      const a = new pg.Client({ connectionString: one.url() });
      const b = new pg.Client({ connectionString: one.url() });
      await a.connect();
      await b.connect();
      const slow = await readResultSlowly(a);
      expect(slow.got).toBe(slow.want);
      // The one server connection went back to the pool for b.
      expect((await b.query('SELECT 41 + 1 AS x')).rows[0].x).toBe(42);
      await a.end();
      await b.end();
    } finally {
      await one.stop();
    }
  });

  it('a SET inside a rolled-back transaction does not stick; SET LOCAL never does', async () => {
    const c = new pg.Client({ connectionString: pgmux.url() });
    await c.connect();
    await c.query('BEGIN');
    await c.query('SET search_path = beta');
    await c.query('ROLLBACK');
    await c.query('BEGIN');
    await c.query('SET LOCAL search_path = alpha');
    await c.query('COMMIT');
    for (let i = 0; i < 20; i++) {
      expect((await c.query("SELECT current_setting('search_path') AS sp")).rows[0].sp).toBe('"$user", public');
    }
    await c.end();
  });

  it('pgbench -M prepared and -M extended, 50 clients over a pool of 10: no failures', async () => {
    const ten = await startPgmux({ pool_mode: 'transaction', default_pool_size: 10, max_client_conn: 200 });
    try {
      const c = getCluster();
      const url = ten.url();
      await onPrimary('DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history', [], 'appdb');
      await pgbench(['-i', '-s', '1', '-q', `postgresql://${c.superuser}:${encodeURIComponent(c.superuserPassword)}@${c.primary.host}:${c.primary.port}/appdb`]);
      await onPrimary('GRANT ALL ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO app', [], 'appdb');
      for (const mode of ['prepared', 'extended']) {
        const r = await pgbench(['-M', mode, '-c', '50', '-j', '2', '-T', '10', '-n', url]);
        expect(r.failed, r.stdout + r.stderr).toBe(0);
        expect(r.processed).toBeGreaterThan(100);
        expect(await appBackends()).toBeLessThanOrEqual(10 + 5);
      }
    } finally {
      await ten.stop();
    }
  }, 60_000);

  it('node-postgres named statements and postgres.js prepared statements move between connections', async () => {
    const clients = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const c = new pg.Client({ connectionString: pgmux.url() });
        await c.connect();
        return c;
      }),
    );
    for (let round = 0; round < 20; round++) {
      const rows = await Promise.all(
        clients.map((c, i) => c.query({ name: `stmt_${i % 3}`, text: `SELECT $1::int + ${i % 3} AS v, pg_backend_pid() AS pid`, values: [round] })),
      );
      rows.forEach((r, i) => expect(r.rows[0].v).toBe(round + (i % 3)));
    }
    await Promise.all(clients.map((c) => c.end()));

    const sql = postgres(pgmux.url(), { max: 4 });
    try {
      for (let round = 0; round < 10; round++) {
        const got = await Promise.all(Array.from({ length: 20 }, (_, i) => sql`SELECT ${i}::int * ${round}::int AS v`));
        got.forEach((r, i) => expect(r[0].v).toBe(i * round));
      }
      // An error in the middle of a pipeline fails that query alone.
      const results = await Promise.allSettled([
        sql`SELECT 1 AS v`,
        sql`SELECT 1 / ${0}::int AS v`,
        sql`SELECT 3 AS v`,
      ]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      expect((results[1] as PromiseRejectedResult).reason.code).toBe('22012');
      expect(((results[2] as PromiseFulfilledResult<postgres.RowList<postgres.Row[]>>).value)[0].v).toBe(3);
      await sql.begin(async (tx) => {
        await tx`INSERT INTO tx_items VALUES (1, 'postgres.js') ON CONFLICT (id) DO NOTHING`;
      });
      expect((await sql`SELECT owner FROM tx_items WHERE id = 1`)[0].owner).toBe('postgres.js');
    } finally {
      await sql.end();
    }
  });

  it('a statement name unknown to the client gets 26000, a duplicate 42P05, and the connection goes on', async () => {
    const raw = await startPgmux({ ...trustSettings(), pool_mode: 'transaction', default_pool_size: 1 });
    try {
      const c = await RawClient.login(raw.port, 'app', 'appdb');
      const parse = (name: string, sql: string) => buildParse(name, Buffer.concat([Buffer.from(sql + '\0'), Buffer.from([0, 0])]));
      const bind = (stmt: string) => {
        const body = Buffer.concat([Buffer.from('\0' + stmt + '\0'), Buffer.from([0, 0, 0, 0, 0, 0])]);
        const head = Buffer.alloc(5);
        head[0] = 0x42;
        head.writeInt32BE(body.length + 4, 1);
        return Buffer.concat([head, body]);
      };
      const execute = Buffer.from([0x45, 0, 0, 0, 9, 0, 0, 0, 0, 0]);
      c.write(Buffer.concat([bind('never_prepared'), execute, SYNC]));
      await c.until((m) => m.type === 'Z');
      expect(c.messages.map((m) => m.type)).toEqual(['E', 'Z']);
      expect(c.errorCode()).toBe('26000');
      c.messages.length = 0;
      c.write(Buffer.concat([parse('s1', 'SELECT 1'), SYNC, parse('s1', 'SELECT 2'), bind('s1'), execute, SYNC]));
      await c.until((m) => m.type === 'Z' && c.messages.filter((x) => x.type === 'Z').length === 2);
      expect(c.messages.map((m) => m.type)).toEqual(['1', 'Z', 'E', 'Z']);
      expect(c.errorCode()).toBe('42P05');
      c.messages.length = 0;
      c.write(Buffer.concat([bind('s1'), execute, SYNC]));
      await c.until((m) => m.type === 'Z');
      expect(c.messages.map((m) => m.type)).toEqual(['2', 'D', 'C', 'Z']);
      expect(c.messages[1].body.subarray(6).toString()).toBe('1');
      c.close();
    } finally {
      await raw.stop();
    }
  });

  it('a client that leaves mid-transaction leaves a connection that is rolled back and reused', async () => {
    const before = await appBackends();
    const c = new pg.Client({ connectionString: pgmux.url() });
    c.on('error', () => {});
    await c.connect();
    await c.query('BEGIN');
    await c.query("INSERT INTO tx_items VALUES (99, 'left behind')");
    const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    await sleep(300);
    expect((await onPrimary('SELECT count(*)::int AS n FROM tx_items WHERE id = 99', [], 'appdb'))[0].n).toBe(0);
    const state = await onPrimary<{ state: string }>('SELECT state FROM pg_stat_activity WHERE pid = $1', [pid]);
    expect(state[0]?.state).toBe('idle');
    expect(await appBackends()).toBeLessThanOrEqual(Math.max(before, 5));
  });
});

describe('statement pooling', () => {
  it('serves single statements and refuses transaction blocks with a clear error', async () => {
    const pgmux = await startPgmux({ pool_mode: 'statement', default_pool_size: 2 });
    try {
      const c = new pg.Client({ connectionString: pgmux.url() });
      await c.connect();
      expect((await c.query('SELECT 1 AS one')).rows[0].one).toBe(1);
      await expect(c.query('BEGIN')).rejects.toMatchObject({ code: '0A000', message: expect.stringContaining('statement pooling') });
      expect((await c.query('SELECT 2 AS two')).rows[0].two).toBe(2);
      await c.end();
    } finally {
      await pgmux.stop();
    }
  });
});

let defaultTimeZone: string | undefined;
function getDefaultTimeZone(): string {
  return defaultTimeZone!;
}

beforeAll(async () => {
  defaultTimeZone = (await onPrimary<{ tz: string }>("SELECT current_setting('TimeZone') AS tz"))[0].tz;
});
