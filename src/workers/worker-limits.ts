/**
 * The limits a worker keeps with the others (workers > 1): pool limits
 * through grants of the supervisor's ledger, clients counted by the
 * supervisor (max_client_conn, max_user_client_conn,
 * max_db_client_connections), and failed logins counted on every worker
 * (auth_failure_limit).
 */
import { GrantedLimits } from '../pool/granted-limits.ts';
import type { PgmuxServer } from '../server.ts';
import type { Want } from './ledger.ts';
import type { ProcessLink } from './process-link.ts';
import type { WorkerMessage } from './ipc.ts';
import { SharedFailureLimiter, WorkerClientCount } from './shared-counts.ts';

export function workerLimits(server: PgmuxServer, link: ProcessLink): GrantedLimits {
  const limits = new GrantedLimits(
    server.sharedLimits,
    {
      want: (w: Want) => link.tellSupervisor('want', w),
      release: (key, n) => link.tellSupervisor('release', { key, n }),
      unwant: (key) => link.tellSupervisor('unwant', { key }),
      handOver: (key, to, conn, socket) => {
        if (!process.connected) {
          socket.destroy();
          return;
        }
        const m: WorkerMessage = { pgmux: 'hand-over', key, to, conn };
        // The handle is this process's no more once sent.
        process.send!(m, socket, {}, (err) => {
          if (err === null || err === undefined) return;
          // It never left: the connection closes, and its grant (still this worker's in the ledger) goes back.
          socket.destroy();
          link.tellSupervisor('release', { key, n: 1 });
        });
      },
    },
    () => server.pools.all(),
  );
  server.poolLimits = limits;
  link.handle('granted', (payload) => {
    const { key, n } = payload as { key: string; n: number };
    limits.granted(key, n);
  });
  link.handle('evict', (payload) => limits.evict(payload as { key?: string; group?: string; except?: string }));
  link.handle('hand-over', (payload) => limits.handOverFor(payload as { key: string; to: number; since: number; n: number; idleOnly?: boolean }));
  link.handle('demand', (payload) => limits.redemand(payload as { key: string; to: number; since: number; n: number }));
  link.handle('undemand', (payload) => {
    const { key, to } = payload as { key: string; to: number };
    limits.undemand(key, to);
  });
  link.handle('grants', () => limits.snapshot());
  server.clientCount = new WorkerClientCount(link);
  server.failureLimiter = (limit) => new SharedFailureLimiter(limit, link);
  server.ctx.authFailures = server.failureLimiter(server.currentConfig.auth_failure_limit);
  link.handle('auth-failure', (addr) => {
    const f = server.ctx.authFailures;
    if (f instanceof SharedFailureLimiter) f.noteElsewhere(addr as string);
    else f.note(addr as string);
  });
  return limits;
}
