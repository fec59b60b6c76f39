import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import postgres from 'postgres';
import { onPrimary, sleep, startPgmux, type RunningPgmux } from './helpers/pgmux.ts';
import { psql, psqlScript } from './helpers/clients.ts';
import { tempDir } from './helpers/temp.ts';

describe('real clients through pgmux behave as they do directly', () => {
  let pgmux: RunningPgmux;
  beforeAll(async () => {
    pgmux = await startPgmux({ default_pool_size: 5 });
    await onPrimary('DROP TABLE IF EXISTS copy_rt; CREATE TABLE copy_rt (id int, label text, at timestamptz); GRANT ALL ON copy_rt TO app', [], 'appdb');
  });
  afterAll(async () => {
    await pgmux.stop();
    await sleep(100);
  });

  it('node-postgres: simple and extended protocol, notices, errors and multiple statements', async () => {
    const client = new pg.Client({ connectionString: pgmux.url() });
    await client.connect();
    const notices: string[] = [];
    client.on('notice', (n) => notices.push(n.message ?? ''));
    expect((await client.query('SELECT 1 AS a; SELECT 2 AS b') as unknown as pg.QueryResult[]).map((r) => r.rows[0])).toEqual([{ a: 1 }, { b: 2 }]);
    expect((await client.query('SELECT $1::int + $2::int AS sum', [40, 2])).rows[0].sum).toBe(42);
    expect((await client.query({ name: 'named', text: 'SELECT $1::text AS t', values: ['x'] })).rows[0].t).toBe('x');
    expect((await client.query({ name: 'named', text: 'SELECT $1::text AS t', values: ['y'] })).rows[0].t).toBe('y');
    await client.query("DO $$ BEGIN RAISE NOTICE 'hello from the server'; END $$");
    expect(notices).toContain('hello from the server');
    await expect(client.query('SELECT 1/0')).rejects.toMatchObject({ code: '22012' });
    await expect(client.query('SELECT * FROM no_such_table')).rejects.toMatchObject({ code: '42P01' });
    await client.query('BEGIN');
    await expect(client.query('SELECT no_such_column')).rejects.toMatchObject({ code: '42703' });
    await expect(client.query('SELECT 1')).rejects.toMatchObject({ code: '25P02' });
    await client.query('ROLLBACK');
    expect((await client.query('SELECT 3 AS c')).rows[0].c).toBe(3);
    await client.end();
  });

  it('postgres.js: prepared statements, pipelining and transactions', async () => {
    const sql = postgres(pgmux.url(), { max: 1, onnotice: () => {} });
    try {
      const many = await Promise.all(Array.from({ length: 50 }, (_, i) => sql`SELECT ${i}::int AS i, repeat('z', ${i}) AS pad`));
      expect(many.map((r) => r[0].i)).toEqual(Array.from({ length: 50 }, (_, i) => i));
      const r = await sql.begin(async (tx) => {
        await tx`CREATE TEMP TABLE pj (x int)`;
        await tx`INSERT INTO pj SELECT generate_series(1, 10)`;
        return tx`SELECT sum(x)::int AS s FROM pj`;
      });
      expect(r[0].s).toBe(55);
      await expect(sql`SELECT 1/0`).rejects.toMatchObject({ code: '22012' });
      expect((await sql`SELECT 'after error' AS v`)[0].v).toBe('after error');
    } finally {
      await sql.end();
    }
  });

  it('a row of 64 MB and more goes through whole', async () => {
    const client = new pg.Client({ connectionString: pgmux.url() });
    await client.connect();
    const halves = 32 * 1024 * 1024 + 3; // 'ab' repeated: just over 64 MB
    const r = await client.query('SELECT repeat($1, $2::int) AS big, md5(repeat($1, $2::int)) AS sum', ['ab', halves]);
    expect(r.rows[0].big.length).toBe(halves * 2);
    const up = await client.query('SELECT md5($1) AS sum, length($1) AS n', [r.rows[0].big]);
    expect(up.rows[0].sum).toBe(r.rows[0].sum);
    await client.end();
  });

  it('COPY FROM STDIN and TO STDOUT of 100k rows round-trip byte for byte', async () => {
    const dir = await tempDir('pgmux-copy-');
    const src = path.join(dir, 'in.tsv');
    const out = path.join(dir, 'out.tsv');
    const lines: string[] = [];
    for (let i = 0; i < 100_000; i++) lines.push(`${i}\tlabel ${i} with tab\\t and ünïcödé\t2026-11-24 10:00:00+00`);
    await writeFile(src, lines.join('\n') + '\n');
    const r = await psqlScript(pgmux.url(), `SET TimeZone = 'UTC';\n\\copy copy_rt FROM '${src}'\n\\copy (SELECT * FROM copy_rt ORDER BY id) TO '${out}'\n`);
    expect(r.code, r.stderr).toBe(0);
    expect((await readFile(out)).equals(await readFile(src))).toBe(true);
    expect(await psql(pgmux.url(), 'SELECT count(*) FROM copy_rt')).toBe('100000');
  });

  it('COPY errors and pipelined extended-protocol batches keep the stream in step', async () => {
    const client = new pg.Client({ connectionString: pgmux.url() });
    await client.connect();
    await expect(client.query("COPY copy_rt FROM PROGRAM 'true'")).rejects.toMatchObject({ code: '42501' });
    const batch = await Promise.all(Array.from({ length: 200 }, (_, i) => client.query('SELECT $1::int * 2 AS d', [i])));
    expect(batch.map((b) => b.rows[0].d)).toEqual(Array.from({ length: 200 }, (_, i) => i * 2));
    await client.end();
  });
});
