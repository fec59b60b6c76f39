import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../src/config/load.ts';
import { getCluster } from './cluster-context.ts';
import { onPrimary, startPgmux, writeAuthFile } from './helpers/pgmux.ts';
import { psql } from './helpers/clients.ts';
import { tempDir } from './helpers/temp.ts';

/** A role only pgmux logs in as: clients never know its password. */
const FORCED = 'pgmux_forced_login';
const FORCED_PASSWORD = 'forced-secret-7';

beforeAll(async () => {
  await onPrimary(`DROP ROLE IF EXISTS ${FORCED}`);
  await onPrimary(`CREATE ROLE ${FORCED} LOGIN PASSWORD '${FORCED_PASSWORD}'`);
});

afterAll(async () => {
  await onPrimary(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [FORCED]);
  await onPrimary(`DROP ROLE IF EXISTS ${FORCED}`);
});

function endpoint(extra: Record<string, unknown>) {
  const c = getCluster();
  return { main: { nodes: [`postgresql://${c.primary.host}:${c.primary.port}`], ...extra } };
}

describe('forced user (user= and password= of a [databases] entry)', () => {
  it('logs in to the server as the forced user whoever the client is; the clients share its one pool', async () => {
    const pgmux = await startPgmux({ endpoints: endpoint({ user: FORCED, password: FORCED_PASSWORD }) });
    try {
      const who = 'SELECT current_user || \' \' || session_user || \' \' || pg_backend_pid()';
      const [user1, , pid1] = (await psql(pgmux.url('app'), who)).split(' ');
      const [user2, session2, pid2] = (await psql(pgmux.url('other'), who)).split(' ');
      expect(user1).toBe(FORCED);
      expect([user2, session2]).toEqual([FORCED, FORCED]);
      // Session mode: the second client got the connection the first gave back.
      expect(pid2).toBe(pid1);
      // The one pool is the forced user's: the server sees no other login of pgmux's.
      const logins = await onPrimary<{ usename: string }>(
        "SELECT DISTINCT usename FROM pg_stat_activity WHERE backend_type = 'client backend' AND usename IN ('app', 'other', $1)",
        [FORCED],
      );
      expect(logins.map((r) => r.usename)).toEqual([FORCED]);
      // Each client still proves who it is to pgmux.
      await expect(psql(pgmux.url('app', 'appdb', 'not-the-password'), 'SELECT 1')).rejects.toThrow(/password authentication failed for user "app"/);
    } finally {
      await pgmux.stop();
    }
  });

  it("without password=, the forced user's secret comes from the auth_file", async () => {
    const authFile = await writeAuthFile([`"${FORCED}" "${FORCED_PASSWORD}"`]);
    const pgmux = await startPgmux({ endpoints: endpoint({ user: FORCED }), auth_file: authFile });
    try {
      expect(await psql(pgmux.url('app'), 'SELECT current_user')).toBe(FORCED);
    } finally {
      await pgmux.stop();
    }
  });

  it('a wrong forced password is the server\'s refusal, given to the client', async () => {
    const pgmux = await startPgmux({ endpoints: endpoint({ user: FORCED, password: 'wrong' }) });
    try {
      const client = new pg.Client({ connectionString: pgmux.url('app') });
      await expect(client.connect()).rejects.toThrow(new RegExp(`password authentication failed for user "${FORCED}"`));
    } finally {
      await pgmux.stop();
    }
  });

  it('pgbouncer.ini: user= and password= load as the endpoint\'s user and password; password= alone is refused', async () => {
    const c = getCluster();
    const dir = await tempDir('pgmux-forced-');
    const file = path.join(dir, 'pgbouncer.ini');
    await writeFile(file, `[databases]\nappdb = host=${c.primary.host} port=${c.primary.port} user=${FORCED} password=${FORCED_PASSWORD}\n`);
    const { config } = await loadConfig([file], {});
    expect(config.endpoints.appdb).toMatchObject({ user: FORCED, password: FORCED_PASSWORD });
    await writeFile(file, `[databases]\nappdb = host=${c.primary.host} password=${FORCED_PASSWORD}\n`);
    const err = await loadConfig([file], {}).then(() => null, (e: Error) => e);
    expect(err?.message).toContain('endpoints.appdb.password: password is the password of user: set user too, or leave password out');
    expect(err?.message).not.toContain(FORCED_PASSWORD);
  });
});
