import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { sleep, startPgmux, type RunningPgmux } from './helpers/pgmux.ts';

async function client(pgmux: RunningPgmux): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: pgmux.url() });
  await c.connect();
  return c;
}

async function value(c: pg.Client, sql: string): Promise<unknown> {
  const r = await c.query(sql);
  return Object.values(r.rows[0])[0];
}

/**
 * Each statement that leaves state on a server connection: the client that
 * ran it keeps finding it in later transactions, another client on the same
 * pool never sees it, and once the client leaves the connection is clean.
 */
describe('session state in transaction mode (on_session_state = pin)', () => {
  let pgmux: RunningPgmux;
  beforeAll(async () => {
    pgmux = await startPgmux({ pool_mode: 'transaction', default_pool_size: 2 });
  });
  afterAll(async () => {
    await pgmux.stop();
    await sleep(100);
  });

  const cases: { name: string; setup: string; mine: string; expectMine: unknown; theirs: string; expectTheirs: unknown }[] = [
    {
      name: 'LISTEN',
      setup: 'LISTEN pinned_channel',
      mine: 'SELECT array_to_string(array(SELECT pg_listening_channels()), \',\')',
      expectMine: 'pinned_channel',
      theirs: 'SELECT array_to_string(array(SELECT pg_listening_channels()), \',\')',
      expectTheirs: '',
    },
    {
      name: 'SQL PREPARE',
      setup: 'PREPARE answer AS SELECT 42',
      mine: 'EXECUTE answer',
      expectMine: 42,
      theirs: "SELECT count(*)::int FROM pg_prepared_statements WHERE name = 'answer'",
      expectTheirs: 0,
    },
    {
      name: 'DECLARE ... WITH HOLD',
      setup: 'BEGIN; DECLARE held CURSOR WITH HOLD FOR SELECT g FROM generate_series(7, 9) g; COMMIT',
      mine: 'FETCH 1 FROM held',
      expectMine: 7,
      theirs: "SELECT count(*)::int FROM pg_cursors WHERE name = 'held'",
      expectTheirs: 0,
    },
    {
      name: 'CREATE TEMP TABLE',
      setup: "CREATE TEMP TABLE scratch AS SELECT 'mine'::text AS v",
      mine: 'SELECT v FROM scratch',
      expectMine: 'mine',
      theirs: "SELECT count(*)::int FROM pg_class WHERE relname = 'scratch' AND relpersistence = 't' AND pg_table_is_visible(oid)",
      expectTheirs: 0,
    },
    {
      name: 'pg_advisory_lock',
      setup: 'SELECT pg_advisory_lock(4242)',
      mine: "SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
      expectMine: 1,
      theirs: "SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
      expectTheirs: 0,
    },
    {
      name: 'SET of an untracked parameter',
      setup: 'SET enable_seqscan = off',
      mine: "SELECT current_setting('enable_seqscan')",
      expectMine: 'off',
      theirs: "SELECT current_setting('enable_seqscan')",
      expectTheirs: 'on',
    },
  ];

  for (const c of cases) {
    it(`${c.name}: the state stays with its client and never reaches another`, async () => {
      const mine = await client(pgmux);
      const theirs = await client(pgmux);
      await mine.query(c.setup);
      for (let i = 0; i < 10; i++) {
        expect(await value(mine, c.mine)).toEqual(c.expectMine);
        if (c.name === 'DECLARE ... WITH HOLD') break; // a cursor is consumed by reading it
        expect(await value(theirs, c.theirs)).toEqual(c.expectTheirs);
      }
      expect(await value(theirs, c.theirs)).toEqual(c.expectTheirs);
      await mine.end();
      await sleep(100);
      // The pinned connection was reset before going back: nobody inherits it.
      const later = await Promise.all([client(pgmux), client(pgmux)]);
      for (const l of later) expect(await value(l, c.theirs)).toEqual(c.expectTheirs);
      await Promise.all([...later, theirs].map((l) => l.end()));
    });
  }

  it('a pinned client receives its notifications', async () => {
    const listener = await client(pgmux);
    const notifier = await client(pgmux);
    const got = new Promise<string>((resolve) => listener.on('notification', (n) => resolve(n.payload ?? '')));
    await listener.query('LISTEN news');
    await notifier.query("NOTIFY news, 'hello'");
    expect(await got).toBe('hello');
    await Promise.all([listener.end(), notifier.end()]);
  });
});

describe('session state in transaction mode (on_session_state = error)', () => {
  it('refuses state-keeping statements with a clear error and a hint, and goes on', async () => {
    const pgmux = await startPgmux({ pool_mode: 'transaction', default_pool_size: 2, on_session_state: 'error' });
    try {
      const c = await client(pgmux);
      for (const sql of ['LISTEN x', 'PREPARE p AS SELECT 1', 'CREATE TEMP TABLE t (a int)', 'SELECT pg_advisory_lock(1)', 'SET enable_seqscan = off']) {
        const err = await c.query(sql).then(
          () => null,
          (e: pg.DatabaseError) => e,
        );
        expect(err, sql).toMatchObject({ code: '0A000', message: expect.stringContaining('transaction pooling mode') });
        expect(err!.hint).toContain('session pooling');
      }
      // Tracked parameters and SET LOCAL are fine.
      await c.query("SET search_path = public; SET application_name = 'ok'");
      await c.query('BEGIN; SET LOCAL enable_seqscan = off; COMMIT');
      expect(await value(c, "SELECT current_setting('application_name')")).toBe('ok');
      await c.end();
    } finally {
      await pgmux.stop();
    }
  });
});
