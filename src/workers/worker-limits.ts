/**
 * The limits a worker keeps with the others (workers > 1): pool limits
 * through grants of the supervisor's ledger, and failed logins counted on
 * every worker (auth_failure_limit).
 */
import { GrantedLimits } from '../pool/granted-limits.ts';
import type { PgmuxServer } from '../server.ts';
import type { Want } from './ledger.ts';
import type { ProcessLink } from './process-link.ts';

export function workerLimits(server: PgmuxServer, link: ProcessLink): GrantedLimits {
  const limits = new GrantedLimits(
    server.sharedLimits,
    {
      want: (w: Want) => link.tellSupervisor('want', w),
      release: (key, n) => link.tellSupervisor('release', { key, n }),
      unwant: (key) => link.tellSupervisor('unwant', { key }),
    },
    () => server.pools.all(),
  );
  server.poolLimits = limits;
  link.handle('granted', (payload) => {
    const { key, n } = payload as { key: string; n: number };
    limits.granted(key, n);
  });
  link.handle('evict', (payload) => limits.evict(payload as { key?: string; group?: string; except?: string }));
  link.handle('grants', () => limits.snapshot());
  return limits;
}
