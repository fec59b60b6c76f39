/**
 * What the admin console does to one worker, once the worker the console's
 * client is connected to has checked the command against every worker's
 * state (see backend.ts). Every worker answers these over its link, the
 * console's own included, so pgmux takes one path whether it runs one
 * process or many.
 */
import { ConfigSchema, type Config } from '../config/schema.ts';
import { PgError, SqlState, type ErrorFields } from '../protocol/errors.ts';
import type { PgmuxServer } from '../server.ts';
import type { ShutdownMode } from './commands.ts';
import type { ResultSet } from './console.ts';
import { ADMIN_ENDPOINT } from './session.ts';
import { showCommand } from './show.ts';

/** Link topics of the admin console. */
export const TOPIC = {
  show: 'admin:show',
  state: 'admin:state',
  run: 'admin:run',
  closeNeeded: 'admin:close_needed',
  shutdown: 'admin:shutdown',
} as const;

/** A worker's state as the console's checks read it (PgBouncer's errors for a command that cannot run now). */
export interface WorkerState {
  pauseMode: 'none' | 'pause' | 'suspend';
  pausedDatabases: number;
  /** Whether the worker knows the name asked about (a database, endpoint or entry). */
  known: boolean;
  /** Whether that name is paused by name. */
  namePaused: boolean;
}

/** A command each worker runs; `arg` is a database name, a client's id on that worker, or SET's resolved setting. */
export type Action =
  | { verb: 'reload' | 'reconnect' | 'kill' | 'resume' | 'disable' | 'enable'; name?: string }
  | { verb: 'pause' | 'suspend'; name?: string }
  | { verb: 'set'; key: string; value: unknown; name: string; text: string }
  | { verb: 'kill_client'; id: number };

/** What a worker answers to an action: nothing, or the error it met, as fields that any link carries. */
export type Outcome = { ok: true; found?: boolean } | { ok: false; error: ErrorFields };

export const toOutcome = (err: unknown): Outcome => ({
  ok: false,
  error: err instanceof PgError ? err.fields() : { severity: 'ERROR', code: SqlState.INTERNAL_ERROR, message: (err as Error).message },
});

export const fromFields = (f: ErrorFields): PgError => new PgError(f.code, f.message, { severity: 'ERROR', detail: f.detail, hint: f.hint });

const s = (seconds: number) => Math.round(seconds * 1000);

/**
 * Names the console's commands may use: endpoint names, the database
 * names clients log in with or have logged in with, and those the
 * endpoints' node URLs name.
 */
function knownDatabase(server: PgmuxServer, name: string): boolean {
  if (server.registry.endpoints().has(name) || server.servedDatabases.has(name)) return true;
  if (server.pools.all().some((p) => p.where.entry === name)) return true;
  for (const c of server.sessions) if (c.database === name && c.endpointName !== ADMIN_ENDPOINT) return true;
  for (const ep of server.registry.endpoints().values()) if (ep.nodes.some((n) => n.database === name)) return true;
  return false;
}

export function workerState(server: PgmuxServer, name: string | undefined): WorkerState {
  return {
    pauseMode: server.pools.pauseMode,
    pausedDatabases: server.pools.pausedDatabases().length,
    known: name !== undefined && knownDatabase(server, name),
    namePaused: name !== undefined && server.pools.isNamePaused(name),
  };
}

/** PAUSE and SUSPEND wait for connections in use at most shutdown_timeout; the pause stays. */
async function pauseWaiting(wait: Promise<void>, verb: string): Promise<void> {
  try {
    await wait;
  } catch (err) {
    throw new PgError(SqlState.QUERY_CANCELED, `${verb} did not complete: ${(err as Error).message}`, { hint: 'Clients keep waiting; RESUME releases them.' });
  }
}

/** Applies a configuration as RELOAD and SIGHUP do; a failure leaves the running one. */
async function apply(server: PgmuxServer, next: () => Promise<Config>, failure: string): Promise<void> {
  try {
    await server.reload(await next());
  } catch (err) {
    const reason = (err as Error).message;
    server.log.error({ err: reason }, 'configuration not reloaded; keeping the running one');
    throw new PgError(SqlState.CONFIG_FILE_ERROR, failure, { severity: 'ERROR', detail: reason });
  }
}

/** Runs one checked action on this worker. */
export async function runAction(server: PgmuxServer, action: Action, reloadSource: () => Promise<Config>): Promise<Outcome> {
  try {
    switch (action.verb) {
      case 'reload':
        // PgBouncer's message, with the reasons in DETAIL.
        await apply(server, reloadSource, 'RELOAD failed, see logs for additional details');
        break;
      case 'set': {
        const parsed = ConfigSchema.safeParse({ ...server.currentConfig, [action.key]: action.value });
        if (!parsed.success) {
          throw new PgError(SqlState.INVALID_PARAMETER_VALUE, `invalid value for parameter "${action.name}": "${action.text}"`, {
            severity: 'ERROR',
            detail: parsed.error.issues[0]?.message,
          });
        }
        await apply(server, async () => parsed.data, `SET ${action.name} failed`);
        break;
      }
      case 'kill':
        server.kill(action.name);
        break;
      case 'kill_client': {
        const client = [...server.sessions].find((c) => c.id === action.id && c.loggedIn);
        if (client === undefined) return { ok: true, found: false };
        client.fatal(new PgError(SqlState.ADMIN_SHUTDOWN, 'admin forced disconnect'));
        return { ok: true, found: true };
      }
      case 'reconnect':
        server.reconnect(action.name);
        break;
      case 'pause':
        await pauseWaiting(server.pools.pause(action.name, s(server.currentConfig.shutdown_timeout)), 'PAUSE');
        break;
      case 'suspend':
        await pauseWaiting(server.pools.pause(undefined, s(server.currentConfig.shutdown_timeout), 'suspend'), 'SUSPEND');
        break;
      case 'resume':
        server.pools.resume(action.name);
        break;
      case 'disable':
        server.disabled.add(action.name!);
        break;
      case 'enable':
        server.disabled.delete(action.name!);
        break;
    }
    return { ok: true };
  } catch (err) {
    return toOutcome(err);
  }
}

/**
 * Registers this worker's answers to the console's topics: its own rows of
 * a SHOW, its state, an action, the server connections WAIT_CLOSE waits
 * for, and SHUTDOWN.
 */
export function answerConsole(server: PgmuxServer, reloadSource: () => Promise<Config>, shutdown: (mode: ShutdownMode) => void): void {
  const link = server.link;
  link.handle(TOPIC.show, (what): ResultSet | null => showCommand(server, what as string));
  link.handle(TOPIC.state, (name) => workerState(server, name as string | undefined));
  link.handle(TOPIC.run, (action) => runAction(server, action as Action, reloadSource));
  link.handle(TOPIC.closeNeeded, (name) => server.pools.closeNeeded(name as string | undefined));
  // Answered before the worker starts to stop, so the console's worker knows it was told.
  link.handle(TOPIC.shutdown, (mode) => {
    setImmediate(() => shutdown(mode as ShutdownMode));
    return true;
  });
}
