import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { inWorkerProcesses, onPrimary, sleep, startPgmux, testWorkers, writeAuthFile, type RunningPgmux } from './helpers/pgmux.ts';
import { psql } from './helpers/clients.ts';
import { getCluster } from './cluster-context.ts';
import { md5Secret } from '../src/protocol/md5.ts';

async function connectError(url: string): Promise<{ code?: string; message: string; severity?: string }> {
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
  } catch (err) {
    return err as { code?: string; message: string; severity?: string };
  }
  await client.end();
  throw new Error('connection unexpectedly succeeded');
}

describe('client authentication', () => {
  let pgmux: RunningPgmux;
  beforeAll(async () => {
    pgmux = await startPgmux();
  });
  afterAll(async () => {
    await pgmux.stop();
    await sleep(100);
  });

  it('SCRAM with the verifier PostgreSQL stores, then logs in to the server without the password', async () => {
    expect(await psql(pgmux.url(), 'SELECT current_user')).toBe('app');
    expect(await psql(pgmux.url('other', 'postgres'), 'SELECT current_user')).toBe('other');
  });

  it('wrong password and unknown user get the same 28P01; others keep working', async () => {
    const healthy = new pg.Client({ connectionString: pgmux.url() });
    await healthy.connect();
    const wrong = await connectError(pgmux.url('app', 'appdb', 'not-the-password'));
    const unknown = await connectError(pgmux.url('nobody', 'appdb', 'whatever'));
    expect(wrong.code).toBe('28P01');
    expect(unknown.code).toBe('28P01');
    expect(wrong.message).toBe('password authentication failed for user "app"');
    expect(unknown.message).toBe('password authentication failed for user "nobody"');
    expect((await healthy.query('SELECT 1 AS ok')).rows[0].ok).toBe(1);
    await healthy.end();
  });

  it('unknown database: the server\'s 3D000 as a FATAL', async () => {
    const err = await connectError(pgmux.url('app', 'no_such_database'));
    expect(err.code).toBe('3D000');
    expect(err.message).toMatch(/database "no_such_database" does not exist/);
    expect(await psql(pgmux.url(), 'SELECT 1')).toBe('1');
  });
});

describe('other authentication methods', () => {
  it('md5 and cleartext password, from plaintext and md5 auth_file entries', async () => {
    const c = getCluster();
    const file = await writeAuthFile();
    const { writeFile } = await import('node:fs/promises');
    // 'app' as plaintext, 'other' as an md5 secret: both must still log in to a SCRAM server.
    await writeFile(file, `"app" "${c.roles.app.password}"\n"other" "${md5Secret('other', c.roles.other.password)}"\n`);
    for (const auth_type of ['md5', 'password', 'scram-sha-256'] as const) {
      const pgmux = await startPgmux({ auth_type, auth_file: file, users: { other: { password: c.roles.other.password } } });
      try {
        expect(await psql(pgmux.url(), 'SELECT current_user')).toBe('app');
        if (auth_type !== 'scram-sha-256') expect(await psql(pgmux.url('other', 'postgres'), 'SELECT current_user')).toBe('other');
        else expect((await connectError(pgmux.url('other', 'postgres'))).code).toBe('28P01'); // md5 secrets cannot answer SCRAM
        expect((await connectError(pgmux.url('app', 'appdb', 'wrong'))).code).toBe('28P01');
      } finally {
        await pgmux.stop();
      }
    }
  });

  it('auth_query looks users up through auth_user, caches them and refreshes after a failed login', async () => {
    const c = getCluster();
    await onPrimary("DROP ROLE IF EXISTS via_query; CREATE ROLE via_query LOGIN PASSWORD 'first-pass'");
    const file = await writeAuthFile([`"${c.superuser}" "${c.superuserPassword}"`]);
    const { writeFile } = await import('node:fs/promises');
    await writeFile(file, `"${c.superuser}" "${c.superuserPassword}"\n`);
    const pgmux = await startPgmux({ auth_file: file, auth_user: c.superuser, auth_cache_ttl: 3600 });
    try {
      expect(await psql(pgmux.url('via_query', 'postgres', 'first-pass'), 'SELECT current_user')).toBe('via_query');
      await onPrimary("ALTER ROLE via_query PASSWORD 'second-pass'");
      if (!inWorkerProcesses) {
        // Cached verifier: the new password fails once, which drops the cache entry…
        expect((await connectError(pgmux.url('via_query', 'postgres', 'second-pass'))).code).toBe('28P01');
        // …so the next attempt sees the new verifier.
        expect(await psql(pgmux.url('via_query', 'postgres', 'second-pass'), 'SELECT current_user')).toBe('via_query');
      } else {
        // Each worker caches for itself (docs/scaling.md): the new password
        // fails at most once on each, then every login sees it.
        const outcomes: string[] = [];
        for (let i = 0; i < 4 * testWorkers; i++) {
          outcomes.push(await psql(pgmux.url('via_query', 'postgres', 'second-pass'), 'SELECT current_user').catch((e: Error) => (/password authentication failed/.test(e.message) ? 'refused' : e.message)));
        }
        expect(outcomes.filter((o) => o === 'refused').length).toBeLessThanOrEqual(testWorkers);
        expect(outcomes.every((o) => o === 'refused' || o === 'via_query')).toBe(true);
        expect(await psql(pgmux.url('via_query', 'postgres', 'second-pass'), 'SELECT current_user')).toBe('via_query');
      }
      expect((await connectError(pgmux.url('no_such_role', 'postgres', 'x'))).code).toBe('28P01');
    } finally {
      await pgmux.stop();
    }
  });
});
