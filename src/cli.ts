import { checkConfiguredFiles } from './cli/config-files.ts';
import { listenProblem, unixSocketProblem } from './cli/listen-check.ts';
import { openLogFile } from './cli/log-file.ts';
import { PidFile } from './cli/pid-file.ts';
import { Interrupted, Signals } from './cli/signals.ts';
import { ConfigError, loadConfig } from './config/load.ts';
import type { Config } from './config/schema.ts';
import { parseListenList } from './listeners.ts';
import { createLogger } from './logging.ts';
import { PgmuxServer } from './server.ts';

/** Undone in reverse order when main() returns, however it returns. */
type Cleanup = (() => unknown)[];

/** Exit status for a configuration mistake, after saying what it is. */
function invalidConfiguration(err: ConfigError): number {
  console.error(`pgmux: invalid configuration\n${err.message}`);
  return 2;
}

async function run(signals: Signals, cleanup: Cleanup): Promise<number> {
  const abort = signals.startup;
  const loaded = await loadConfig(process.argv.slice(2), process.env);
  if (loaded.help !== undefined) {
    console.log(loaded.help);
    return 0;
  }
  for (const w of loaded.warnings) console.error(`pgmux: warning: ${w}`);
  let config = loaded.config;

  // Everything the configuration names is checked before anything is
  // started, so a mistake costs no cluster build and is reported like any
  // other: the auth_file, TLS files, the log_file, the pid_file.
  await checkConfiguredFiles(config);
  const logFile = config.log_file === undefined ? null : openLogFile(config.log_file);
  if (config.pid_file !== undefined) {
    const pidFile = await PidFile.claim(config.pid_file);
    cleanup.push(() => pidFile.remove());
    // Removed however the process ends.
    process.once('exit', () => pidFile.remove());
  }
  for (const [setting, listen] of [['listen', config.listen], ['metrics_listen', config.metrics_listen]] as const) {
    const problem = listen === undefined ? null : await listenProblem(listen, setting);
    if (problem !== null) {
      console.error(`pgmux: ${problem}`);
      return 1;
    }
  }
  const socketProblem = await unixSocketProblem(config.unix_socket_dir, parseListenList(config.listen)[0]?.port ?? 0);
  if (socketProblem !== null) {
    console.error(`pgmux: ${socketProblem}`);
    return 1;
  }
  if (!loaded.embedded && Object.keys(config.endpoints).length === 0) {
    console.error('pgmux: no endpoint configured. Give one with --endpoint main=postgresql://127.0.0.1:5432, or try --embedded.');
    return 2;
  }

  let overlay = (c: Config) => c;
  let greeting: { user: string; password: string } | null = null;
  abort.throwIfAborted();
  if (loaded.embedded) {
    // Loaded only when used: the cluster code is a bundle chunk of its own.
    const { startDemo } = await import('./embedded/demo.ts');
    const demo = await startDemo(config, abort, (line) => console.error(`[embedded] ${line}`));
    cleanup.push(demo.stop);
    config = demo.config;
    overlay = demo.overlay;
    greeting = { user: demo.user, password: demo.password };
  }

  abort.throwIfAborted();
  const logger = logFile === null ? undefined : createLogger({ level: config.log_level, format: config.log_format, destination: logFile.stream });
  const server = new PgmuxServer(config, { logger });
  cleanup.push(() => server.stop());
  const addr = await server.start();
  abort.throwIfAborted();

  if (greeting !== null) {
    const host = addr.host.includes(':') ? `[${addr.host}]` : addr.host;
    const { user, password } = greeting;
    console.error(`\npgmux is serving a local primary and replica on ${host}:${addr.port} (user "${user}", password "${password}"). Connect with:\n`);
    console.error(`  psql "postgresql://${user}:${password}@${host}:${addr.port}/${user}"\n`);
    console.error('Reads go to the replica and writes to the primary: compare "SELECT inet_server_port()"');
    console.error('with "CREATE TABLE t AS SELECT inet_server_port()" then "TABLE t".\n');
    const admins = config.admin_users.split(',').map((u) => u.trim());
    if (admins.includes(user)) {
      console.error('The admin console (SHOW POOLS, SHOW CLIENTS, SHOW NODES, ...):\n');
      console.error(`  psql "postgresql://${user}:${password}@${host}:${addr.port}/pgmux" -c "SHOW POOLS"\n`);
    }
    const metrics = server.metricsAddress();
    if (metrics !== null) {
      const mhost = metrics.host.includes(':') ? `[${metrics.host}]` : metrics.host;
      console.error(`Prometheus metrics, health and readiness:\n\n  curl http://${mhost}:${metrics.port}/metrics\n  curl http://${mhost}:${metrics.port}/readyz\n`);
    }
    console.error('Ctrl-C stops pgmux and the local servers and removes their files.');
  }

  await new Promise<void>((resolve) => {
    let stopping = false;
    // SIGTERM waits for clients to leave, SIGINT only for running
    // transactions; both give up after shutdown_timeout. A second signal
    // is ignored while stopping.
    const stop = (signal: string, wait: 'clients' | 'transactions' | 'none') => {
      if (stopping) return;
      stopping = true;
      server.log.info({ signal }, 'stopping');
      (wait === 'none' ? server.stop() : server.shutdown(wait)).then(resolve, resolve);
    };
    server.onShutdown = (mode) => stop(`SHUTDOWN ${mode}`, mode === 'wait_for_clients' ? 'clients' : mode === 'wait_for_servers' ? 'transactions' : 'none');
    // SIGHUP reads the configuration again; a bad one is refused and the
    // running one stays.
    const reloadSource = async () => overlay((await loadConfig(process.argv.slice(2), process.env)).config);
    server.reloadSource = reloadSource;
    signals.running({
      stop: (sig) => stop(sig, sig === 'SIGINT' ? 'transactions' : 'clients'),
      reload: () => {
        // A rotated log_file is let go of and opened anew at its path.
        logFile?.reopen();
        reloadSource()
          .then((next) => server.reload(next))
          .catch((err: Error) => server.log.error({ err: err.message }, 'configuration not reloaded; keeping the running one'));
      },
    });
  });
  return 0;
}

async function main(): Promise<number> {
  // First of all: a Ctrl-C from here on stops what was started instead of
  // killing the process in the middle of it.
  const signals = new Signals();
  const cleanup: Cleanup = [];
  try {
    return await run(signals, cleanup);
  } catch (err) {
    const reason: unknown = signals.startup.reason;
    if (reason instanceof Interrupted) {
      console.error(`pgmux: ${reason.message}; stopping what was started`);
      return reason.exitCode;
    }
    if (err instanceof ConfigError) return invalidConfiguration(err);
    console.error(`pgmux: ${(err as Error).message}`);
    return 1;
  } finally {
    for (const undo of cleanup.reverse()) await Promise.resolve(undo()).catch(() => {});
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
