import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { startPgmux, trustSettings, type RunningPgmux } from './helpers/pgmux.ts';
import { RawClient, psqlScript } from './helpers/clients.ts';
import { parseErrorFields, query } from '../src/protocol/messages.ts';

type PgErr = Error & { code?: string; severity?: string };

describe('admin console errors: ERROR while the console goes on, FATAL only when it closes', () => {
  let pgmux: RunningPgmux;
  let admin: pg.Client;
  beforeAll(async () => {
    pgmux = await startPgmux({ ...trustSettings(), admin_users: 'app', stats_users: 'other' });
    admin = new pg.Client({ connectionString: pgmux.url('app', 'pgmux') });
    await admin.connect();
    // A client of appdb, so the database is known.
    const c = new pg.Client({ connectionString: pgmux.url() });
    await c.connect();
    await c.end();
  });
  afterAll(async () => {
    await admin.end();
    await pgmux.stop();
    await rm(path.dirname(pgmux.server.currentConfig.auth_file!), { recursive: true, force: true });
  });

  const refused = async (sql: string): Promise<PgErr> => {
    const err = (await admin.query(sql).then(
      () => null,
      (e: PgErr) => e,
    )) as PgErr | null;
    expect(err, sql).not.toBeNull();
    // The same connection answers the next command.
    expect((await admin.query('SHOW VERSION')).rows).toHaveLength(1);
    return err!;
  };

  it('an unknown command or SHOW is an ERROR, and the console answers the next one', async () => {
    expect(await refused('SHOW NONSENSE')).toMatchObject({ code: '42601', severity: 'ERROR' });
    expect(await refused('DROP TABLE x')).toMatchObject({ code: '42601', severity: 'ERROR' });
  });

  it('PAUSE, RESUME, KILL and RECONNECT of an unknown database are errors naming it', async () => {
    for (const cmd of ['PAUSE', 'RESUME', 'KILL', 'RECONNECT']) {
      const err = await refused(`${cmd} nosuch`);
      expect(err, cmd).toMatchObject({ code: '3D000', severity: 'ERROR' });
      expect(err.message).toBe('no such database: nosuch');
    }
    // A known database still works, by database or (KILL, RECONNECT) endpoint name.
    await admin.query('PAUSE appdb');
    await admin.query('RESUME appdb');
    await admin.query('RECONNECT main');
    await admin.query('KILL appdb');
    await admin.query('RESUME appdb');
  });

  it('SET of a setting that does not exist is an unknown-setting error; one that exists but is fixed says so', async () => {
    const unknown = await refused('SET nosuch = 1');
    expect(unknown).toMatchObject({ code: '42704', severity: 'ERROR' });
    expect(unknown.message).toBe('unrecognized configuration parameter "nosuch"');
    expect(await refused('SET listen = x')).toMatchObject({ code: '55P02', severity: 'ERROR' });
    expect(await refused('SET default_pool_size = -1')).toMatchObject({ code: '22023', severity: 'ERROR' });
  });

  it('a stats user refused a command goes on too', async () => {
    const stats = new pg.Client({ connectionString: pgmux.url('other', 'pgmux') });
    await stats.connect();
    await expect(stats.query('RELOAD')).rejects.toMatchObject({ code: '42501', severity: 'ERROR' });
    expect((await stats.query('SHOW VERSION')).rows).toHaveLength(1);
    await stats.end();
  });

  it('every ErrorResponse of a console that stays open says ERROR', async () => {
    const c = await RawClient.login(pgmux.port, 'app', 'pgmux');
    for (const sql of ['SHOW NONSENSE', 'PAUSE nosuch', 'SET nosuch = 1', 'SET max_client_conn = x', 'KILL_CLIENT']) {
      c.messages.length = 0;
      c.write(query(sql));
      await c.until((m) => m.type === 'Z');
      const errors = c.messages.filter((m) => m.type === 'E').map((m) => parseErrorFields(m.body).get('V'));
      expect(errors, sql).toEqual(['ERROR']);
    }
    expect(c.closed).toBe(false);
    c.close();
  });

  it('the extended protocol ends the console with FATAL, and the connection closes right after', async () => {
    const c = await RawClient.login(pgmux.port, 'app', 'pgmux');
    const parse = Buffer.from([0x50, 0, 0, 0, 8, 0, 0, 0, 0, 0]);
    parse.writeInt32BE(parse.length - 1, 1);
    c.write(parse);
    await c.until(() => false, 3000).catch(() => null);
    expect(c.closed).toBe(true);
    expect(c.messages.filter((m) => m.type === 'E').map((m) => [parseErrorFields(m.body).get('V'), parseErrorFields(m.body).get('C')])).toEqual([['FATAL', '0A000']]);
  });

  it('SHOW HELP lists the commands in a NOTICE, as PgBouncer does', async () => {
    const notices: { message?: string; detail?: string }[] = [];
    const onNotice = (n: { message?: string; detail?: string }) => {
      notices.push(n);
    };
    admin.on('notice', onNotice);
    try {
      const r = await admin.query('SHOW HELP');
      expect(r.command).toBe('SHOW');
      expect(notices).toHaveLength(1);
      expect(notices[0].message).toBe('Console usage');
      for (const cmd of ['SHOW HELP|', 'STATS_AVERAGES', 'SET key = value', 'RELOAD', 'PAUSE [db]', 'RESUME [db]', 'KILL [db]', 'KILL_CLIENT id', 'DISABLE db', 'RECONNECT [db]', 'SUSPEND', 'WAIT_CLOSE [db]', 'SHUTDOWN']) {
        expect(notices[0].detail).toContain(cmd);
      }
    } finally {
      admin.off('notice', onNotice);
    }
    // psql shows it, and stats users may ask for it.
    const out = await psqlScript(pgmux.url('other', 'pgmux'), 'SHOW HELP;\n');
    expect(out.code).toBe(0);
    expect(out.stderr).toMatch(/NOTICE: {2}Console usage/);
  });
});
