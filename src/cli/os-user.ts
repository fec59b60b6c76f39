/**
 * `user` (-u), as PgBouncer's: pgmux started as root opens its listeners
 * (ports under 1024, a socket in a root-owned directory) and then goes on
 * as that user. Started as anyone else it can only already be that user;
 * otherwise it refuses to start, rather than run with other rights than
 * the configuration asks for.
 */
import { chownSync } from 'node:fs';
import os from 'node:os';
import { osUser, type OsUser } from '../os-ids.ts';

/** Whom to switch to, or what stops it, checked before anything starts. */
export function targetUser(user: string): OsUser | string {
  const target = osUser(user);
  if (target === null) return `user: no OS user "${user}" on this system`;
  const uid = process.getuid?.();
  if (uid === undefined) return 'user: switching OS users is not supported on this system';
  if (uid !== 0 && uid !== target.uid) {
    return `cannot switch to OS user "${user}": pgmux runs as "${os.userInfo().username}", and only root may switch; start pgmux as ${user}, or as root`;
  }
  return target;
}

/**
 * Becomes `target` (its groups, then its user id). The files pgmux made
 * before (the socket, the pid_file) are given to it first, so it may
 * remove them when it stops, also from a sticky directory such as /tmp.
 */
export function switchUser(target: OsUser, files: { path: string; keepGroup: boolean }[]): void {
  if (process.getuid?.() === target.uid) return;
  for (const f of files) chownSync(f.path, target.uid, f.keepGroup ? -1 : target.gid);
  // The user's supplementary groups as the system lists them (initgroups(3)).
  (process as NodeJS.Process & { initgroups(user: string, extraGroup: number): void }).initgroups(target.name, target.gid);
  process.setgid!(target.gid);
  process.setuid!(target.uid);
}
