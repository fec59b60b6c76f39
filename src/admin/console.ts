import { PgError, SqlState } from '../protocol/errors.ts';
import { TYPE_OID, commandComplete, dataRow, errorResponse, noticeResponseFields, readyForQuery, rowDescription } from '../protocol/messages.ts';
import { COMMANDS, parseCommand, type ShutdownMode } from './commands.ts';
import { CLIENT_PARAMETERS } from './set-setting.ts';

export { COMMANDS, SHOW_COMMANDS, parseCommand } from './commands.ts';

/** A column of an admin result set: its name and type, as PgBouncer names them. */
export type Column = [name: string, type: 'text' | 'int4' | 'int8' | 'float8' | 'bool'];
export type Cell = string | number | boolean | null;

export interface ResultSet {
  columns: Column[];
  rows: Cell[][];
}

/**
 * What the console reads from and does to the running pgmux. A database
 * name is a `[databases]` entry's: an endpoint's name, or the database
 * name clients log in with; absent, every database.
 */
export interface AdminBackend {
  show(what: string): Promise<ResultSet | null>;
  reload(): Promise<void>;
  set(key: string, value: string): Promise<void>;
  kill(database?: string): Promise<void>;
  killClient(id: string): Promise<void>;
  reconnect(database?: string): Promise<void>;
  pause(database?: string): Promise<void>;
  resume(database?: string): Promise<void>;
  suspend(): Promise<void>;
  disable(database: string): Promise<void>;
  enable(database: string): Promise<void>;
  /** Resolves once no server connection of the database that RECONNECT or RELOAD marked for closing is left, or when `signal` aborts. */
  waitClose(database: string | undefined, signal: AbortSignal): Promise<void>;
  shutdown(mode: ShutdownMode): void;
}

export type Rights = 'admin' | 'stats';

/** SHOW HELP: the commands in a NOTICE, as PgBouncer's console gives them. */
function help(): Buffer[] {
  return [noticeResponseFields({ severity: 'NOTICE', code: '00000', message: 'Console usage', detail: COMMANDS.map((c) => `\t${c}`).join('\n') }), commandComplete('SHOW')];
}

function encode(rs: ResultSet, tag: string): Buffer[] {
  const out = [rowDescription(rs.columns.map(([name, type]) => ({ name, type: TYPE_OID[type] })))];
  for (const row of rs.rows) out.push(dataRow(row.map((c) => (c === null ? null : typeof c === 'boolean' ? (c ? 't' : 'f') : String(c)))));
  out.push(commandComplete(`${tag} ${rs.rows.length}`.trim()));
  return out;
}

/** Runs one command; its reply up to, not including, ReadyForQuery. */
async function run(sql: string, backend: AdminBackend, rights: Rights, signal: AbortSignal): Promise<Buffer[]> {
  const cmd = parseCommand(sql);
  const readOnly = cmd.kind === 'show' || cmd.kind === 'show_parameter';
  if (!readOnly && rights !== 'admin') {
    throw new PgError(SqlState.INSUFFICIENT_PRIVILEGE, `permission denied for ${cmd.kind.toUpperCase()}`, {
      hint: 'Users in stats_users may only run SHOW commands; admin_users may run all.',
    });
  }
  switch (cmd.kind) {
    case 'show':
      if (cmd.what === 'HELP') return help();
      return encode((await backend.show(cmd.what))!, 'SHOW');
    case 'show_parameter':
      // What a driver asks of any server; the console has these fixed.
      return encode({ columns: [[cmd.name, 'text']], rows: [[CLIENT_PARAMETERS.get(cmd.name)!]] }, 'SHOW');
    case 'reload':
      await backend.reload();
      return [commandComplete('RELOAD')];
    case 'set':
      if (CLIENT_PARAMETERS.has(cmd.key.toLowerCase())) {
        // A driver setting up its session: nothing to change, as PgBouncer answers it.
        return [noticeResponseFields({ severity: 'NOTICE', code: '00000', message: 'SET ignored' }), commandComplete('SET')];
      }
      await backend.set(cmd.key, cmd.value);
      // PgBouncer's tag says what was set.
      return [commandComplete(`SET ${cmd.key}=${cmd.value}`)];
    case 'kill':
      await backend.kill(cmd.database);
      return [commandComplete('KILL')];
    case 'kill_client':
      await backend.killClient(cmd.id);
      return [commandComplete('KILL_CLIENT')];
    case 'reconnect':
      await backend.reconnect(cmd.database);
      return [commandComplete('RECONNECT')];
    case 'pause':
      await backend.pause(cmd.database);
      return [commandComplete('PAUSE')];
    case 'resume':
      await backend.resume(cmd.database);
      return [commandComplete('RESUME')];
    case 'suspend':
      await backend.suspend();
      return [commandComplete('SUSPEND')];
    case 'disable':
      await backend.disable(cmd.database);
      return [commandComplete('DISABLE')];
    case 'enable':
      await backend.enable(cmd.database);
      return [commandComplete('ENABLE')];
    case 'wait_close':
      await backend.waitClose(cmd.database, signal);
      return [commandComplete('WAIT_CLOSE')];
    case 'shutdown':
      setImmediate(() => backend.shutdown(cmd.mode));
      return [commandComplete('SHUTDOWN')];
  }
}

/**
 * Answers one simple Query of the admin console: the whole reply, up to
 * and including ReadyForQuery. Users in stats_users may only SHOW.
 * `signal` aborts when the console's client leaves, ending a wait.
 */
export async function runAdminQuery(sql: string, backend: AdminBackend, rights: Rights, signal: AbortSignal = new AbortController().signal): Promise<Buffer> {
  const out: Buffer[] = [];
  try {
    if (sql.trim().replace(/;\s*$/, '') === '') out.push(Buffer.from([0x49, 0, 0, 0, 4])); // EmptyQueryResponse
    else out.push(...(await run(sql, backend, rights, signal)));
  } catch (err) {
    // The console goes on after a failed command: ERROR, never FATAL.
    const e = err instanceof PgError ? err : new PgError(SqlState.INTERNAL_ERROR, (err as Error).message);
    out.push(errorResponse({ ...e.fields(), severity: 'ERROR' }));
  }
  out.push(readyForQuery('I'));
  return Buffer.concat(out);
}
