/**
 * A worker's side of the counts kept for the whole pgmux: its clients
 * (asked of the supervisor once per login) and failed logins (told to
 * every other worker, which count them as their own).
 */
import { FailureLimiter } from '../auth/failure-limit.ts';
import type { Config } from '../config/schema.ts';
import type { ClientCount } from '../server.ts';
import type { ClientSession } from '../session/client-session.ts';
import type { ClientIn } from './client-ledger.ts';
import type { ProcessLink } from './process-link.ts';

export class WorkerClientCount implements ClientCount {
  private readonly link: ProcessLink;

  constructor(link: ProcessLink) {
    this.link = link;
  }

  private static of(session: ClientSession): { user: string; db: string } {
    return { user: session.user, db: `${session.endpointName}\0${session.database}` };
  }

  async admit(session: ClientSession, c: Config): Promise<string | null> {
    const ask: ClientIn = {
      ...WorkerClientCount.of(session),
      maxClients: c.max_client_conn,
      maxUser: c.users[session.user]?.max_user_client_conn ?? c.max_user_client_conn,
      maxDb: c.endpoints[session.endpointName]?.max_db_client_connections ?? c.max_db_client_connections,
    };
    // The supervisor not answering (it is gone: this worker is stopping) refuses as max_client_conn would.
    return this.link.askSupervisor<string | null>('client-in', ask, 5000).catch(() => 'max_client_conn');
  }

  leave(session: ClientSession): void {
    this.link.tellSupervisor('client-out', WorkerClientCount.of(session));
  }
}

/** auth_failure_limit over every worker: a failure here is told to the others. */
export class SharedFailureLimiter extends FailureLimiter {
  private readonly link: ProcessLink;

  constructor(limit: number, link: ProcessLink) {
    super(limit);
    this.link = link;
  }

  override note(addr: string, now = Date.now()): void {
    super.note(addr, now);
    for (let w = 0; w < this.link.count; w++) if (w !== this.link.id) this.link.tell(w, 'auth-failure', addr);
  }

  /** A failure another worker saw. */
  noteElsewhere(addr: string): void {
    super.note(addr);
  }
}
