import { afterEach, describe, expect, it, vi } from 'vitest';
import net from 'node:net';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { createLogger } from '../src/logging.ts';
import { freePort } from '../src/embedded/cluster.ts';
import { startPgmux, type RunningPgmux } from './helpers/pgmux.ts';
import { getCluster } from './cluster-context.ts';

type Line = Record<string, unknown>;

/** A logger at pgmux's default level (info) writing JSON lines into memory. */
function capture(level = 'info') {
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      raw.push(...chunk.toString().split('\n').filter((l: string) => l !== ''));
      cb();
    },
  });
  const logger = createLogger({ level, format: 'json', destination: sink });
  return { logger, raw, lines: () => raw.map((l) => JSON.parse(l) as Line) };
}

/** Top-level keys of a JSON object as written, repeats included. */
function topLevelKeys(json: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < json.length; i++) {
    const ch = json[i];
    if (ch === '"') {
      let j = i + 1;
      while (json[j] !== '"') j += json[j] === '\\' ? 2 : 1;
      if (depth === 1 && json[j + 1] === ':') keys.push(json.slice(i + 1, j));
      i = j;
    } else if (ch === '{' || ch === '[') depth++;
    else if (ch === '}' || ch === ']') depth--;
  }
  return keys;
}

const WARN = 40;

/** Tries to log in; resolves with the error node-postgres reports. */
async function failedLogin(config: pg.ClientConfig): Promise<Error & { code?: string }> {
  const c = new pg.Client(config);
  c.on('error', () => {});
  const err = await c.connect().then(
    () => null,
    (e: Error) => e,
  );
  await c.end().catch(() => {});
  expect(err).not.toBeNull();
  return err!;
}

const started: RunningPgmux[] = [];
async function pgmuxWith(overrides: Record<string, unknown>, logger: ReturnType<typeof capture>['logger']): Promise<RunningPgmux> {
  const p = await startPgmux(overrides, { logger });
  started.push(p);
  return p;
}

afterEach(async () => {
  for (const p of started.splice(0)) {
    await p.stop();
    await rm(path.dirname(p.server.currentConfig.auth_file!), { recursive: true, force: true });
  }
});

/**
 * Waits for `assertion` to hold: with worker processes (PGMUX_TEST_WORKERS)
 * a log line comes over a pipe, and may come after the client has heard
 * from pgmux.
 */
const eventually = (assertion: () => void) => vi.waitFor(assertion, { timeout: 10_000, interval: 20 });

const warnings = (lines: Line[], msg: RegExp) => lines.filter((l) => l.level === WARN && msg.test(String(l.msg)));

