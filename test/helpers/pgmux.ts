import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import pg from 'pg';
import { ConfigSchema, type Config } from '../../src/config/schema.ts';
import { PgmuxServer } from '../../src/server.ts';
import { getCluster } from '../cluster-context.ts';
import { tempDir } from './temp.ts';

export interface RunningPgmux {
  server: PgmuxServer;
  port: number;
  url(user?: string, database?: string, password?: string): string;
  stop(): Promise<void>;
}

/**
 * Writes a userlist.txt with the test roles' SCRAM verifiers (as PostgreSQL
 * stores them), readable by its owner alone; removed when the test file ends.
 */
export async function writeAuthFile(extra: string[] = []): Promise<string> {
  const c = getCluster();
  const dir = await tempDir('pgmux-test-');
  const file = path.join(dir, 'userlist.txt');
  const lines = Object.entries(c.roles).map(([name, r]) => `"${name}" "${r.verifier}"`);
  await writeFile(file, [...lines, ...extra].join('\n') + '\n', { mode: 0o600 });
  return file;
}

/** Starts pgmux in this process in front of the test cluster's primary. */
export async function startPgmux(overrides: Partial<Record<keyof Config, unknown>> = {}, opts: { logger?: Logger } = {}): Promise<RunningPgmux> {
  const c = getCluster();
  const config = ConfigSchema.parse({
    listen: '127.0.0.1:0',
    // No Unix-domain socket in /tmp unless a test asks for one (in a directory of its own).
    unix_socket_dir: '',
    endpoints: { main: { nodes: [`postgresql://${c.primary.host}:${c.primary.port}`] } },
    auth_file: await writeAuthFile(),
    ...overrides,
  });
  const workers = Number(process.env.PGMUX_TEST_WORKERS ?? '1');
  if (workers > 1) return startWorkerProcesses(config, workers);
  const server = new PgmuxServer(config, { logger: opts.logger ?? pino({ level: process.env.PGMUX_TEST_LOG ?? 'silent' }) });
  const { port } = await server.start();
  return {
    server,
    port,
    url: (user = 'app', database = 'appdb', password) =>
      `postgresql://${user}:${encodeURIComponent(password ?? c.roles[user as keyof typeof c.roles]?.password ?? '')}@127.0.0.1:${port}/${database}`,
    stop: () => server.stop(),
  };
}

/** Whether startPgmux() starts worker processes (PGMUX_TEST_WORKERS > 1), so a test cannot reach the server's internals. */
export const inWorkerProcesses = Number(process.env.PGMUX_TEST_WORKERS ?? '1') > 1;

/**
 * PGMUX_TEST_WORKERS = N: the same configuration, served by the command
 * line with N worker processes. `server` is not in this process: a test
 * that reaches into it is told so.
 */
async function startWorkerProcesses(config: Config, workers: number): Promise<RunningPgmux> {
  const c = getCluster();
  const { stringify } = await import('smol-toml');
  const { CliProcess } = await import('./cli.ts');
  const file = path.join(await tempDir('pgmux-test-'), 'pgmux.toml');
  const plain = JSON.parse(JSON.stringify({ ...config, workers, log_format: 'json', log_level: 'info' })) as Record<string, unknown>;
  await writeFile(file, stringify(plain), { mode: 0o600 });
  const cli = new CliProcess(['--config', file]);
  await cli.waitFor('"msg":"workers started"');
  const port = Number(/"port":(\d+)[^\n]*"msg":"listening"/.exec(cli.output)?.[1]);
  let current = config;
  // What can be had across processes: the configuration, and a reload through the file and SIGHUP.
  const across: Partial<PgmuxServer> = {
    get currentConfig() {
      return current;
    },
    reload: async (next: Config) => {
      const before = cli.output.split('"msg":"configuration reloaded"').length;
      await writeFile(file, stringify(JSON.parse(JSON.stringify({ ...next, workers, log_format: 'json', log_level: 'info' })) as Record<string, unknown>), { mode: 0o600 });
      cli.signal('SIGHUP');
      for (let i = 0; i < 1000 && cli.output.split('"msg":"configuration reloaded"').length < before + workers; i++) await sleep(10);
      current = next;
    },
  };
  const server = new Proxy(across as PgmuxServer, {
    get: (t, key) => {
      if (key in t) return t[key as keyof PgmuxServer];
      throw new Error(`server.${String(key)}: pgmux runs in worker processes here (PGMUX_TEST_WORKERS); this test needs it in process`);
    },
  });
  return {
    server,
    port,
    url: (user = 'app', database = 'appdb', password) =>
      `postgresql://${user}:${encodeURIComponent(password ?? c.roles[user as keyof typeof c.roles]?.password ?? '')}@127.0.0.1:${port}/${database}`,
    stop: async () => {
      // At once, as server.stop() in process.
      cli.signal('SIGQUIT');
      await cli.exited;
    },
  };
}

/** Runs SQL directly on the primary as the superuser. */
export async function onPrimary<T = Record<string, unknown>>(sql: string, params: unknown[] = [], database = 'postgres'): Promise<T[]> {
  const c = getCluster();
  const client = new pg.Client({ host: c.primary.host, port: c.primary.port, user: c.superuser, password: c.superuserPassword, database });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}

/** Backends of `user` on the primary, pgmux's own connections included. */
export async function backendsOf(user: string): Promise<number> {
  const rows = await onPrimary<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE usename = $1', [user]);
  return Number(rows[0].n);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Settings for a pgmux that lets clients in without a password (for raw
 * protocol tests); it logs in to the server with the configured password.
 */
export function trustSettings(): Partial<Record<keyof Config, unknown>> {
  const c = getCluster();
  return {
    auth_type: 'trust',
    users: Object.fromEntries(Object.entries(c.roles).map(([name, r]) => [name, { password: r.password }])),
  };
}

/**
 * Runs a 40 MB query on `client` and stops reading its socket for 700 ms
 * midway, so the writes to it back up. Returns the md5 of the rows it got
 * and the md5 PostgreSQL computes of the same rows directly.
 */
export async function readResultSlowly(client: pg.Client): Promise<{ got: string; want: string }> {
  const sql = 'SELECT g, repeat(md5(g::text), 8) AS v FROM generate_series(1, 150000) g';
  const want = (await onPrimary<{ sum: string }>(`SELECT md5(string_agg(g || ':' || v, ',' ORDER BY g)) AS sum FROM (${sql}) s`))[0].sum;
  const stream = (client as unknown as { connection: { stream: import('node:net').Socket } }).connection.stream;
  const result = client.query(sql);
  setTimeout(() => stream.pause(), 20);
  setTimeout(() => stream.resume(), 700);
  const rows = (await result).rows as { g: number; v: string }[];
  return { got: createHash('md5').update(rows.map((r) => `${r.g}:${r.v}`).join(',')).digest('hex'), want };
}
