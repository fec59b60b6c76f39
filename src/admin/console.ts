import { PgError, SqlState } from '../protocol/errors.ts';
import { TYPE_OID, commandComplete, dataRow, errorResponse, noticeResponseFields, readyForQuery, rowDescription } from '../protocol/messages.ts';

/** A column of an admin result set: its name and type, as PgBouncer names them. */
export type Column = [name: string, type: 'text' | 'int4' | 'int8' | 'float8' | 'bool'];
export type Cell = string | number | boolean | null;

export interface ResultSet {
  columns: Column[];
  rows: Cell[][];
}

/** What the console reads from and does to the running pgmux. */
export interface AdminBackend {
  show(what: string): ResultSet | null;
  reload(): Promise<void>;
  set(key: string, value: string): Promise<void>;
  kill(database: string): void;
  reconnect(database?: string): void;
  pause(database?: string): Promise<void>;
  resume(database?: string): void;
  shutdown(mode: 'now' | 'wait_for_clients' | 'wait_for_servers'): void;
}

export const SHOW_COMMANDS = ['HELP', 'POOLS', 'CLIENTS', 'SERVERS', 'STATS', 'STATS_TOTALS', 'STATS_AVERAGES', 'DATABASES', 'USERS', 'CONFIG', 'VERSION', 'LISTS', 'ENDPOINTS', 'NODES'];

export type Rights = 'admin' | 'stats';

type Command =
  | { kind: 'show'; what: string }
  | { kind: 'reload' }
  | { kind: 'set'; key: string; value: string }
  | { kind: 'kill'; database: string }
  | { kind: 'reconnect'; database?: string }
  | { kind: 'pause'; database?: string }
  | { kind: 'resume'; database?: string }
  | { kind: 'shutdown'; mode: 'now' | 'wait_for_clients' | 'wait_for_servers' };

/** Splits the console's tiny language into words; quoted values keep their spaces. */
function words(sql: string): string[] {
  const out: string[] = [];
  const re = /\s*(?:'((?:[^']|'')*)'|"((?:[^"]|"")*)"|([^\s=;'"]+)|(=))/y;
  let m: RegExpExecArray | null;
  let rest = sql.trim().replace(/;\s*$/, '');
  re.lastIndex = 0;
  while (re.lastIndex < rest.length && (m = re.exec(rest)) !== null) {
    out.push(m[1] !== undefined ? m[1].replace(/''/g, "'") : m[2] !== undefined ? m[2].replace(/""/g, '"') : (m[3] ?? m[4]));
  }
  if (re.lastIndex < rest.length && rest.slice(re.lastIndex).trim() !== '') {
    throw new PgError(SqlState.SYNTAX_ERROR, `syntax error at or near "${rest.slice(re.lastIndex).trim().slice(0, 20)}"`);
  }
  rest = '';
  return out;
}

export function parseCommand(sql: string): Command {
  const w = words(sql);
  const verb = (w[0] ?? '').toUpperCase();
  const syntax = () =>
    new PgError(SqlState.SYNTAX_ERROR, `invalid command "${sql.trim().slice(0, 60)}"`, {
      hint: `Commands: ${COMMANDS.join(', ')}.`,
    });
  switch (verb) {
    case 'SHOW': {
      const what = (w[1] ?? '').toUpperCase();
      if (w.length !== 2 || !SHOW_COMMANDS.includes(what)) {
        throw new PgError(SqlState.SYNTAX_ERROR, `unknown SHOW command "${w.slice(1).join(' ')}"`, { hint: `SHOW ${SHOW_COMMANDS.join(', ')}` });
      }
      return { kind: 'show', what };
    }
    case 'RELOAD':
      if (w.length !== 1) throw syntax();
      return { kind: 'reload' };
    case 'SET':
      if (w.length !== 4 || w[2] !== '=') throw syntax();
      return { kind: 'set', key: w[1].toLowerCase(), value: w[3] };
    case 'KILL':
      if (w.length !== 2) throw syntax();
      return { kind: 'kill', database: w[1] };
    case 'RECONNECT':
    case 'PAUSE':
    case 'RESUME':
      if (w.length > 2) throw syntax();
      return { kind: verb.toLowerCase() as 'reconnect', database: w[1] };
    case 'SHUTDOWN': {
      const mode = (w[1] ?? '').toUpperCase();
      if (w.length === 1) return { kind: 'shutdown', mode: 'now' };
      if (w.length === 2 && (mode === 'WAIT_FOR_CLIENTS' || mode === 'WAIT_FOR_SERVERS')) return { kind: 'shutdown', mode: mode.toLowerCase() as 'wait_for_clients' };
      throw syntax();
    }
    default:
      throw syntax();
  }
}

/** Every command, one a line, as SHOW HELP lists them. */
export const COMMANDS = [
  `SHOW ${SHOW_COMMANDS.join('|')}`,
  'SET key = value',
  'RELOAD',
  'PAUSE [db]',
  'RESUME [db]',
  'KILL db',
  'RECONNECT [db]',
  'SHUTDOWN [WAIT_FOR_CLIENTS|WAIT_FOR_SERVERS]',
];

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

/**
 * Answers one simple Query of the admin console: the whole reply, up to
 * and including ReadyForQuery. Users in stats_users may only SHOW.
 */
export async function runAdminQuery(sql: string, backend: AdminBackend, rights: Rights): Promise<Buffer> {
  const out: Buffer[] = [];
  try {
    if (sql.trim().replace(/;\s*$/, '') === '') {
      out.push(Buffer.from([0x49, 0, 0, 0, 4])); // EmptyQueryResponse
    } else {
      const cmd = parseCommand(sql);
      if (cmd.kind !== 'show' && rights !== 'admin') {
        throw new PgError(SqlState.INSUFFICIENT_PRIVILEGE, `permission denied for ${cmd.kind.toUpperCase()}`, {
          hint: 'Users in stats_users may only run SHOW commands; admin_users may run all.',
        });
      }
      switch (cmd.kind) {
        case 'show': {
          if (cmd.what === 'HELP') {
            out.push(...help());
            break;
          }
          const rs = backend.show(cmd.what)!;
          out.push(...encode(rs, 'SHOW'));
          break;
        }
        case 'reload':
          await backend.reload();
          out.push(commandComplete('RELOAD'));
          break;
        case 'set':
          await backend.set(cmd.key, cmd.value);
          out.push(commandComplete('SET'));
          break;
        case 'kill':
          backend.kill(cmd.database);
          out.push(commandComplete('KILL'));
          break;
        case 'reconnect':
          backend.reconnect(cmd.database);
          out.push(commandComplete('RECONNECT'));
          break;
        case 'pause':
          await backend.pause(cmd.database);
          out.push(commandComplete('PAUSE'));
          break;
        case 'resume':
          backend.resume(cmd.database);
          out.push(commandComplete('RESUME'));
          break;
        case 'shutdown':
          out.push(commandComplete('SHUTDOWN'));
          setImmediate(() => backend.shutdown(cmd.mode));
          break;
      }
    }
  } catch (err) {
    // The console goes on after a failed command: ERROR, never FATAL.
    const e = err instanceof PgError ? err : new PgError(SqlState.INTERNAL_ERROR, (err as Error).message);
    out.push(errorResponse({ ...e.fields(), severity: 'ERROR' }));
  }
  out.push(readyForQuery('I'));
  return Buffer.concat(out);
}
