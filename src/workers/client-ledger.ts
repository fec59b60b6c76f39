/**
 * The supervisor's count of logged-in clients over every worker:
 * max_client_conn, max_user_client_conn (per user) and
 * max_db_client_connections (per database) hold for the whole pgmux. A
 * worker asks once per login ('client-in') and tells when the client
 * leaves ('client-out'); a worker that dies takes its clients' counts
 * with it.
 */
import type { LinkEndpoint } from './process-link.ts';

export interface ClientIn {
  user: string;
  /** endpoint NUL database: what max_db_client_connections counts by. */
  db: string;
  maxClients: number;
  /** 0: no limit. */
  maxUser: number;
  maxDb: number;
}

export class ClientLedger {
  /** Clients of the whole pgmux, then by `u\0user` and `d\0db`, by worker. */
  private readonly counts = new Map<number, Map<string, number>>();

  constructor(link: LinkEndpoint) {
    link.handlers.set('client-in', (payload, from) => this.admit(from, payload as ClientIn));
    link.handlers.set('client-out', (payload, from) => {
      const { user, db } = payload as { user: string; db: string };
      this.add(from, user, db, -1);
    });
  }

  private total(key: string): number {
    let n = 0;
    for (const m of this.counts.values()) n += m.get(key) ?? 0;
    return n;
  }

  private add(worker: number, user: string, db: string, n: number): void {
    let m = this.counts.get(worker);
    if (m === undefined) this.counts.set(worker, (m = new Map()));
    for (const key of ['all', `u\0${user}`, `d\0${db}`]) {
      const v = Math.max(0, (m.get(key) ?? 0) + n);
      if (v === 0) m.delete(key);
      else m.set(key, v);
    }
  }

  /** The limit this client would go over, in PgBouncer's order, or null: counted. */
  private admit(worker: number, c: ClientIn): string | null {
    if (this.total('all') >= c.maxClients) return 'max_client_conn';
    if (c.maxDb > 0 && this.total(`d\0${c.db}`) >= c.maxDb) return 'max_db_client_connections';
    if (c.maxUser > 0 && this.total(`u\0${c.user}`) >= c.maxUser) return 'max_user_client_connections';
    this.add(worker, c.user, c.db, 1);
    return null;
  }

  workerGone(worker: number): void {
    this.counts.delete(worker);
  }
}
