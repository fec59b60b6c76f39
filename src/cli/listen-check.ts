/**
 * Whether pgmux can listen where it is told to, asked before anything is
 * started: `npm start` with the port taken should say so at once, not
 * after building a cluster it then has to take down again.
 */
import net from 'node:net';
import { bindsOf, type Bind } from '../listeners.ts';
import { socketPath, socketProblem } from '../unix-socket.ts';

/** host:port or [v6]:port, as the schema accepts `listen`; an empty host is every IPv4 address. */
function hostPort(listen: string): { host: string; port: number } | null {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):([0-9]+)$/.exec(listen.trim());
  return m === null ? null : { host: m[1] ?? (m[2] || '0.0.0.0'), port: Number(m[3]) };
}

/** The error code listening on `b` gives, or null when it is free (or shared, with `reusePort`). */
function probe(b: Bind, reusePort: boolean): Promise<string | null> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    srv.listen({ host: b.host, port: b.port, exclusive: true, ipv6Only: b.ipv6Only ?? false, reusePort }, () => srv.close(() => resolve(null)));
  });
}

/**
 * What is wrong with listening on `listen` (set by `setting`, e.g.
 * `listen`; several addresses comma-separated), in words that say how to
 * choose another address; null when every address is free. Port 0 (any
 * free port) is always free. With `reusePort` (so_reuseport), a port
 * another process listens on with it too is free to share.
 */
export async function listenProblem(listen: string, setting: string, reusePort = false): Promise<string | null> {
  let binds: Bind[];
  try {
    binds = await bindsOf(listen);
  } catch (err) {
    return `cannot listen on ${listen}: ${(err as Error).message}`;
  }
  for (const b of binds) {
    if (b.port === 0) continue;
    const code = await probe(b, reusePort);
    if (code === null || (b.optional === true && ['EAFNOSUPPORT', 'EADDRNOTAVAIL'].includes(code))) continue;
    const shown = b.host.includes(':') ? `[${b.host}]:${b.port}` : `${b.host}:${b.port}`;
    return describeListenError(code, binds.length > 1 ? shown : listen, setting);
  }
  return null;
}

/** What is wrong with the Unix-domain socket for `port` in `dir` (a live one), or null. */
export async function unixSocketProblem(dir: string, port: number): Promise<string | null> {
  if (dir === '' || port === 0) return null;
  return socketProblem(socketPath(dir, port)).catch((err: Error) => err.message);
}

/** The words for a listen error code, saying how to choose another address. */
function describeListenError(code: string, listen: string, setting: string): string {
  const flag = `--${setting.replaceAll('_', '-')}`;
  const addr = hostPort(listen);
  const other = addr === null ? 'HOST:PORT' : `${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${addr.port === 65535 ? addr.port - 1 : addr.port + 1}`;
  const how = `choose another with ${flag} ${other} (or ${setting} in the configuration file, PGMUX_${setting.toUpperCase()} in the environment; with npm start: npm start -- ${flag} ${other})`;
  if (code === 'EADDRINUSE') return `cannot listen on ${listen}: the address is already in use (another pgmux or PgBouncer?); ${how}`;
  if (code === 'EACCES') return `cannot listen on ${listen}: permission denied (ports under 1024 need privileges); ${how}`;
  if (code === 'EADDRNOTAVAIL') return `cannot listen on ${listen}: no network interface of this machine has that address; ${how}`;
  return `cannot listen on ${listen}: ${code}; ${how}`;
}
