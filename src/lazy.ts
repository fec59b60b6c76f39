/**
 * Modules only some configurations need, loaded on first use: each costs
 * resident memory (node-postgres ~10 MB, prom-client ~20 MB) that a pooler
 * which never checks nodes or serves metrics should not carry.
 */
import type pgModule from 'pg';

let pgPromise: Promise<typeof pgModule> | null = null;

/** node-postgres, for auth_query, health checks and catalog look-ups. */
export function loadPg(): Promise<typeof pgModule> {
  pgPromise ??= import('pg').then((m) => m.default);
  return pgPromise;
}
