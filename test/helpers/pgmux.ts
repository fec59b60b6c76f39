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
  /** The processes pgmux runs as: this one, or the supervisor and its workers. */
  pids(): number[];
  url(user?: string, database?: string, password?: string): string;
  stop(): Promise<void>;
  /**
   * What the next reload that pgmux starts itself (the admin console's
   * RELOAD or SET) reads, as an operator edits the configuration file
   * first: in process the server's reloadSource, with worker processes the
   * file the supervisor reads. `server.currentConfig` is `next` once that
   * reload is done.
   */
  configForReload(next: Config): Promise<void>;
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
  if (workers > 1) return startWorkerProcesses(config, workers, opts.logger);
  const server = new PgmuxServer(config, { logger: opts.logger ?? pino({ level: process.env.PGMUX_TEST_LOG ?? 'silent' }) });
  const { port } = await server.start();
  return {
    server,
    port,
    pids: () => [process.pid],
    url: (user = 'app', database = 'appdb', password) =>
      `postgresql://${user}:${encodeURIComponent(password ?? c.roles[user as keyof typeof c.roles]?.password ?? '')}@127.0.0.1:${port}/${database}`,
    stop: () => server.stop(),
    configForReload: async (next) => {
      server.reloadSource = async () => next;
    },
  };
}

/** How many processes serve clients in the pgmux startPgmux() starts: PGMUX_TEST_WORKERS, else one (pgmux in this process). */
export const testWorkers = Math.max(1, Number(process.env.PGMUX_TEST_WORKERS ?? '1'));

/** Whether startPgmux() starts worker processes (PGMUX_TEST_WORKERS > 1), so a test cannot reach the server's internals. */
export const inWorkerProcesses = testWorkers > 1;

/** Log levels by name, and their order (pino's). */
const LEVELS = pino.levels.values;
/** The more verbose of two levels. */
const moreVerbose = (a: string, b: string) => ((LEVELS[a] ?? Infinity) <= (LEVELS[b] ?? Infinity) ? a : b);

type LogLine = Record<string, unknown> & { level?: number; msg?: string };

/**
 * The command lines startPgmux() started that have not exited: stopped
 * (SIGQUIT, at once) when this process exits, so none is left behind by a
 * test that ended before its stop(), a timeout say.
 */
const running = new Set<import('./cli.ts').CliProcess>();
let stopAtExit = false;

/** "host:port" or "[v6]:port" as a log line writes it. */
function hostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|(.*)):(\d+)$/.exec(text);
  if (m === null) throw new Error(`not host:port: ${text}`);
  return { host: m[1] ?? m[2], port: Number(m[3]) };
}

/**
 * PGMUX_TEST_WORKERS = N: the same configuration, served by the command
 * line with N worker processes (JSON log lines). What `server` offers here
 * is had across the processes, as an operator has it:
 *
 * - the log lines: each one pgmux prints goes to the destination of the
 *   test's logger (at that logger's level, which a reload changes as it
 *   does in process);
 * - `listening()` and `metricsAddress()`: from the workers' `listening` lines;
 * - `reload()`: the file rewritten and SIGHUP; it resolves once every worker
 *   says `configuration reloaded`, and rejects with the error of a
 *   `configuration not reloaded` line;
 * - `stop()`: SIGQUIT, `shutdown('clients')`: SIGTERM,
 *   `shutdown('transactions')`: SIGINT, each resolving once pgmux has exited;
 * - `currentConfig`, and `log` (the test's logger).
 *
 * Anything else throws: the test needs pgmux in its own process.
 */
