import { ConfigSchema, type Config } from '../config/schema.ts';
import { PgError, SqlState } from '../protocol/errors.ts';
import type { PgmuxServer } from '../server.ts';
import type { ShutdownMode } from './commands.ts';
import type { AdminBackend } from './console.ts';
import { ADMIN_DATABASES, ADMIN_ENDPOINT } from './session.ts';
import { resolveSet } from './set-setting.ts';
import { showCommand } from './show.ts';

const s = (seconds: number) => Math.round(seconds * 1000);

/** A command that cannot run in the state pgmux is in, in PgBouncer's words. */
const notNow = (message: string) => new PgError(SqlState.OBJECT_NOT_IN_PREREQUISITE_STATE, message, { severity: 'ERROR' });

/** How often a waiting command (WAIT_CLOSE) looks again. */
const POLL_MS = 50;

/**
 * What the admin console does to a running pgmux. Commands that name a
 * database take a `[databases]` entry's name: an endpoint's, or the
 * database name clients log in with.
 */
export function adminBackend(server: PgmuxServer, reloadSource: () => Promise<Config>, shutdown: (mode: ShutdownMode) => void): AdminBackend {
  /**
   * Names the console's commands may use: endpoint names, the database
   * names clients log in with or have logged in with, and those the
   * endpoints' node URLs name.
   */
  const knownDatabase = (name: string): boolean => {
    if (server.registry.endpoints().has(name) || server.servedDatabases.has(name)) return true;
    if (server.pools.all().some((p) => p.where.entry === name)) return true;
    for (const c of server.sessions) if (c.database === name && c.endpointName !== ADMIN_ENDPOINT) return true;
    for (const ep of server.registry.endpoints().values()) if (ep.nodes.some((n) => n.database === name)) return true;
    return false;
  };
  /** An unknown name, or the console's own, is an error the console goes on after, in PgBouncer's words. */
  const mustKnow = (name: string | undefined, verb: string) => {
    if (name === undefined) return;
    if (ADMIN_DATABASES.has(name)) throw new PgError(SqlState.FEATURE_NOT_SUPPORTED, `cannot ${verb} admin db: ${name}`, { severity: 'ERROR' });
    if (!knownDatabase(name)) throw new PgError(SqlState.INVALID_CATALOG_NAME, `no such database: ${name}`, { severity: 'ERROR' });
  };
  const notPaused = () => {
    if (server.pools.pauseMode !== 'none') throw notNow('already suspended/paused');
  };
  /** PAUSE and SUSPEND wait for connections in use at most shutdown_timeout; the pause stays. */
  const pauseWaiting = async (wait: Promise<void>, verb: string) => {
    try {
      await wait;
    } catch (err) {
      throw new PgError(SqlState.QUERY_CANCELED, `${verb} did not complete: ${(err as Error).message}`, { hint: 'Clients keep waiting; RESUME releases them.' });
    }
  };
  /** Applies a configuration as RELOAD and SIGHUP do; a failure leaves the running one. */
  const apply = async (next: () => Promise<Config>, failure: string) => {
    try {
      await server.reload(await next());
    } catch (err) {
      const reason = err instanceof PgError ? err.message : (err as Error).message;
      server.log.error({ err: reason }, 'configuration not reloaded; keeping the running one');
      throw new PgError(SqlState.CONFIG_FILE_ERROR, failure, { severity: 'ERROR', detail: reason });
    }
  };

  return {
    show: (what) => {
      if (what === 'FDS') {
        // PgBouncer's SHOW FDS hands its sockets, cancel keys and login
        // secrets to a new process (online restart); pgmux has none to hand over.
        throw new PgError(SqlState.FEATURE_NOT_SUPPORTED, 'SHOW FDS is not supported: pgmux has no online restart to pass its sockets to', {
          severity: 'ERROR',
          hint: 'SHOW SOCKETS lists every client and server connection.',
        });
      }
      return showCommand(server, what);
    },
    // PgBouncer's message, with the reasons in DETAIL.
    reload: () => apply(reloadSource, 'RELOAD failed, see logs for additional details'),
    set: async (name, value) => {
      const change = resolveSet(name, value);
      const current = server.currentConfig;
      const parsed = ConfigSchema.safeParse({ ...current, [change.key]: change.value });
      if (!parsed.success) {
        throw new PgError(SqlState.INVALID_PARAMETER_VALUE, `invalid value for parameter "${name}": "${value}"`, {
          severity: 'ERROR',
          detail: parsed.error.issues[0]?.message,
        });
      }
      await apply(async () => parsed.data, `SET ${name} failed`);
    },
    kill: (name) => {
      notPaused();
      mustKnow(name, 'kill');
      server.kill(name);
    },
    killClient: (id) => {
      if (!/^[0-9]+$/.test(id)) throw new PgError(SqlState.INVALID_PARAMETER_VALUE, 'invalid client pointer supplied', { severity: 'ERROR' });
      const client = [...server.sessions].find((c) => c.id === Number(id) && c.loggedIn);
      if (client === undefined) throw new PgError(SqlState.UNDEFINED_OBJECT, 'client not found', { severity: 'ERROR' });
      client.fatal(new PgError(SqlState.ADMIN_SHUTDOWN, 'admin forced disconnect'));
    },
    reconnect: (name) => {
      mustKnow(name, 'reconnect');
      server.reconnect(name);
    },
    pause: async (name) => {
      notPaused();
      mustKnow(name, 'pause');
      await pauseWaiting(server.pools.pause(name, s(server.currentConfig.shutdown_timeout)), 'PAUSE');
    },
    suspend: async () => {
      notPaused();
      if (server.pools.pausedDatabases().length > 0) throw notNow('cannot suspend with paused databases');
      await pauseWaiting(server.pools.pause(undefined, s(server.currentConfig.shutdown_timeout), 'suspend'), 'SUSPEND');
    },
    resume: (name) => {
      mustKnow(name, 'resume');
      if (name === undefined && server.pools.pauseMode === 'none' && server.pools.pausedDatabases().length === 0) throw notNow('pooler is not paused/suspended');
      if (name !== undefined && !server.pools.isNamePaused(name)) throw notNow(`database ${name} is not paused`);
      server.pools.resume(name);
    },
    disable: (name) => {
      mustKnow(name, 'disable');
      server.disabled.add(name);
    },
    enable: (name) => {
      mustKnow(name, 'enable');
      server.disabled.delete(name);
    },
    waitClose: async (name, signal) => {
      mustKnow(name, 'wait in');
      while (server.pools.closeNeeded(name) > 0 && !signal.aborted) await new Promise((r) => setTimeout(r, POLL_MS));
    },
    shutdown,
  };
}
