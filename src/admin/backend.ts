import { ConfigSchema, type Config } from '../config/schema.ts';
import { PgError, SqlState } from '../protocol/errors.ts';
import type { PgmuxServer } from '../server.ts';
import type { ShutdownMode } from './commands.ts';
import type { AdminBackend, ResultSet } from './console.ts';
import { LOCAL, mergeShow, type WorkerRows } from './merge.ts';
import { ADMIN_DATABASES } from './session.ts';
import { resolveSet } from './set-setting.ts';
import { showCommand } from './show.ts';
import { TOPIC, answerConsole, fromFields, type Action, type Outcome, type WorkerState } from './worker-actions.ts';

/** A command that cannot run in the state pgmux is in, in PgBouncer's words. */
const notNow = (message: string) => new PgError(SqlState.OBJECT_NOT_IN_PREREQUISITE_STATE, message, { severity: 'ERROR' });

/** How often a waiting command (WAIT_CLOSE) looks again. */
const POLL_MS = 50;

/** How much longer than shutdown_timeout the console waits for a worker's PAUSE or SUSPEND to answer. */
const PAUSE_MARGIN_MS = 5000;

/** How long the console waits for a worker's RELOAD or SET, which may read files (or ask the supervisor to) first. */
const RELOAD_WAIT_MS = 35_000;

/**
 * What the admin console does to a running pgmux: the whole pgmux, every
 * worker, whichever the console's client is connected to. A SHOW asks
 * every worker for its rows and merges them (merge.ts); a command is
 * checked against every worker's state, then run on every worker, and
 * answered once: an error on any worker is the answer. With one worker
 * (a SoloLink) the path is the same.
 *
 * Commands that name a database take a `[databases]` entry's name: an
 * endpoint's, or the database name clients log in with.
 */
