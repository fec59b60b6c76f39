import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { sleep, startPgmux, type RunningPgmux } from './helpers/pgmux.ts';
import { RawClient } from './helpers/clients.ts';
import { loadConfig } from '../src/config/load.ts';
import { ConfigSchema } from '../src/config/schema.ts';
import { AUTH_SASL, AUTH_SASL_CONTINUE, saslInitialResponse, startupMessage } from '../src/protocol/messages.ts';

const TIMEOUT_S = 0.5;

/** Waits for pgmux to end the connection; how long it took, and what it said. */
async function waitForHangUp(c: RawClient, startedAt: number): Promise<{ ms: number; code: string | undefined }> {
  await c.until(() => false, 5000).catch(() => null);
  return { ms: Date.now() - startedAt, code: c.errorCode() };
}

const authCode = (c: RawClient, code: number) => c.until((m) => m.type === 'R' && m.body.readInt32BE(0) === code);

describe('client_login_timeout', () => {
  let pgmux: RunningPgmux;
  beforeAll(async () => {
    // SCRAM logins, so a client can stop in the middle of the exchange.
    pgmux = await startPgmux({ client_login_timeout: TIMEOUT_S, admin_users: 'app' });
  });
  afterAll(async () => {
    await pgmux.stop();
    await rm(path.dirname(pgmux.server.currentConfig.auth_file!), { recursive: true, force: true });
  });

  it('is 60 s by default, as in PgBouncer', () => {
    expect(ConfigSchema.parse({}).client_login_timeout).toBe(60);
  });

  it('disconnects a client silent after connecting', async () => {
    const started = Date.now();
    const c = await RawClient.connect(pgmux.port);
    const { ms, code } = await waitForHangUp(c, started);
    expect(c.closed).toBe(true);
    expect(code).toBe('57014');
    expect(ms).toBeGreaterThanOrEqual(TIMEOUT_S * 1000 - 50);
    expect(ms).toBeLessThan(3000);
  });

  it('disconnects a client that stops after AuthenticationSASL', async () => {
    const started = Date.now();
    const c = await RawClient.connect(pgmux.port);
    c.write(startupMessage([['user', 'app'], ['database', 'appdb']]));
    expect(await authCode(c, AUTH_SASL)).not.toBeNull();
    const { ms, code } = await waitForHangUp(c, started);
    expect(c.closed).toBe(true);
    expect(code).toBe('57014');
    expect(ms).toBeLessThan(3000);
  });

  it('disconnects a client that stops after SASLContinue', async () => {
    const started = Date.now();
    const c = await RawClient.connect(pgmux.port);
    c.write(startupMessage([['user', 'app'], ['database', 'appdb']]));
    await authCode(c, AUTH_SASL);
    c.write(saslInitialResponse('SCRAM-SHA-256', 'n,,n=,r=stalledclientnonce'));
    expect(await authCode(c, AUTH_SASL_CONTINUE)).not.toBeNull();
    const { ms, code } = await waitForHangUp(c, started);
    expect(c.closed).toBe(true);
    expect(code).toBe('57014');
    expect(ms).toBeLessThan(3000);
    // Nothing of it is left: SHOW LISTS's used_clients (every session, logged in or not, of every process) is the console's own.
    await sleep(50);
    const admin = new pg.Client({ connectionString: pgmux.url('app', 'pgmux') });
    await admin.connect();
    try {
      expect((await admin.query('SHOW LISTS')).rows.find((r) => r.list === 'used_clients').items).toBe(1);
    } finally {
      await admin.end();
    }
  });

  it('leaves a client that has logged in alone', async () => {
    const client = new pg.Client({ connectionString: pgmux.url() });
    await client.connect();
    await sleep(TIMEOUT_S * 1000 + 300);
    expect((await client.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    await client.end();
  });
});

describe('client_login_timeout in pgbouncer.ini', () => {
  it('is read from the [pgbouncer] section', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pgmux-login-timeout-'));
    try {
      const userlist = path.join(dir, 'userlist.txt');
      await writeFile(userlist, '"app" "app-secret"\n', { mode: 0o600 });
      await chmod(userlist, 0o600);
      const ini = path.join(dir, 'pgbouncer.ini');
      await writeFile(
        ini,
        `[databases]\nappdb = host=127.0.0.1 port=5432\n\n[pgbouncer]\nlisten_port = 6432\nauth_file = ${userlist}\nclient_login_timeout = 7\n`,
        { mode: 0o600 },
      );
      const loaded = await loadConfig([ini], {});
      expect(loaded.config.client_login_timeout).toBe(7);
      expect(loaded.warnings.join('\n')).not.toContain('client_login_timeout');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
