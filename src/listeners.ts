/**
 * Where clients connect: a TCP listener for each address of `listen` and
 * the Unix-domain socket in unix_socket_dir, all handing their
 * connections to the same place. As PgBouncer's listen_addr, `listen` is
 * a list; `*` is every IPv4 and IPv6 address, and a host name every
 * address it resolves to.
 */
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { groupId } from './os-ids.ts';
import { listenOnSocket, parseSocketMode, removeSocket, socketInode, socketPath } from './unix-socket.ts';

export interface ListenAddress {
  host: string;
  port: number;
}

/** Parses "host:port" or "[v6]:port"; an empty host is every IPv4 address. */
export function parseListen(listen: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen.trim());
  if (m === null) throw new Error(`listen: expected host:port, got "${listen}"`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port: Number(m[3]) };
}

/** The comma-separated addresses of `listen`. */
export function parseListenList(listen: string): ListenAddress[] {
  return listen
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '')
    .map(parseListen);
}

/** One address as the system binds it. */
export interface Bind extends ListenAddress {
  /** IPv6 only, so that the IPv4 listener of the same `*` keeps IPv4. */
  ipv6Only?: boolean;
  /** The IPv6 half of `*`, left out on a host without IPv6. */
  optional?: boolean;
}

/** What `listen` asks for, address by address: `*` is 0.0.0.0 and ::, a name each of its addresses. */
export async function bindsOf(listen: string): Promise<Bind[]> {
  const out: Bind[] = [];
  for (const a of parseListenList(listen)) {
    if (a.host === '*') {
      out.push({ host: '0.0.0.0', port: a.port }, { host: '::', port: a.port, ipv6Only: true, optional: true });
    } else if (net.isIP(a.host) !== 0) {
      out.push(a);
    } else {
      for (const { address } of await lookup(a.host, { all: true })) out.push({ host: address, port: a.port });
    }
  }
  const seen = new Set<string>();
  return out.filter((b) => {
    const id = `${b.host}|${b.port}`;
    return seen.has(id) ? false : (seen.add(id), true);
  });
}

/** A host without IPv6 refuses an IPv6 address with one of these. */
const NO_IPV6 = new Set(['EAFNOSUPPORT', 'EADDRNOTAVAIL', 'EPROTONOSUPPORT']);

export interface ListenSettings {
  listen: string;
  /** Empty: no Unix-domain socket. */
  unixSocketDir: string;
  unixSocketMode: string;
  unixSocketGroup?: string;
  /** so_reuseport: other processes that set it too may listen on the same TCP ports. */
  reusePort?: boolean;
}

/** Where pgmux listens, once open. */
export interface Listening {
  tcp: ListenAddress[];
  /** The Unix-domain socket's path, if there is one. */
  unixSocket: string | null;
}

export class Listeners {
  private readonly accept: (socket: net.Socket, unix: boolean) => void;
  private readonly tcp: net.Server[] = [];
  private unix: net.Server | null = null;
  private unixFile: { path: string; ino: number | null } | null = null;

  /** `accept` gets each connection, paused (pauseOnConnect), and whether it came through the Unix-domain socket. */
  constructor(accept: (socket: net.Socket, unix: boolean) => void) {
    this.accept = accept;
  }

  private server(unix: boolean): net.Server {
    return net.createServer({ noDelay: !unix, pauseOnConnect: true }, (socket) => this.accept(socket, unix));
  }

  /**
   * Opens every listener; on any failure closes those already open and
   * throws. Port 0 asks for a free port once: the addresses that ask for
   * it share the port the first one got. The Unix-domain socket takes the
   * first TCP listener's port, as PgBouncer's takes listen_port.
   */
  async open(s: ListenSettings): Promise<Listening> {
    try {
      let free = 0;
      for (const b of await bindsOf(s.listen)) {
        const port = b.port === 0 ? free : b.port;
        const srv = this.server(false);
        try {
          await listenTcp(srv, { ...b, port }, s.reusePort === true);
        } catch (err) {
          if (b.optional && NO_IPV6.has((err as NodeJS.ErrnoException).code ?? '')) continue;
          throw err;
        }
        this.tcp.push(srv);
        if (b.port === 0 && free === 0) free = (srv.address() as net.AddressInfo).port;
      }
      const first = this.tcp[0]?.address() as net.AddressInfo | undefined;
      if (s.unixSocketDir !== '' && first !== undefined) {
        const file = socketPath(s.unixSocketDir, first.port);
        let gid: number | undefined;
        if (s.unixSocketGroup !== undefined) {
          const id = groupId(s.unixSocketGroup);
          if (id === null) throw new Error(`unix_socket_group: no group "${s.unixSocketGroup}" on this system`);
          gid = id;
        }
        const srv = this.server(true);
        await listenOnSocket(srv, file, { mode: parseSocketMode(s.unixSocketMode), gid });
        this.unix = srv;
        this.unixFile = { path: file, ino: await socketInode(file) };
      }
    } catch (err) {
      await this.close();
      throw err;
    }
    return this.listening();
  }

  listening(): Listening {
    return {
      tcp: this.tcp.map((srv) => {
        const a = srv.address() as net.AddressInfo;
        return { host: a.address, port: a.port };
      }),
      unixSocket: this.unixFile?.path ?? null,
    };
  }

  /**
   * Stops accepting. Resolves once the listeners have closed and the
   * socket file is gone; connections already accepted are the sessions'
   * to end.
   */
  close(): Promise<void> {
    this.closed ??= this.closeNow();
    return this.closed;
  }

  private closed: Promise<void> | null = null;

  private async closeNow(): Promise<void> {
    const servers = [...this.tcp, ...(this.unix === null ? [] : [this.unix])];
    this.tcp.length = 0;
    this.unix = null;
    await Promise.all(servers.map((srv) => new Promise<void>((resolve) => (srv.listening ? srv.close(() => resolve()) : resolve()))));
    const file = this.unixFile;
    this.unixFile = null;
    if (file !== null) await removeSocket(file.path, file.ino);
  }
}

function listenTcp(srv: net.Server, b: Bind, reusePort: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen({ host: b.host, port: b.port, ipv6Only: b.ipv6Only ?? false, reusePort }, () => {
      srv.off('error', reject);
      resolve();
    });
  });
}
