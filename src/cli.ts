import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { loadUserlist } from './auth/userlist.ts';
import { ConfigError, loadConfig } from './config/load.ts';
import type { Config } from './config/schema.ts';
import { openLogFile, type LogFile } from './cli/log-file.ts';
import { PidFile } from './cli/pid-file.ts';
import { createLogger } from './logging.ts';
import { PgmuxServer } from './server.ts';

/** Starts a throw-away primary and replica and points the config at them. */
async function startEmbedded(
  config: Config,
): Promise<{ config: Config; overlay: (c: Config) => Config; user: string; password: string; stop: () => Promise<void> }> {
  const { LocalCluster } = await import('./embedded/cluster.ts');
  const cluster = await LocalCluster.start({ replicas: 1, log: (line) => console.error(`[embedded] ${line}`) });
  try {
    const user = 'app';
    const password = randomBytes(9).toString('base64url');
    const verifier = await cluster.createRole(user, password);
    // The role's own database, where it may create tables (PostgreSQL 15's
    // public schema is not writable by other roles).
    await cluster.query(`CREATE DATABASE ${user} OWNER ${user}`);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pgmux-embedded-'));
    const authFile = path.join(dir, 'userlist.txt');
    await writeFile(authFile, `"${user}" "${verifier}"\n`, { mode: 0o600 });
    const nodes = [cluster.primary, ...cluster.replicas].map((n) => `postgresql://${n.host}:${n.port}`);
    const overlay = (config: Config): Config => ({
        ...config,
        // Reads go to the replica (weight 0 keeps them off the primary while
        // the replica is usable), so the routing shows at once.
        endpoints: Object.keys(config.endpoints).length > 0 ? config.endpoints : { main: { nodes, weights: [0, ...cluster.replicas.map(() => 1)] } },
        auth_file: config.auth_file ?? authFile,
        // The local superuser checks the nodes (health, roles, lag).
        health_check_user: config.health_check_user ?? cluster.superuser,
        users: { ...config.users, [cluster.superuser]: { ...config.users[cluster.superuser], password: cluster.superuserPassword } },
    });
    return {
      config: overlay(config),
      overlay,
      user,
      password,
      stop: async () => {
        await cluster.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}

/** Exit status for a configuration mistake, after saying what it is. */
function invalidConfiguration(err: ConfigError): number {
  console.error(`pgmux: invalid configuration\n${err.message}`);
  return 2;
}

async function main(): Promise<number> {
  let loaded;
  try {
    loaded = await loadConfig(process.argv.slice(2), process.env);
    // Files the configuration names are read before anything is started,
    // so a missing or bad one is reported like any other mistake.
    if (loaded.help === undefined && loaded.config.auth_file !== undefined) await loadUserlist(loaded.config.auth_file);
  } catch (err) {
    if (err instanceof ConfigError) return invalidConfiguration(err);
    throw err;
  }
  if (loaded.help !== undefined) {
    console.log(loaded.help);
    return 0;
  }
  for (const w of loaded.warnings) console.error(`pgmux: warning: ${w}`);
  let config = loaded.config;
  // log_file and pid_file before anything is started: a path that cannot
  // be written, or a pid_file another process holds, stops pgmux at once.
  let logFile: LogFile | null = null;
  let pidFile: PidFile | null = null;
  try {
    logFile = config.log_file === undefined ? null : openLogFile(config.log_file);
    pidFile = config.pid_file === undefined ? null : await PidFile.claim(config.pid_file);
  } catch (err) {
    if (err instanceof ConfigError) return invalidConfiguration(err);
    console.error(`pgmux: ${(err as Error).message}`);
    return 1;
  }
  // Removed however the process ends.
  process.once('exit', () => pidFile?.remove());
  let stopEmbedded: (() => Promise<void>) | null = null;
  let overlay = (c: Config) => c;
  let greeting: string | null = null;
  if (loaded.embedded) {
    const e = await startEmbedded(config);
    config = e.config;
    stopEmbedded = e.stop;
    overlay = e.overlay;
    greeting = `user "${e.user}", password "${e.password}"`;
  }
  if (Object.keys(config.endpoints).length === 0) {
    console.error('pgmux: no endpoint configured. Give one with --endpoint main=postgresql://127.0.0.1:5432, or try --embedded.');
    return 2;
  }
  const logger = logFile === null ? undefined : createLogger({ level: config.log_level, format: config.log_format, destination: logFile.stream });
  const server = new PgmuxServer(config, { logger });
  let addr;
  try {
    addr = await server.start();
  } catch (err) {
    await stopEmbedded?.();
    pidFile?.remove();
    if (err instanceof ConfigError) return invalidConfiguration(err);
    console.error(`pgmux: ${(err as Error).message}`);
    return 1;
  }
  if (greeting !== null) {
    const host = addr.host.includes(':') ? `[${addr.host}]` : addr.host;
    console.error(`\npgmux is serving a local primary and replica on ${host}:${addr.port} (${greeting}). Connect with:\n`);
    console.error(`  psql "postgresql://app:${greeting.split('"')[3]}@${host}:${addr.port}/app"\n`);
    console.error('Reads go to the replica and writes to the primary: compare "SELECT inet_server_port()"');
    console.error('with "CREATE TABLE t AS SELECT inet_server_port()" then "TABLE t".\n');
    console.error('Ctrl-C stops pgmux and the local servers and removes their files.');
  }
  const stopped = new Promise<void>((resolve) => {
    let stopping = false;
    // SIGTERM waits for clients to leave, SIGINT only for running
    // transactions; both give up after shutdown_timeout. A second signal
    // (Ctrl-C reaches the process group, and bin/pgmux.js forwards it) is
    // ignored while stopping.
    const stop = (signal: string, wait: 'clients' | 'transactions' | 'none') => {
      if (stopping) return;
      stopping = true;
      server.log.info({ signal }, 'stopping');
      (wait === 'none' ? server.stop() : server.shutdown(wait)).then(resolve, resolve);
    };
    process.on('SIGINT', () => stop('SIGINT', 'transactions'));
    process.on('SIGTERM', () => stop('SIGTERM', 'clients'));
    server.onShutdown = (mode) => stop(`SHUTDOWN ${mode}`, mode === 'wait_for_clients' ? 'clients' : mode === 'wait_for_servers' ? 'transactions' : 'none');
    // SIGHUP reads the configuration again; a bad one is refused and the
    // running one stays.
    const reloadSource = async () => overlay((await loadConfig(process.argv.slice(2), process.env)).config);
    server.reloadSource = reloadSource;
    process.on('SIGHUP', () => {
      // A rotated log_file is let go of and opened anew at its path.
      logFile?.reopen();
      reloadSource()
        .then((next) => server.reload(next))
        .catch((err: Error) => server.log.error({ err: err.message }, 'configuration not reloaded; keeping the running one'));
    });
  });
  await stopped;
  await stopEmbedded?.();
  pidFile?.remove();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