describe('log lines at the default level', () => {
  it('a wrong password and the auth_failure_limit lockout are warnings naming user, database and client address', async () => {
    const log = capture();
    const pgmux = await pgmuxWith({ auth_failure_limit: 2 }, log.logger);
    for (let i = 0; i < 3; i++) await failedLogin({ connectionString: pgmux.url('app', 'appdb', 'not-the-password') });
    await eventually(() => expect(warnings(log.lines(), /auth_failure_limit/)).toHaveLength(1));
    const wrong = warnings(log.lines(), /password authentication failed/);
    expect(wrong).toHaveLength(2);
    expect(wrong[0]).toMatchObject({ user: 'app', database: 'appdb' });
    expect(wrong[0].addr).toMatch(/^127\.0\.0\.1:\d+$/);
    const locked = warnings(log.lines(), /auth_failure_limit/);
    expect(locked).toHaveLength(1);
    expect(locked[0]).toMatchObject({ user: 'app', database: 'appdb' });
    expect(locked[0].addr).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(log.raw.join('\n')).not.toContain('not-the-password');
  });

  it('a max_client_conn refusal is a warning', async () => {
    const log = capture();
    const pgmux = await pgmuxWith({ max_client_conn: 1 }, log.logger);
    const first = new pg.Client({ connectionString: pgmux.url() });
    await first.connect();
    try {
      expect(await failedLogin({ connectionString: pgmux.url() })).toMatchObject({ code: '53300' });
    } finally {
      await first.end();
    }
    await eventually(() => expect(warnings(log.lines(), /max_client_conn/)).toHaveLength(1));
    const refused = warnings(log.lines(), /max_client_conn/);
    expect(refused[0]).toMatchObject({ user: 'app', database: 'appdb' });
    expect(refused[0].addr).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it('an unreachable server and a server login that times out are warnings', async () => {
    const closedPort = await freePort();
    // A server that accepts connections and never answers.
    const silent = net.createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const silentPort = (silent.address() as net.AddressInfo).port;
    try {
      const log = capture();
      const pgmux = await pgmuxWith(
        {
          server_connect_timeout: 0.5,
          endpoints: {
            down: { nodes: [`postgresql://127.0.0.1:${closedPort}`] },
            mute: { nodes: [`postgresql://127.0.0.1:${silentPort}`] },
          },
        },
        log.logger,
      );
      await failedLogin({ connectionString: pgmux.url('app', 'down') });
      await failedLogin({ connectionString: pgmux.url('app', 'mute') });
      await eventually(() => expect(warnings(log.lines(), /no server connection/)).toHaveLength(2));
      const failed = warnings(log.lines(), /no server connection/);
      expect(failed.map((l) => [l.user, l.database, l.endpoint])).toEqual([
        ['app', 'down', 'down'],
        ['app', 'mute', 'mute'],
      ]);
      expect(failed[0].err).toMatch(new RegExp(`could not connect to server 127\\.0\\.0\\.1:${closedPort}`));
      expect(failed[1].err).toMatch(/timed out/);
      for (const l of failed) expect(l.addr).toMatch(/^127\.0\.0\.1:\d+$/);
    } finally {
      silent.close();
    }
  });

  it('the start line names the metrics address; no line repeats a key (pgmux\'s pid and a server\'s)', async () => {
    const log = capture('trace');
    const pgmux = await pgmuxWith({ metrics_listen: '127.0.0.1:0', pool_mode: 'transaction' }, log.logger);
    const { port } = pgmux.server.metricsAddress()!;
    expect(log.lines().find((l) => l.msg === 'listening')).toMatchObject({ metrics: `127.0.0.1:${port}` });
    const c = new pg.Client({ connectionString: pgmux.url() });
    await c.connect();
    await c.query('SELECT 1');
    await c.end();
    await eventually(() => expect(log.lines().some((l) => l.msg === 'server connection opened' && typeof l.serverPid === 'number')).toBe(true));
    for (const line of log.raw) {
      const keys = topLevelKeys(line);
      expect(keys, line).toEqual([...new Set(keys)]);
    }
  });

  it('a reload says which settings changed, without secrets', async () => {
    const log = capture();
    const pgmux = await pgmuxWith({}, log.logger);
    const before = pgmux.server.currentConfig;
    const c = getCluster();
    await pgmux.server.reload({
      ...before,
      default_pool_size: 7,
      users: { ...before.users, app: { password: c.roles.app.password } },
    });
    const line = log.lines().find((l) => l.msg === 'configuration reloaded');
    expect(line?.settings).toEqual({ default_pool_size: [20, 7], 'users.app.password': 'changed' });
    expect(log.raw.join('\n')).not.toContain(c.roles.app.password);
  });
});

describe('log_connections, log_disconnections, log_pooler_errors, log_stats', () => {
  const INFO = 30;
  const infos = (lines: Line[], msg: string) => lines.filter((l) => l.level === INFO && l.msg === msg);

  it('logins and disconnections are info lines by default, debug lines when switched off', async () => {
    const on = capture();
    const a = await pgmuxWith({}, on.logger);
    const c = new pg.Client({ connectionString: a.url() });
    await c.connect();
    await c.end();
    await eventually(() => expect(infos(on.lines(), 'disconnect')).toEqual([expect.objectContaining({ reason: 'client sent Terminate' })]));
    expect(infos(on.lines(), 'login')).toHaveLength(1);

    const off = capture('debug');
    const b = await pgmuxWith({ log_connections: false, log_disconnections: false }, off.logger);
    const d = new pg.Client({ connectionString: b.url() });
    await d.connect();
    await d.end();
    await eventually(() => expect(off.lines().filter((l) => l.msg === 'login' || l.msg === 'disconnect').map((l) => l.level)).toEqual([20, 20]));
    expect(infos(off.lines(), 'login')).toEqual([]);
    expect(infos(off.lines(), 'disconnect')).toEqual([]);
  });

  it('an error pgmux sends a client it disconnects is a warning, unless log_pooler_errors is off', async () => {
    for (const logPoolerErrors of [true, false]) {
      const log = capture();
      const pgmux = await pgmuxWith({ client_idle_timeout: 0.2, log_pooler_errors: logPoolerErrors }, log.logger);
      const c = new pg.Client({ connectionString: pgmux.url() });
      c.on('error', () => {});
      const ended = new Promise<void>((r) => c.on('end', () => r()));
      await c.connect();
      await ended;
      // The disconnect line is the last pgmux writes of that client.
      await eventually(() => expect(infos(log.lines(), 'disconnect')).toEqual([expect.objectContaining({ reason: 'client_idle_timeout' })]));
      const lines = warnings(log.lines(), /^pooler error/);
      if (logPoolerErrors) expect(lines).toEqual([expect.objectContaining({ msg: 'pooler error: client_idle_timeout', user: 'app', database: 'appdb', code: '08P01' })]);
      else expect(lines).toEqual([]);
      expect(infos(log.lines(), 'disconnect')).toEqual([expect.objectContaining({ reason: 'client_idle_timeout' })]);
    }
  });

  it('every stats_period, the averages in PgBouncer\'s words; log_stats and stats_period change at run time', async () => {
    const log = capture();
    const pgmux = await pgmuxWith({ stats_period: 0.25 }, log.logger);
    const c = new pg.Client({ connectionString: pgmux.url() });
    await c.connect();
    for (let i = 0; i < 5; i++) await c.query('SELECT 1');
    await c.end();
    await new Promise((r) => setTimeout(r, 700));
    const stats = () => log.lines().filter((l) => l.level === INFO && String(l.msg).startsWith('stats: '));
    await eventually(() => expect(stats().length).toBeGreaterThanOrEqual(2));
    for (const l of stats()) expect(l.msg).toMatch(/^stats: \d+ xacts\/s, \d+ queries\/s, in \d+ B\/s, out \d+ B\/s, xact \d+ us, query \d+ us, wait \d+ us$/);
    // The period that saw the five queries says so.
    await eventually(() => expect(stats().some((l) => (l.queries as number) > 0)).toBe(true));

    await pgmux.server.reload({ ...pgmux.server.currentConfig, log_stats: false });
    const before = stats().length;
    await new Promise((r) => setTimeout(r, 600));
    expect(stats().length).toBe(before);

    await pgmux.server.reload({ ...pgmux.server.currentConfig, log_stats: true, stats_period: 60 });
    await new Promise((r) => setTimeout(r, 600));
    expect(stats().length).toBe(before);
  });
});
