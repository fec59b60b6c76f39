/**
 * Replication connections: a startup packet with `replication=true`
 * (physical: pg_receivewal, pg_basebackup, a standby) or
 * `replication=database` (logical: pg_recvlogical, a subscription). As
 * PgBouncer 1.23 and later, pgmux passes them through to the primary, the
 * server getting the same parameter: each on a server connection of its
 * own, opened for it and closed with it, never pooled, since a WAL sender
 * serves nothing else and keeps its state to the end.
 */
import { PgError, SqlState } from '../protocol/errors.ts';

export type Replication = 'physical' | 'logical';

/** Spellings of a boolean PostgreSQL takes (parse_bool): a prefix of true, yes, false or no; on, off, 1, 0. */
function parseBool(value: string): boolean | null {
  const v = value.trim().toLowerCase();
  if (v === '') return null;
  if ('true'.startsWith(v) || 'yes'.startsWith(v) || v === 'on' || v === '1') return true;
  if ('false'.startsWith(v) || 'no'.startsWith(v) || v === 'off' || v === 'of' || v === '0') return false;
  return null;
}

/**
 * What the client's `replication` parameter asks for, read as PostgreSQL
 * reads it: null for a normal connection; a value PostgreSQL would refuse
 * is refused in its words.
 */
export function replicationOf(params: ReadonlyMap<string, string>): Replication | null {
  const value = params.get('replication');
  if (value === undefined) return null;
  if (value.trim().toLowerCase() === 'database') return 'logical';
  const on = parseBool(value);
  if (on === null) {
    throw new PgError(SqlState.INVALID_PARAMETER_VALUE, `invalid value for parameter "replication": "${value}"`, {
      hint: 'Valid values are: "false", 0, "true", 1, "database".',
    });
  }
  return on ? 'physical' : null;
}

/** The parameter as the server gets it. */
export function replicationParameter(kind: Replication): string {
  return kind === 'logical' ? 'database' : 'true';
}
