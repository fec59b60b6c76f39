import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig } from '../src/config/load.ts';
import { ConfigSchema } from '../src/config/schema.ts';
import { getCluster } from './cluster-context.ts';
import { onPrimary, startPgmux } from './helpers/pgmux.ts';
import { psql } from './helpers/clients.ts';
import { tempDir } from './helpers/temp.ts';

/**
 * A role that can read secrets only through a SECURITY DEFINER function, as
 * PgBouncer's documentation recommends; the function exists in the
 * postgres database only, so auth_query must run there (auth_dbname).
 */
const AUTH_USER = 'pgmux_auth_lookup';
const AUTH_PASSWORD = 'auth-lookup-secret';
const LOOKUP = `SELECT * FROM pgmux_test_user_lookup($1)`;

beforeAll(async () => {
  await onPrimary(`DROP FUNCTION IF EXISTS pgmux_test_user_lookup(text)`);
  await onPrimary(`DROP ROLE IF EXISTS ${AUTH_USER}`);
  await onPrimary(`CREATE ROLE ${AUTH_USER} LOGIN PASSWORD '${AUTH_PASSWORD}'`);
  await onPrimary(`CREATE FUNCTION pgmux_test_user_lookup(i_username text, OUT uname text, OUT phash text) RETURNS record AS $$
    SELECT rolname::text, rolpassword FROM pg_catalog.pg_authid WHERE rolname = i_username AND rolcanlogin
  $$ LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp`);
  await onPrimary(`REVOKE ALL ON FUNCTION pgmux_test_user_lookup(text) FROM public`);
  await onPrimary(`GRANT EXECUTE ON FUNCTION pgmux_test_user_lookup(text) TO ${AUTH_USER}`);
});

afterAll(async () => {
  await onPrimary(`DROP FUNCTION IF EXISTS pgmux_test_user_lookup(text)`);
  await onPrimary('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [AUTH_USER]);
  await onPrimary(`DROP ROLE IF EXISTS ${AUTH_USER}`);
});

/** An auth_file with the auth user's password only: every client is looked up by auth_query. */
async function authUserFile(): Promise<string> {
  const dir = await tempDir('pgmux-authq-');
  const file = path.join(dir, 'userlist.txt');
  await writeFile(file, `"${AUTH_USER}" "${AUTH_PASSWORD}"\n`, { mode: 0o600 });
  return file;
}

const node = (database: string) => {
  const c = getCluster();
  return `postgresql://${c.primary.host}:${c.primary.port}/${database}`;
};

describe('auth_user, auth_query and auth_dbname per database', () => {
  it('auth_dbname: auth_query runs in the database of the endpoint it names, not the client\'s', async () => {
    const endpoints = { appdb: { nodes: [node('appdb')] }, authdb: { nodes: [node('postgres')] } };
    const without = await startPgmux({ auth_file: await authUserFile(), auth_user: AUTH_USER, auth_query: LOOKUP, endpoints });
    try {
      // The function is not in appdb: the lookup fails there.
      await expect(psql(without.url('app', 'appdb'), 'SELECT 1')).rejects.toThrow(/could not look up credentials for user "app"/);
    } finally {
      await without.stop();
    }
    const pgmux = await startPgmux({ auth_file: await authUserFile(), auth_user: AUTH_USER, auth_query: LOOKUP, auth_dbname: 'authdb', endpoints });
    try {
      expect(await psql(pgmux.url('app', 'appdb'), 'SELECT current_user')).toBe('app');
      await expect(psql(pgmux.url('app', 'appdb', 'wrong'), 'SELECT 1')).rejects.toThrow(/password authentication failed for user "app"/);
    } finally {
      await pgmux.stop();
    }
  });

  it("an endpoint's own auth_user, auth_query and auth_dbname win over the global ones; other endpoints keep those", async () => {
    const pgmux = await startPgmux({
      auth_file: await authUserFile(),
      endpoints: {
        looked: { nodes: [node('appdb')], auth_user: AUTH_USER, auth_query: LOOKUP, auth_dbname: 'authdb' },
        plain: { nodes: [node('appdb')] },
        authdb: { nodes: [node('postgres')] },
      },
    });
    try {
      expect(await psql(pgmux.url('other', 'looked'), 'SELECT current_user')).toBe('other');
      // No global auth_user: a user who is not in the auth_file is unknown there.
      await expect(psql(pgmux.url('other', 'plain'), 'SELECT 1')).rejects.toThrow(/password authentication failed for user "other"/);
    } finally {
      await pgmux.stop();
    }
  });

  it('auth_dbname must name an endpoint (or a database of default_endpoint), and never the admin console', () => {
    const endpoints = { main: { nodes: [node('appdb')] } };
    const issues = (config: Record<string, unknown>) => ConfigSchema.safeParse(config).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];
    expect(issues({ endpoints, auth_dbname: 'nowhere' })).toEqual(['auth_dbname: authentication database "nowhere" is not configured: name an endpoint, or set default_endpoint to serve it']);
    expect(issues({ endpoints, auth_dbname: 'nowhere', default_endpoint: 'main' })).toEqual([]);
    expect(issues({ endpoints: { main: { ...endpoints.main, auth_dbname: 'pgbouncer' } } })).toEqual([
      `endpoints.main.auth_dbname: cannot use the admin console's database "pgbouncer" as auth_dbname`,
    ]);
  });

  it('pgbouncer.ini: auth_dbname, and auth_user, auth_query and auth_dbname of a [databases] entry, load', async () => {
    const dir = await tempDir('pgmux-authq-');
    const file = path.join(dir, 'pgbouncer.ini');
    await writeFile(
      file,
      [
        '[pgbouncer]',
        'auth_dbname = authdb',
        '[databases]',
        'authdb = host=127.0.0.1 dbname=postgres',
        `appdb = host=127.0.0.1 auth_user=${AUTH_USER} auth_dbname=authdb auth_query='SELECT * FROM lookup($1)'`,
      ].join('\n'),
    );
    const { config } = await loadConfig([file], {});
    expect(config.auth_dbname).toBe('authdb');
    expect(config.endpoints.appdb).toMatchObject({ auth_user: AUTH_USER, auth_dbname: 'authdb', auth_query: 'SELECT * FROM lookup($1)' });
  });
});
