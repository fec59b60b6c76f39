/**
 * The Unix-domain socket clients on the same host connect through
 * (`psql -h /tmp -p 6432`): `.s.PGSQL.PORT` in unix_socket_dir, the name
 * PostgreSQL and PgBouncer give it, so libpq finds it from a directory and
 * a port alone. A directory starting with `@` names a socket in Linux's
 * abstract namespace, which has no file (no mode, group or leftover).
 */
import { chown, lstat, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';

/** The socket's path for a directory and port; an abstract one starts with a NUL byte. */
export function socketPath(dir: string, port: number): string {
  const name = `.s.PGSQL.${port}`;
  return dir.startsWith('@') ? `\0${dir.slice(1)}/${name}` : path.join(dir, name);
}

/** The path as people write it: an abstract socket with `@`, as libpq takes it. */
export function shownPath(file: string): string {
  return file.startsWith('\0') ? `@${file.slice(1)}` : file;
}

const isAbstract = (file: string) => file.startsWith('\0');

/**
 * What is wrong with creating the socket at `file`, or null when it can be
 * created. A socket file nobody listens on any more (its process died
 * without removing it) is removed, as PgBouncer does; one that answers
 * belongs to a running server and is never taken over.
 */
export async function socketProblem(file: string): Promise<string | null> {
  if (isAbstract(file)) return null;
  const st = await lstat(file).catch(() => null);
  if (st === null) return null;
  if (!st.isSocket()) return `cannot listen on ${file}: the path exists and is not a socket`;
  const code = await new Promise<string | null>((resolve) => {
    const probe = net.connect(file);
    probe.once('connect', () => {
      probe.destroy();
      resolve(null);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
  if (code === 'ECONNREFUSED') {
    await rm(file, { force: true });
    return null;
  }
  if (code === 'ENOENT') return null;
  if (code === null || code === 'EAGAIN') return `cannot listen on ${file}: another server is listening on it (another pgmux, PgBouncer or PostgreSQL?); choose another unix_socket_dir or port`;
  return `cannot listen on ${file}: ${code}`;
}

export interface SocketAccess {
  /** unix_socket_mode, octal. */
  mode: number;
  /** unix_socket_group's id. */
  gid?: number;
}

/**
 * Opens `server` on the socket. The mode is in force from the moment the
 * socket exists (the process's umask is narrowed around the bind, which
 * happens within listen()), so there is no moment in which it is more
 * open than unix_socket_mode says; the group follows at once.
 */
export async function listenOnSocket(server: net.Server, file: string, access: SocketAccess): Promise<void> {
  const problem = await socketProblem(file);
  if (problem !== null) throw new Error(problem);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const umask = isAbstract(file) ? null : process.umask(0o777 & ~access.mode);
    try {
      server.listen({ path: file }, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      if (umask !== null) process.umask(umask);
    }
  });
  if (access.gid !== undefined && !isAbstract(file)) await chown(file, -1, access.gid);
}

/**
 * Removes the socket file if it is still the one this process created
 * (same inode): closing the listener normally removes it already, and a
 * file some other process has put there since is not ours to remove.
 */
export async function removeSocket(file: string, ino: number | null): Promise<void> {
  if (isAbstract(file) || ino === null) return;
  const st = await lstat(file).catch(() => null);
  if (st !== null && st.ino === ino) await rm(file, { force: true }).catch(() => {});
}

/** The inode of the socket just created, to know it again at stop. */
export async function socketInode(file: string): Promise<number | null> {
  if (isAbstract(file)) return null;
  return (await stat(file).catch(() => null))?.ino ?? null;
}

/** unix_socket_mode as a number: `0777`, `777` and `0o777` are all octal. */
export function parseSocketMode(mode: string): number {
  return Number.parseInt(mode.replace(/^0o/i, ''), 8);
}
