/**
 * -d, as PgBouncer's: pgmux goes on in the background once it listens.
 * Node.js cannot fork, so the process starts itself again, detached in a
 * session of its own, and waits: it exits 0 once the background pgmux
 * says it is ready, or with the background pgmux's status if that one
 * stops first, passing on what it wrote to standard error meanwhile (a
 * mistake in the configuration, a port in use). After that the
 * background pgmux has no terminal and writes nothing to standard error;
 * its log lines go to log_file.
 */
import { spawn } from 'node:child_process';

/** Tells the process started by daemonize() that it is the background half. */
const CHILD = 'PGMUX_DAEMON_CHILD';

/** Whether this process is the background pgmux that daemonize() started. */
export function isDaemonChild(): boolean {
  const child = process.env[CHILD] === '1' && typeof process.send === 'function';
  // Not passed on to what pgmux itself starts.
  delete process.env[CHILD];
  return child;
}

/**
 * Starts pgmux again in the background with the same command line and
 * resolves with this process's exit status. `stop` aborts the wait (a
 * Ctrl-C), stopping the background pgmux too.
 */
export function daemonize(stop: AbortSignal): Promise<number> {
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1], ...process.argv.slice(2)], {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: { ...process.env, [CHILD]: '1' },
  });
  child.stderr!.pipe(process.stderr, { end: false });
  return new Promise((resolve) => {
    const onStop = () => child.kill('SIGTERM');
    stop.addEventListener('abort', onStop, { once: true });
    child.on('message', (m) => {
      if (m !== 'ready') return;
      stop.removeEventListener('abort', onStop);
      child.stderr!.unpipe(process.stderr);
      child.stderr!.destroy();
      child.disconnect();
      child.unref();
      resolve(0);
    });
    child.once('exit', (code, signal) => resolve(code ?? (signal === null ? 1 : 128)));
    child.once('error', (err) => {
      console.error(`pgmux: cannot start in the background: ${err.message}`);
      resolve(1);
    });
  });
}

/** In the background pgmux: it is listening; the process that started it may exit. */
export function daemonReady(): void {
  // Standard error led to the starting process, which is gone: nothing
  // more may fail on it.
  process.stderr.on('error', () => {});
  process.send?.('ready', () => process.disconnect?.());
}
