/**
 * The admin console's SET key = value: a pgmux setting, or a PgBouncer one
 * under its own name (pgbouncer-keys.ts says which pgmux setting each maps
 * to), turned into one pgmux setting and its typed value. Applying it is
 * the caller's: the running configuration with that one value changed goes
 * through the same reload as RELOAD.
 */
import { scalarSettings, type ScalarSetting } from '../config/introspect.ts';
import { PGBOUNCER_KEYS } from '../config/pgbouncer-keys.ts';
import { ConfigSchema, type Config } from '../config/schema.ts';
import { PgError, SqlState } from '../protocol/errors.ts';

/** pgmux settings a reload does not apply: they are read once, at start. */
export const RESTART_ONLY = new Set(['listen', 'log_format', 'log_file', 'pid_file', 'metrics_listen', 'peer_id', 'cancel_store', 'workers']);

/**
 * PgBouncer's settings that a RELOAD leaves as they are (its SHOW CONFIG
 * says changeable = no), where pgmux cannot change them either. PgBouncer
 * also lists track_extra_parameters; pgmux applies that one on reload.
 */
const PGBOUNCER_RESTART_ONLY = new Set([
  'disable_pqexec', 'job_name', 'listen_addr', 'listen_backlog', 'listen_port', 'pidfile', 'pkt_buf', 'resolv_conf', 'service_name',
  'so_reuseport', 'unix_socket_dir', 'unix_socket_group', 'unix_socket_mode', 'user',
  // pgmux reads the path once; SIGHUP reopens the file at that path.
  'logfile',
]);

/** Whether SET (and RELOAD) changes a pgmux setting on a running pgmux: SHOW CONFIG's `changeable`. */
export function changeableOnline(key: string): boolean {
  // A pgmux setting under PgBouncer's name (unix_socket_dir, user) is read at start as PgBouncer's is.
  return !RESTART_ONLY.has(key) && !PGBOUNCER_RESTART_ONLY.has(key);
}

/**
 * Parameters drivers set on any connection; PgBouncer answers them with a
 * NOTICE and changes nothing, so a driver's session setup does not fail on
 * the console. SHOW of one gives this value.
 */
export const CLIENT_PARAMETERS: ReadonlyMap<string, string> = new Map([
  ['client_encoding', 'UTF8'],
  ['default_transaction_isolation', 'read committed'],
  ['standard_conforming_strings', 'on'],
  ['datestyle', 'ISO'],
  ['timezone', 'UTC'],
  ['extra_float_digits', '2'],
]);

export interface SettingChange {
  /** The pgmux setting. */
  key: keyof Config & string;
  value: unknown;
}

const INTEGER = /^[+-]?[0-9]+$/;
const SECONDS = /^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;
// PostgreSQL's spellings of a boolean, and PgBouncer's 0/1.
const TRUE = new Set(['on', 'true', 'yes', '1']);
const FALSE = new Set(['off', 'false', 'no', '0']);

const invalid = (name: string, value: string, detail?: string) =>
  new PgError(SqlState.INVALID_PARAMETER_VALUE, `invalid value for parameter "${name}": "${value}"`, { severity: 'ERROR', detail });

const restartNeeded = (name: string) =>
  new PgError(SqlState.CANT_CHANGE_RUNTIME_PARAM, `parameter "${name}" cannot be changed without restarting pgmux`, {
    severity: 'ERROR',
    hint: 'Change it in the configuration file and restart pgmux.',
  });

/** The value as the setting is typed; `name` is what the user called it. */
function typed(setting: ScalarSetting, name: string, value: string): unknown {
  switch (setting.kind) {
    case 'integer':
      if (!INTEGER.test(value)) throw invalid(name, value, 'Expected an integer.');
      return Number(value);
    case 'number':
      if (!SECONDS.test(value)) throw invalid(name, value, 'Expected a number of seconds.');
      return Number(value);
    case 'boolean': {
      const v = value.toLowerCase();
      if (TRUE.has(v)) return true;
      if (FALSE.has(v)) return false;
      throw invalid(name, value, 'Expected on or off.');
    }
    case 'string':
      // Unset by default: an empty value unsets it, as in pgbouncer.ini.
      if (value === '' && setting.default === undefined) return undefined;
      return value;
  }
}

function pgmuxSetting(key: string): ScalarSetting | undefined {
  return scalarSettings().find((s) => s.key === key);
}

/** A PgBouncer name whose pgmux setting has another name or other values. */
function pgbouncerSpecial(name: string, value: string): SettingChange | undefined {
  switch (name) {
    case 'verbose': {
      if (!INTEGER.test(value)) throw invalid(name, value, 'Expected an integer.');
      const level = Number(value);
      return { key: 'log_level', value: level >= 2 ? 'trace' : level === 1 ? 'debug' : 'info' };
    }
    case 'auth_type':
      // PgBouncer's plain is PostgreSQL's password; other values are the schema's to judge.
      return value.toLowerCase() === 'plain' ? { key: 'auth_type', value: 'password' } : undefined;
    default:
      return undefined;
  }
}

/**
 * What SET name = value changes, by pgmux's name or PgBouncer's (case does
 * not matter). Throws, in PostgreSQL's words, for a name neither knows
 * (42704), a PgBouncer setting pgmux has no equivalent of (0A000), one
 * only a restart changes (55P02) and a value the setting cannot take
 * (22023); the schema's own limits are checked by the caller.
 */
export function resolveSet(rawName: string, value: string): SettingChange {
  const name = rawName.toLowerCase();
  // First: a name both have (auth_type) takes PgBouncer's values too.
  const special = pgbouncerSpecial(name, value);
  if (special !== undefined) return special;
  if (!changeableOnline(name)) throw restartNeeded(name);
  const own = pgmuxSetting(name);
  if (own !== undefined) return { key: own.key, value: typed(own, name, value) };
  if (Object.hasOwn(ConfigSchema.shape, name)) {
    throw new PgError(SqlState.FEATURE_NOT_SUPPORTED, `"${name}" cannot be changed with SET`, {
      severity: 'ERROR',
      hint: 'It is a table of settings: change it in the configuration file and RELOAD.',
    });
  }
  const rule = PGBOUNCER_KEYS[name];
  if (rule === undefined) {
    throw new PgError(SqlState.UNDEFINED_OBJECT, `unrecognized configuration parameter "${name}"`, {
      severity: 'ERROR',
      hint: 'SHOW CONFIG lists the settings; PgBouncer\'s names are taken too.',
    });
  }
  if (rule.kind === 'refuse') {
    throw new PgError(SqlState.FEATURE_NOT_SUPPORTED, `PgBouncer's setting "${name}" is not supported`, { severity: 'ERROR', detail: `${rule.why}.` });
  }
  const target = pgmuxSetting(rule.kind === 'map' ? (rule.to ?? name) : name);
  if (target === undefined) {
    throw new PgError(SqlState.FEATURE_NOT_SUPPORTED, `pgmux has no setting like PgBouncer's "${name}"`, {
      severity: 'ERROR',
      hint: 'docs/configuration.md lists pgmux\'s settings and the PgBouncer setting each stands for.',
    });
  }
  if (!changeableOnline(target.key)) throw restartNeeded(name);
  return { key: target.key, value: typed(target, name, value) };
}
