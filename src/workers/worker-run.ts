/**
 * One worker: a whole pgmux server on the shared listen addresses, told
 * what to serve by the supervisor. The supervisor holds the pid_file,
 * reads the configuration and passes signals on; a worker whose
 * supervisor is gone stops.
 */
import { openLogFile, type LogFile } from '../cli/log-file.ts';
import { switchUser, targetUser } from '../cli/os-user.ts';
import type { Config } from '../config/schema.ts';
import { createLogger } from '../logging.ts';
import { PgmuxServer } from '../server.ts';
import { isPgmuxMessage, type LinkMessage, type SupervisorMessage, type WorkerMessage } from './ipc.ts';
import { ProcessLink } from './process-link.ts';
import { workerLimits } from './worker-limits.ts';
import { Writable } from 'node:stream';
import type { Socket } from 'node:net';
import type { GrantedLimits } from '../pool/granted-limits.ts';

const send = (m: WorkerMessage) => {
  if (process.connected) process.send!(m);
};

// The supervisor's terminal may be gone (-d): nothing written there may fail this process.
process.stdout.on('error', () => {});
process.stderr.on('error', () => {});

let server: PgmuxServer | null = null;
let link: ProcessLink | null = null;
let logFile: LogFile | null = null;
let limits: GrantedLimits | null = null;
/** A stop this worker was told of by a signal, rather than one of its own (the admin console's SHUTDOWN). */
let signalled = false;

async function exitAfter(stop: Promise<void>): Promise<void> {
  await stop.catch(() => {});
  logFile?.flush();
  process.exit(0);
}

function onSignal(sig: 'SIGTERM' | 'SIGINT'): void {
  if (server === null) process.exit(0);
  if (signalled) return;
  signalled = true;
  server.log.info({ signal: sig }, 'stopping');
  void exitAfter(server.shutdown(sig === 'SIGINT' ? 'transactions' : 'clients'));
}

process.on('SIGTERM', () => onSignal('SIGTERM'));
process.on('SIGINT', () => onSignal('SIGINT'));
// Stops at once: the server's own listener (server.ts) does the rest.
process.on('SIGQUIT', () => {
  signalled = true;
  if (server === null) process.exit(0);
  void exitAfter(server.stop());
});
// The supervisor reads the configuration once and sends it (a 'reload' message).
process.on('SIGHUP', () => {});

process.on('disconnect', () => {
  link?.close();
  if (server === null) process.exit(0);
  signalled = true;
  server.log.warn('the supervisor is gone; stopping');
  void exitAfter(server.stop());
});

async function start(config: Config, worker: number, count: number, quiet: boolean): Promise<void> {
  link = new ProcessLink(worker, count, (m: LinkMessage) => send(m));
  logFile = config.log_file === undefined ? null : openLogFile(config.log_file);
  const destination = logFile?.stream ?? (quiet ? new Writable({ write: (_c, _e, done) => done() }) : undefined);
  const logger = createLogger({ level: config.log_level, format: config.log_format, destination }).child({ worker });
  const s = new PgmuxServer(config, { logger, link });
  server = s;
  limits = workerLimits(s, link);
  s.onShutdown = (mode) => {
    // SIGQUIT reaches here too (server.ts): that stop is under way already.
    if (!signalled) send({ pgmux: 'shutdown', mode });
  };
  // RELOAD: the supervisor reads the configuration again, for this worker.
  s.reloadSource = () => link!.askSupervisor<Config>('config', worker, 30_000);
  await s.start();
  if (config.user !== undefined) {
    const user = targetUser(config.user);
    if (typeof user === 'string') throw new Error(user);
    const socket = s.listening().unixSocket;
    switchUser(user, socket === null || socket.startsWith('\0') ? [] : [{ path: socket, keepGroup: config.unix_socket_group !== undefined }]);
  }
  const listening = s.listening();
  send({ pgmux: 'listening', tcp: listening.tcp, metrics: s.metricsAddress() });
}

process.on('message', (m: unknown, handle: unknown) => {
  if (!isPgmuxMessage(m)) return;
  const msg = m as SupervisorMessage;
  switch (msg.pgmux) {
    case 'take-over': {
      const socket = handle as Socket | undefined;
      if (socket === undefined) return;
      if (limits === null) socket.destroy();
      else limits.takeOver(msg.key, msg.conn, socket);
      return;
    }
    case 'start':
      start(msg.config, msg.worker, msg.count, msg.quiet).catch((err: Error) => {
        send({ pgmux: 'failed', error: err.message });
        void exitAfter(server?.stop() ?? Promise.resolve());
      });
      return;
    case 'reload': {
      const s = server;
      if (s === null) return;
      logFile?.reopen();
      s.reload(msg.config).catch((err: Error) => s.log.error({ err: err.message }, 'configuration not reloaded; keeping the running one'));
      return;
    }
    default:
      link?.receive(msg);
  }
});

send({ pgmux: 'hello' });