export function adminBackend(server: PgmuxServer, reloadSource: () => Promise<Config>, shutdown: (mode: ShutdownMode) => void): AdminBackend {
  const link = server.link;
  answerConsole(server, reloadSource, shutdown);
  const ms = (seconds: number) => Math.round(seconds * 1000);

  /** Every worker's state, for the checks PgBouncer makes before a command. */
  const states = async (name?: string): Promise<WorkerState[]> => (await link.askAll<WorkerState>(TOPIC.state, name)).map((a) => a.answer);
  /** An unknown name (on every worker), or the console's own, is an error the console goes on after, in PgBouncer's words. */
  const mustKnow = (name: string | undefined, verb: string, all: WorkerState[]) => {
    if (name === undefined) return;
    if (ADMIN_DATABASES.has(name)) throw new PgError(SqlState.FEATURE_NOT_SUPPORTED, `cannot ${verb} admin db: ${name}`, { severity: 'ERROR' });
    if (!all.some((w) => w.known)) throw new PgError(SqlState.INVALID_CATALOG_NAME, `no such database: ${name}`, { severity: 'ERROR' });
  };
  const notPaused = (all: WorkerState[]) => {
    if (all.some((w) => w.pauseMode !== 'none')) throw notNow('already suspended/paused');
  };
  /** Runs an action on every worker; the first error (in worker order) is the answer. */
  const everywhere = async (action: Action, timeoutMs?: number): Promise<void> => {
    const outcomes = await link.askAll<Outcome>(TOPIC.run, action, timeoutMs);
    for (const { answer } of outcomes) if (!answer.ok) throw fromFields(answer.error);
  };
  /** Each worker's rows of a SHOW, the console's own first (its own are asked of it directly should the link not answer). */
  const gather = async (what: string): Promise<WorkerRows[]> => {
    const answers = (await link.askAll<ResultSet | null>(TOPIC.show, what)).filter((a): a is WorkerRows => a.answer !== null);
    const own = answers.find((a) => a.worker === link.id) ?? { worker: link.id, answer: showCommand(server, what)! };
    return [own, ...answers.filter((a) => a.worker !== link.id)];
  };

  return {
    show: async (what) => {
      if (what === 'FDS') {
        // PgBouncer's SHOW FDS hands its sockets, cancel keys and login
        // secrets to a new process (online restart); pgmux has none to hand over.
        throw new PgError(SqlState.FEATURE_NOT_SUPPORTED, 'SHOW FDS is not supported: pgmux has no online restart to pass its sockets to', {
          severity: 'ERROR',
          hint: 'SHOW SOCKETS lists every client and server connection.',
        });
      }
      if (LOCAL.has(what)) return showCommand(server, what);
      const answers = await gather(what);
      const pools = what === 'LISTS' ? mergeShow('POOLS', await gather('POOLS')) : undefined;
      return mergeShow(what, answers, pools);
    },
    reload: () => everywhere({ verb: 'reload' }, RELOAD_WAIT_MS),
    set: async (name, value) => {
      const change = resolveSet(name, value);
      // Checked here first, so a bad value changes no worker.
      const parsed = ConfigSchema.safeParse({ ...server.currentConfig, [change.key]: change.value });
      if (!parsed.success) {
        throw new PgError(SqlState.INVALID_PARAMETER_VALUE, `invalid value for parameter "${name}": "${value}"`, {
          severity: 'ERROR',
          detail: parsed.error.issues[0]?.message,
        });
      }
      await everywhere({ verb: 'set', key: change.key, value: change.value, name, text: value }, RELOAD_WAIT_MS);
    },
    kill: async (name) => {
      const all = await states(name);
      notPaused(all);
      mustKnow(name, 'kill', all);
      await everywhere({ verb: 'kill', name });
    },
    killClient: async (id) => {
      if (!/^[0-9]+$/.test(id)) throw new PgError(SqlState.INVALID_PARAMETER_VALUE, 'invalid client pointer supplied', { severity: 'ERROR' });
      // A client's id says its worker (show.ts): id = the worker's own id × workers + worker.
      const n = Number(id);
      const worker = n % link.count;
      const notFound = () => new PgError(SqlState.UNDEFINED_OBJECT, 'client not found', { severity: 'ERROR' });
      let outcome: Outcome;
      try {
        outcome = await link.ask<Outcome>(worker, TOPIC.run, { verb: 'kill_client', id: (n - worker) / link.count });
      } catch {
        // That worker is gone, and its clients with it.
        throw notFound();
      }
      if (!outcome.ok) throw fromFields(outcome.error);
      if (outcome.found !== true) throw notFound();
    },
    reconnect: async (name) => {
      mustKnow(name, 'reconnect', await states(name));
      await everywhere({ verb: 'reconnect', name });
    },
    pause: async (name) => {
      const all = await states(name);
      notPaused(all);
      mustKnow(name, 'pause', all);
      await everywhere({ verb: 'pause', name }, ms(server.currentConfig.shutdown_timeout) + PAUSE_MARGIN_MS);
    },
    suspend: async () => {
      const all = await states();
      notPaused(all);
      if (all.some((w) => w.pausedDatabases > 0)) throw notNow('cannot suspend with paused databases');
      await everywhere({ verb: 'suspend' }, ms(server.currentConfig.shutdown_timeout) + PAUSE_MARGIN_MS);
    },
    resume: async (name) => {
      const all = await states(name);
      mustKnow(name, 'resume', all);
      // Paused on any worker is enough: a worker started since the PAUSE is not paused.
      if (name === undefined && all.every((w) => w.pauseMode === 'none' && w.pausedDatabases === 0)) throw notNow('pooler is not paused/suspended');
      if (name !== undefined && !all.some((w) => w.namePaused)) throw notNow(`database ${name} is not paused`);
      await everywhere({ verb: 'resume', name });
    },
    disable: async (name) => {
      mustKnow(name, 'disable', await states(name));
      await everywhere({ verb: 'disable', name });
    },
    enable: async (name) => {
      mustKnow(name, 'enable', await states(name));
      await everywhere({ verb: 'enable', name });
    },
    waitClose: async (name, signal) => {
      mustKnow(name, 'wait in', await states(name));
      const left = async () => (await link.askAll<number>(TOPIC.closeNeeded, name)).reduce((a, w) => a + w.answer, 0);
      while (!signal.aborted && (await left()) > 0) await new Promise((r) => setTimeout(r, POLL_MS));
    },
    // The others first (each answers, then stops): this worker's own shutdown ends the process that tells them.
    shutdown: (mode) => {
      const others = Array.from({ length: link.count }, (_, w) => w).filter((w) => w !== link.id);
      void Promise.allSettled(others.map((w) => link.ask(w, TOPIC.shutdown, mode))).then(() => shutdown(mode));
    },
  };
}
