/**
 * What node-postgres and postgres.js rely on in transaction pooling, with
 * the libraries themselves: statements that change meaning under them,
 * DEALLOCATE ALL from one client, set_config.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import { onPrimary, sleep, startPgmux, type RunningPgmux } from './helpers/pgmux.ts';

describe('client libraries in transaction pooling over one server connection', () => {
  let pgmux: RunningPgmux;
  beforeAll(async () => {
    pgmux = await startPgmux({ pool_mode: 'transaction', default_pool_size: 1 });
    await onPrimary('DROP TABLE IF EXISTS lib_t; CREATE TABLE lib_t (v int); INSERT INTO lib_t VALUES (1); GRANT ALL ON lib_t TO app', [], 'appdb');
  });
  afterAll(async () => {
    await pgmux.stop();
    await onPrimary('DROP TABLE IF EXISTS lib_t', [], 'appdb');
    await sleep(100);
  });

  it('postgres.js: a table re-created with another column type is read with its new type by a new client', async () => {
    const first = postgres(pgmux.url(), { max: 1, onnotice: () => {} });
    expect((await first`SELECT v FROM lib_t`)[0].v).toBe(1);
    await first.end();
    await onPrimary("DROP TABLE lib_t; CREATE TABLE lib_t (v text); INSERT INTO lib_t VALUES ('one'); GRANT ALL ON lib_t TO app", [], 'appdb');
    const second = postgres(pgmux.url(), { max: 1, onnotice: () => {} });
    try {
      expect((await second`SELECT v FROM lib_t`)[0].v).toBe('one');
    } finally {
      await second.end();
    }
    // A client that prepared before the change recovers as it would
    // directly: postgres.js prepares again after PostgreSQL's 0A000.
    const keeper = postgres(pgmux.url(), { max: 1, onnotice: () => {} });
    try {
      expect((await keeper`SELECT v FROM lib_t`)[0].v).toBe('one');
      await onPrimary('ALTER TABLE lib_t ALTER COLUMN v TYPE varchar(10)', [], 'appdb');
      expect((await keeper`SELECT v FROM lib_t`)[0].v).toBe('one');
    } finally {
      await keeper.end();
    }
  });

  it("node-postgres: one client's DEALLOCATE ALL ends its own named statements and nobody else's", async () => {
    const a = new pg.Client({ connectionString: pgmux.url() });
    const b = new pg.Client({ connectionString: pgmux.url() });
    await a.connect();
    await b.connect();
    try {
      const q = { name: 'shared', text: 'SELECT $1::int + 1 AS n', values: [1] };
      expect((await a.query(q)).rows[0].n).toBe(2);
      expect((await b.query(q)).rows[0].n).toBe(2);
      await a.query('DEALLOCATE ALL');
      // b's statement is still b's: PostgreSQL would not have touched it.
      for (let i = 0; i < 3; i++) expect((await b.query({ ...q, values: [i] })).rows[0].n).toBe(i + 1);
      // a's is gone, as directly: node-postgres still thinks it is
      // prepared, so its Bind gets PostgreSQL's 26000 with a's own name.
      await expect(a.query(q)).rejects.toMatchObject({ code: '26000', message: 'prepared statement "shared" does not exist' });
      expect((await a.query('SELECT 5 AS five')).rows[0].five).toBe(5);
    } finally {
      await a.end();
      await b.end();
    }
  });

  it('node-postgres: set_config(…, false) stays with the client that called it and reaches no one else', async () => {
    const a = new pg.Client({ connectionString: pgmux.url() });
    await a.connect();
    try {
      await a.query("SELECT set_config('search_path', 'pg_catalog, public', false)");
      await a.query("SELECT set_config('work_mem', '1234kB', false)");
      const fresh = new pg.Client({ connectionString: pgmux.url() });
      await fresh.connect();
      try {
        expect((await fresh.query('SHOW search_path')).rows[0].search_path).toBe('"$user", public');
        expect((await fresh.query('SHOW work_mem')).rows[0].work_mem).toBe('4MB');
      } finally {
        await fresh.end();
      }
      expect((await a.query('SHOW search_path')).rows[0].search_path).toBe('pg_catalog, public');
      expect((await a.query('SHOW work_mem')).rows[0].work_mem).toBe('1234kB');
    } finally {
      await a.end();
    }
  });
});
