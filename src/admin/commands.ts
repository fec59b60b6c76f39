/**
 * The admin console's language, as PgBouncer's console reads it: a command
 * word and at most one argument, or SET key = value (or TO), with an
 * optional semicolon. Names may be double-quoted, values single-quoted.
 */
import { PgError, SqlState } from '../protocol/errors.ts';
import { CLIENT_PARAMETERS } from './set-setting.ts';

export const SHOW_COMMANDS = [
  'HELP', 'POOLS', 'CLIENTS', 'SERVERS', 'SOCKETS', 'ACTIVE_SOCKETS', 'FDS', 'STATE', 'STATS', 'STATS_TOTALS', 'STATS_AVERAGES',
  'DATABASES', 'USERS', 'CONFIG', 'VERSION', 'LISTS', 'ENDPOINTS', 'NODES', 'PEERS', 'PEER_POOLS',
];

export type ShutdownMode = 'now' | 'wait_for_clients' | 'wait_for_servers';

export type Command =
  | { kind: 'show'; what: string }
  | { kind: 'show_parameter'; name: string }
  | { kind: 'reload' }
  | { kind: 'set'; key: string; value: string }
  | { kind: 'kill'; database?: string }
  | { kind: 'kill_client'; id: string }
  | { kind: 'reconnect'; database?: string }
  | { kind: 'pause'; database?: string }
  | { kind: 'resume'; database?: string }
  | { kind: 'suspend' }
  | { kind: 'disable'; database: string }
  | { kind: 'enable'; database: string }
  | { kind: 'wait_close'; database?: string }
  | { kind: 'shutdown'; mode: ShutdownMode };

/** Every command, one a line, as SHOW HELP lists them. */
export const COMMANDS = [
  `SHOW ${SHOW_COMMANDS.join('|')}`,
  'SET key = value',
  'RELOAD',
  'PAUSE [db]',
  'RESUME [db]',
  'DISABLE db',
  'ENABLE db',
  'RECONNECT [db]',
  'KILL [db]',
  'KILL_CLIENT id',
  'SUSPEND',
  'SHUTDOWN [WAIT_FOR_CLIENTS|WAIT_FOR_SERVERS]',
  'WAIT_CLOSE [db]',
];

/** Splits the console's tiny language into words; quoted values keep their spaces. */
function words(sql: string): string[] {
  const out: string[] = [];
  const re = /\s*(?:'((?:[^']|'')*)'|"((?:[^"]|"")*)"|([^\s=;'"]+)|(=))/y;
  let m: RegExpExecArray | null;
  const rest = sql.trim().replace(/;\s*$/, '');
  re.lastIndex = 0;
  while (re.lastIndex < rest.length && (m = re.exec(rest)) !== null) {
    out.push(m[1] !== undefined ? m[1].replace(/''/g, "'") : m[2] !== undefined ? m[2].replace(/""/g, '"') : (m[3] ?? m[4]));
  }
  if (re.lastIndex < rest.length && rest.slice(re.lastIndex).trim() !== '') {
    throw new PgError(SqlState.SYNTAX_ERROR, `syntax error at or near "${rest.slice(re.lastIndex).trim().slice(0, 20)}"`, { severity: 'ERROR' });
  }
  return out;
}

/** A command that names one database, in PgBouncer's words when it names none. */
function oneDatabase(w: string[], syntax: () => PgError): string {
  if (w.length === 1) throw new PgError(SqlState.SYNTAX_ERROR, 'a database is required', { severity: 'ERROR' });
  if (w.length > 2) throw syntax();
  return w[1];
}

export function parseCommand(sql: string): Command {
  const w = words(sql);
  const verb = (w[0] ?? '').toUpperCase();
  const syntax = () =>
    new PgError(SqlState.SYNTAX_ERROR, `invalid command "${sql.trim().slice(0, 60)}"`, {
      severity: 'ERROR',
      hint: `Commands: ${COMMANDS.join(', ')}.`,
    });
  const noArgument = () => {
    if (w.length !== 1) throw syntax();
  };
  switch (verb) {
    case 'SHOW': {
      const what = (w[1] ?? '').toUpperCase();
      if (w.length === 2 && CLIENT_PARAMETERS.has(w[1].toLowerCase())) return { kind: 'show_parameter', name: w[1].toLowerCase() };
      if (w.length !== 2 || !SHOW_COMMANDS.includes(what)) {
        throw new PgError(SqlState.SYNTAX_ERROR, `unknown SHOW command "${w.slice(1).join(' ')}"`, { severity: 'ERROR', hint: `SHOW ${SHOW_COMMANDS.join(', ')}` });
      }
      return { kind: 'show', what };
    }
    case 'RELOAD':
      noArgument();
      return { kind: 'reload' };
    case 'SUSPEND':
      noArgument();
      return { kind: 'suspend' };
    case 'SET':
      if (w.length !== 4 || (w[2] !== '=' && w[2].toUpperCase() !== 'TO')) throw syntax();
      return { kind: 'set', key: w[1], value: w[3] };
    case 'KILL_CLIENT':
      // PgBouncer's words for a missing or unreadable id alike.
      if (w.length !== 2) throw new PgError(SqlState.SYNTAX_ERROR, 'invalid client pointer supplied', { severity: 'ERROR' });
      return { kind: 'kill_client', id: w[1] };
    case 'DISABLE':
    case 'ENABLE':
      return { kind: verb.toLowerCase() as 'disable', database: oneDatabase(w, syntax) };
    case 'KILL':
    case 'RECONNECT':
    case 'PAUSE':
    case 'RESUME':
    case 'WAIT_CLOSE':
      if (w.length > 2) throw syntax();
      return { kind: verb.toLowerCase() as 'kill', database: w[1] };
    case 'SHUTDOWN': {
      const mode = (w[1] ?? '').toUpperCase();
      if (w.length === 1) return { kind: 'shutdown', mode: 'now' };
      if (w.length === 2 && (mode === 'WAIT_FOR_CLIENTS' || mode === 'WAIT_FOR_SERVERS')) return { kind: 'shutdown', mode: mode.toLowerCase() as ShutdownMode };
      throw syntax();
    }
    default:
      throw syntax();
  }
}
