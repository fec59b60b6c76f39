/**
 * OS user and group names as ids. Node.js has no getpwnam or getgrnam, so
 * the system's own tools answer (`id`, `getent`): they ask whatever the
 * host's name service is (files, LDAP, …), as PgBouncer's lookups do.
 */
import { execFileSync } from 'node:child_process';

const NUMERIC = /^[0-9]+$/;

function ask(cmd: string, args: string[]): string | null {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

/** A group's id, from its name or number; null for a group the system does not know. */
export function groupId(group: string): number | null {
  if (NUMERIC.test(group)) return Number(group);
  const entry = ask('getent', ['group', group]);
  const gid = entry?.split(':')[2];
  return gid !== undefined && NUMERIC.test(gid) ? Number(gid) : null;
}

export interface OsUser {
  name: string;
  uid: number;
  /** The user's primary group. */
  gid: number;
}

/** A user's ids, from its name or number; null for a user the system does not know. */
export function osUser(user: string): OsUser | null {
  const uid = ask('id', ['-u', '--', user]);
  const gid = ask('id', ['-g', '--', user]);
  const name = ask('id', ['-un', '--', user]);
  if (uid === null || gid === null || name === null || !NUMERIC.test(uid) || !NUMERIC.test(gid)) return null;
  return { name, uid: Number(uid), gid: Number(gid) };
}
