/**
 * Signals, from the first moment the CLI runs. While pgmux starts (reading
 * files, building the embedded cluster, opening the listener), SIGINT and
 * SIGTERM abort the start, and whatever was started is stopped by whoever
 * started it; with no handler, Node would die at once and leave those
 * servers and files behind. Once pgmux runs, they stop it, and SIGHUP
 * reloads; SIGHUP during start-up is ignored rather than fatal.
 */
import os from 'node:os';

/** Why a start was aborted: the reason of Signals.startup. */
export class Interrupted extends Error {
  readonly signal: NodeJS.Signals;

  constructor(signal: NodeJS.Signals) {
    super(`${signal} while starting`);
    this.signal = signal;
  }

  /** The shell's convention for a process ended by a signal. */
  get exitCode(): number {
    return 128 + (os.constants.signals[this.signal] ?? 0);
  }
}

export interface RunningHandlers {
  stop(signal: 'SIGINT' | 'SIGTERM'): void;
  reload(): void;
}

export class Signals {
  private readonly controller = new AbortController();
  /** Aborted, with an Interrupted reason, by the first SIGINT or SIGTERM during start-up. */
  readonly startup: AbortSignal = this.controller.signal;
  private handlers: RunningHandlers | null = null;

  constructor() {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      process.on(sig, () => {
        if (this.handlers !== null) this.handlers.stop(sig);
        // Ctrl-C reaches the whole process group, and bin/pgmux.js forwards
        // it too: later ones change nothing.
        else if (!this.startup.aborted) this.controller.abort(new Interrupted(sig));
      });
    }
    process.on('SIGHUP', () => this.handlers?.reload());
  }

  /** pgmux has started: from now on the signals go to these. */
  running(handlers: RunningHandlers): void {
    this.handlers = handlers;
  }
}
