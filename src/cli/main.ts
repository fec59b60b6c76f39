/**
 * The command line's work, loaded by cli.ts once SIGUSR1 is taken care
 * of: read the configuration, check everything it names, start pgmux
 * (in the background with -d), and stop it on a signal.
 */
import { checkConfiguredFiles } from './config-files.ts';
import { daemonize, daemonReady, isDaemonChild } from './daemon.ts';
import { listenProblem, unixSocketProblem } from './listen-check.ts';
import { openLogFile } from './log-file.ts';
import { PidFile } from './pid-file.ts';
import { switchUser, targetUser } from './os-user.ts';
import type { OsUser } from '../os-ids.ts';
import { Interrupted, Signals } from './signals.ts';
import { ConfigError, loadConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { parseListenList } from '../listeners.ts';
import { createLogger } from '../logging.ts';
import { PgmuxServer } from '../server.ts';
import { workerCount } from '../workers/count.ts';
import { Supervisor } from '../workers/supervisor.ts';
import type { Logger } from 'pino';
import { Writable } from 'node:stream';

/** Undone in reverse order when main() returns, however it returns. */
type Cleanup = (() => unknown)[];

/** Exit status for a configuration mistake, after saying what it is. */
function invalidConfiguration(err: ConfigError): number {
  console.error(`pgmux: invalid configuration\n${err.message}`);
  return 2;
}

/**
 * Why PgBouncer's -R cannot be had: its online restart takes the listening
 * sockets and every client and server connection over from the running
 * process, file descriptors passed over a Unix-domain socket, which
 * Node.js cannot receive.
 */
const NO_REBOOT =
  "-R (--reboot) is not supported: PgBouncer's online restart takes the running process's sockets and connections over, " +
  'which pgmux cannot do (Node.js cannot receive file descriptors); with so_reuseport, start the new pgmux while the old one runs, ' +
  'then stop the old one with SIGTERM, which waits for its clients to leave (at most shutdown_timeout); else restart with SIGTERM and start pgmux again';

/** Where log lines go with -q and no log_file: nowhere. */
const nowhere = () => new Writable({ write: (_chunk, _enc, done) => done() });

async function run(signals: Signals, cleanup: Cleanup): Promise<number> {
  const abort = signals.startup;
  // Computed once: it also keeps the marker from what pgmux starts.
  const inBackground = isDaemonChild();
  const loaded = await loadConfig(process.argv.slice(2), process.env);
  if (loaded.help !== undefined) {
    console.log(loaded.help);
    return 0;
  }
  const { run: how } = loaded;
  if (how.reboot) {
    console.error(`pgmux: ${NO_REBOOT}`);
    return 2;
  }
  let config = loaded.config;
  if (how.daemon) {
    // As PgBouncer: in the background, the pid_file is how to signal it
    // and the log_file the only place it can say anything.
    const missing = [config.pid_file === undefined ? 'pid_file' : null, config.log_file === undefined ? 'log_file' : null].filter((x) => x !== null);
    if (missing.length > 0) throw new ConfigError(`-d (--daemon) needs ${missing.join(' and ')} (pidfile and logfile in a pgbouncer.ini)`);
    if (loaded.embedded) throw new ConfigError('-d (--daemon) and --embedded: the embedded servers run in the foreground only');
  }
  if (!how.quiet) for (const w of loaded.warnings) console.error(`pgmux: warning: ${w}`);

  // Everything the configuration names is checked before anything is
  // started, so a mistake costs no cluster build and is reported like any
  // other: the auth_file, TLS files, the log_file, the pid_file.
  await checkConfiguredFiles(config);
  const user = config.user === undefined ? null : targetUser(config.user);
  if (typeof user === 'string') {
    console.error(`pgmux: ${user}`);
    return 1;
  }
  for (const [setting, listen] of [['listen', config.listen], ['metrics_listen', config.metrics_listen]] as const) {
    const problem = listen === undefined ? null : await listenProblem(listen, setting, setting === 'listen' && config.so_reuseport);
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
  // Everything that can be found wrong beforehand has been: the rest of
  // the start happens in the background process.
  if (how.daemon && !inBackground) return daemonize(abort);

  const logFile = config.log_file === undefined ? null : openLogFile(config.log_file);
  let pidFile: PidFile | null = null;
  if (config.pid_file !== undefined) {
    const claimed = await PidFile.claim(config.pid_file);
    pidFile = claimed;
    cleanup.push(() => claimed.remove());
    // Removed however the process ends.
    process.once('exit', () => claimed.remove());
  }

  let overlay = (c: Config) => c;
  let greeting: { user: string; password: string } | null = null;
  abort.throwIfAborted();
  if (loaded.embedded) {
    // Loaded only when used: the cluster code is a bundle chunk of its own.
    const { startDemo } = await import('../embedded/demo.ts');
    const demo = await startDemo(config, abort, (line) => console.error(`[embedded] ${line}`));
    cleanup.push(demo.stop);
    config = demo.config;
    overlay = demo.overlay;
    greeting = { user: demo.user, password: demo.password };
  }

  abort.throwIfAborted();
  const destination = logFile?.stream ?? (how.quiet ? nowhere() : undefined);
  const count = workerCount(config);
  if (count > 1) {
    // The workers open the log_file themselves; the supervisor writes its own lines there too.
    const log = createLogger({ level: config.log_level, format: config.log_format, destination });
    if (how.quiet) for (const w of loaded.warnings) log.warn(w);
    return superviseWorkers({ config, count, log, quiet: how.quiet, overlay, greeting, signals, cleanup, inBackground, reopenLog: () => logFile?.reopen(), user, pidFile });
  }
  const logger = destination === undefined ? undefined : createLogger({ level: config.log_level, format: config.log_format, destination });
  const server = new PgmuxServer(config, { logger });
  // -q: what would have gone to standard error goes where the log lines go.
  if (how.quiet) for (const w of loaded.warnings) server.log.warn(w);
  cleanup.push(() => server.stop());
  const addr = await server.start();
  abort.throwIfAborted();
  if (user !== null) {
    // The listeners are open: the rights to open them are not needed any more.
    const socket = server.listening().unixSocket;
    switchUser(user, [
      ...(socket === null || socket.startsWith('\0') ? [] : [{ path: socket, keepGroup: config.unix_socket_group !== undefined }]),
      ...(pidFile === null ? [] : [{ path: pidFile.path, keepGroup: false }]),
    ]);
    server.log.info({ user: user.name, uid: user.uid }, 'switched OS user');
  }
  if (inBackground) daemonReady();

  if (greeting !== null) printGreeting(config, greeting, addr, server.metricsAddress());

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

/** The embedded demo's words: where it serves and how to connect. */
function printGreeting(config: Config, greeting: { user: string; password: string }, addr: { host: string; port: number }, metrics: { host: string; port: number } | null): void {
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
  if (metrics !== null) {
    const mhost = metrics.host.includes(':') ? `[${metrics.host}]` : metrics.host;
    console.error(`Prometheus metrics, health and readiness:\n\n  curl http://${mhost}:${metrics.port}/metrics\n  curl http://${mhost}:${metrics.port}/readyz\n`);
  }
  console.error('Ctrl-C stops pgmux and the local servers and removes their files.');
}

interface Supervised {
  config: Config;
  count: number;
  log: Logger;
  quiet: boolean;
  overlay: (c: Config) => Config;
  greeting: { user: string; password: string } | null;
  signals: Signals;
  cleanup: Cleanup;
  inBackground: boolean;
  reopenLog: () => void;
  /** `user`: the supervisor switches too, once every worker listens (the workers switch themselves). */
  user: OsUser | null;
  pidFile: PidFile | null;
}

/**
 * workers > 1: this process supervises; the workers serve. It stops once
 * every worker has stopped, after a signal or the admin console's
 * SHUTDOWN (passed on to every worker).
 */
async function superviseWorkers(o: Supervised): Promise<number> {
  const { log, signals } = o;
  let stopping = false;
  const stop = (sig: 'SIGTERM' | 'SIGINT' | 'SIGQUIT', why: string) => {
    if (stopping) {
      // A second SIGTERM (after a second) or a SIGQUIT cuts a graceful stop short, as with one process: the workers judge.
      if (sig === 'SIGQUIT' || sig === 'SIGTERM') supervisor.signal(sig);
      return;
    }
    stopping = true;
    log.info({ signal: why }, 'stopping every worker');
    void supervisor.stop(sig);
  };
  const reloadSource = async () => o.overlay((await loadConfig(process.argv.slice(2), process.env)).config);
  const supervisor = new Supervisor({
    config: o.config,
    count: o.count,
    log,
    quiet: o.quiet,
    reloadSource,
    onShutdown: (mode) => stop(mode === 'wait_for_clients' ? 'SIGTERM' : mode === 'wait_for_servers' ? 'SIGINT' : 'SIGQUIT', `SHUTDOWN ${mode}`),
  });
  o.cleanup.push(() => (stopping ? supervisor.stopped : supervisor.stop('SIGQUIT')));
  // From the first fork on, a signal is for the workers (a stop waits for
  // them to end) rather than an abort of the start.
  for (const sig of ['SIGUSR1', 'SIGUSR2'] as const) process.on(sig, () => supervisor.signal(sig));
  process.on('SIGQUIT', () => stop('SIGQUIT', 'SIGQUIT'));
  signals.running({
    stop: (sig) => stop(sig, sig),
    reload: () => {
      o.reopenLog();
      supervisor.reload().then(
        () => log.info('configuration sent to every worker'),
        (err: Error) => log.error({ err: err.message }, 'configuration not reloaded; keeping the running one'),
      );
    },
  });
  let listening;
  try {
    listening = await supervisor.start();
  } catch (err) {
    if (!stopping) throw err;
  }
  if (listening === undefined || stopping) {
    await supervisor.stopped;
    return 0;
  }
  supervisor.markStarted();
  log.info({ workers: o.count, pids: supervisor.pids() }, 'workers started');
  if (o.user !== null) {
    // As each worker has: the rights to open the listeners are not needed any more.
    switchUser(o.user, o.pidFile === null ? [] : [{ path: o.pidFile.path, keepGroup: false }]);
    log.info({ user: o.user.name, uid: o.user.uid }, 'switched OS user');
  }
  if (o.inBackground) daemonReady();
  if (o.greeting !== null) printGreeting(o.config, o.greeting, listening.tcp[0], listening.metrics);
  await supervisor.stopped;
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