async function startWorkerProcesses(config: Config, workers: number, testLogger: Logger | undefined): Promise<RunningPgmux> {
  const c = getCluster();
  const { stringify } = await import('smol-toml');
  const { CliProcess } = await import('./cli.ts');
  const file = path.join(await tempDir('pgmux-test-'), 'pgmux.toml');
  // The level an in-process pgmux would log at: the test logger's, changed by each reload.
  const logger = testLogger ?? pino({ level: 'silent' });
  // pgmux itself logs at least at info: its own lines are how this helper follows it.
  const write = (cfg: Config) =>
    writeFile(file, stringify(JSON.parse(JSON.stringify({ ...cfg, workers, log_format: 'json', log_level: moreVerbose(logger.level, 'info') })) as Record<string, unknown>), { mode: 0o600 });
  await write(config);
  const lines: LogLine[] = [];
  const destination = testLogger === undefined ? null : (testLogger as unknown as Record<symbol, NodeJS.WritableStream>)[pino.symbols.streamSym];
  let reloading = false;
  let current = config;
  /** What configForReload() wrote, for a reload pgmux starts itself. */
  let pending: Config | null = null;
  const cli = new CliProcess(['--config', file]);
  running.add(cli);
  void cli.exited.then(() => running.delete(cli));
  if (!stopAtExit) {
    stopAtExit = true;
    const stopAll = () => {
      for (const p of running) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGQUIT');
    };
    process.on('exit', stopAll);
    // The test runner ends its worker with a signal: pgmux stops too, and the signal then does what it did.
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
      process.once(sig, () => {
        stopAll();
        process.kill(process.pid, sig);
      });
    }
  }
  cli.onLine((text) => {
    if (!text.startsWith('{')) return;
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      return;
    }
    if (typeof line.level !== 'number') return;
    // A reload that did not come through this helper (the admin console's SET or RELOAD) sets the level, as in process.
    const changed = (line.settings as Record<string, unknown> | undefined)?.log_level;
    if (line.msg === 'configuration reloaded' && !reloading) {
      if (pending !== null) current = pending;
      if (Array.isArray(changed)) logger.level = String(changed[1]);
      else if (pending !== null) logger.level = pending.log_level;
    }
    lines.push(line);
    if (destination !== null && line.level >= logger.levels.values[logger.level]) destination.write(text + '\n');
  });
  try {
    await cli.waitFor('"msg":"workers started"');
  } catch (err) {
    await cli.kill();
    // What pgmux said: the reason it did not start.
    throw new Error(`pgmux (${workers} workers) did not start: ${cli.output.trim()}`, { cause: err });
  }
  const listeningLines = lines.filter((l) => l.msg === 'listening');
  const started = lines.find((l) => l.msg === 'workers started')!;
  const first = listeningLines.find((l) => l.worker === 0) ?? listeningLines[0];
  const port = Number(first.port);
  const ended = async (sig: NodeJS.Signals) => {
    if (cli.child.exitCode === null && cli.child.signalCode === null) cli.signal(sig);
    await cli.exited;
  };
  const count = (msg: string) => lines.filter((l) => l.msg === msg).length;
  const across = {
    get currentConfig() {
      return current;
    },
    get log() {
      return logger;
    },
    reload: async (next: Config) => {
      const done = count('configuration reloaded');
      const failed = count('configuration not reloaded; keeping the running one');
      reloading = true;
      try {
        logger.level = next.log_level;
        await write(next);
        cli.signal('SIGHUP');
        for (const deadline = Date.now() + 30_000; count('configuration reloaded') < done + workers; ) {
          const refused = lines.filter((l) => l.msg === 'configuration not reloaded; keeping the running one').slice(failed);
          if (refused.length > 0) throw new Error(String(refused[0].err));
          if (Date.now() > deadline) throw new Error(`pgmux did not reload in 30 s:\n${cli.output}`);
          await sleep(10);
        }
      } finally {
        reloading = false;
      }
      current = next;
    },
    listening: () => ({
      tcp: Array.isArray(first.addresses) ? (first.addresses as string[]).map(hostPort) : [{ host: String(first.host), port }],
      unixSocket: typeof first.unixSocket === 'string' ? first.unixSocket.replace(/^@/, '\0') : null,
    }),
    metricsAddress: () => (typeof first.metrics === 'string' ? hostPort(first.metrics) : null),
    stop: () => ended('SIGQUIT'),
    shutdown: (wait: 'clients' | 'transactions') => ended(wait === 'clients' ? 'SIGTERM' : 'SIGINT'),
  };
  const server = new Proxy(across as unknown as PgmuxServer, {
    get: (t, key) => {
      if (key in t) return t[key as keyof PgmuxServer];
      throw new Error(`server.${String(key)}: pgmux runs in worker processes here (PGMUX_TEST_WORKERS); this test needs it in process`);
    },
  });
  return {
    server,
    port,
    pids: () => [cli.child.pid!, ...((started.pids as number[]) ?? [])],
    url: (user = 'app', database = 'appdb', password) =>
      `postgresql://${user}:${encodeURIComponent(password ?? c.roles[user as keyof typeof c.roles]?.password ?? '')}@127.0.0.1:${port}/${database}`,
    // At once, as server.stop() in process.
    stop: () => ended('SIGQUIT'),
    configForReload: async (next) => {
      pending = next;
      await write(next);
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
