import { randomInt } from 'node:crypto';
import net from 'node:net';
import { cancelRequest } from '../protocol/messages.ts';

/** The server connection a cancel should reach, if the client is using one. */
export interface CancelTarget {
  currentServer(): { host: string; port: number; processId: number; secretKey: number } | null;
}

/**
 * Maps the BackendKeyData pgmux gave each client to that client. A
 * CancelRequest is forwarded, over a new connection as PostgreSQL expects,
 * to the backend serving the client at that moment; a wrong key or an idle
 * client cancels nothing.
 */
export class CancelRegistry {
  private readonly byProcessId = new Map<number, { secretKey: number; target: CancelTarget }>();

  /** A fresh random key for a client. */
  register(target: CancelTarget): { processId: number; secretKey: number } {
    let processId: number;
    do processId = randomInt(1, 0x7fffffff);
    while (this.byProcessId.has(processId));
    const secretKey = randomInt(-0x80000000, 0x7fffffff);
    this.byProcessId.set(processId, { secretKey, target });
    return { processId, secretKey };
  }

  unregister(processId: number): void {
    this.byProcessId.delete(processId);
  }

  /** Returns true when a cancel was sent to a server. */
  cancel(processId: number, secretKey: number): boolean {
    const entry = this.byProcessId.get(processId);
    if (entry === undefined || entry.secretKey !== secretKey) return false;
    const server = entry.target.currentServer();
    if (server === null) return false;
    sendCancel(server.host, server.port, server.processId, server.secretKey);
    return true;
  }
}

export function sendCancel(host: string, port: number, processId: number, secretKey: number): void {
  const s = net.connect({ host, port }, () => s.end(cancelRequest(processId, secretKey)));
  s.on('error', () => s.destroy());
  s.setTimeout(5000, () => s.destroy());
}
