/**
 * pgmux's admin console (database `pgmux`) as an operator reads it: the
 * same answers whether pgmux runs in this process or as worker processes
 * (PGMUX_TEST_WORKERS), whose SHOW POOLS, SERVERS, CLIENTS and DATABASES
 * it merges. The pgmux must list the user in `admin_users` or
 * `stats_users`.
 */
import pg from 'pg';
import type { RunningPgmux } from './pgmux.ts';

export type AdminRow = Record<string, unknown>;

/** A console connection kept open, for a test that reads it often (sampling while clients run). */
export interface AdminConsole {
  /** The rows of `SHOW <what>`. */
  show(what: string): Promise<AdminRow[]>;
  /** Any console command (PAUSE, RESUME, RELOAD...). */
  query(sql: string): Promise<AdminRow[]>;
  end(): Promise<void>;
}

export async function adminConsole(pgmux: RunningPgmux, user = 'app'): Promise<AdminConsole> {
  const c = new pg.Client({ connectionString: pgmux.url(user, 'pgmux') });
  c.on('error', () => {});
  await c.connect();
  const query = async (sql: string) => (await c.query(sql)).rows as AdminRow[];
  return { show: (what) => query(`SHOW ${what}`), query, end: () => c.end().catch(() => {}) };
}

/** The rows of one `SHOW <what>`, over a connection of its own. */
export async function show(pgmux: RunningPgmux, what: string, user = 'app'): Promise<AdminRow[]> {
  const c = await adminConsole(pgmux, user);
  try {
    return await c.show(what);
  } finally {
    await c.end();
  }
}

const n = (v: unknown) => Number(v ?? 0);

/** SHOW POOLS rows `match` picks, with the pool's endpoint, database and user. */
export type PoolMatch = (row: { endpoint: string; database: string; user: string }) => boolean;

/** Server connections open (in use, idle or logging in) in the SHOW POOLS rows `match` picks: each pool's total. */
export function serversOpen(pools: AdminRow[], match: PoolMatch = () => true): number {
  return pools
    .filter((r) => match({ endpoint: String(r.endpoint), database: String(r.database), user: String(r.user) }))
    .reduce((a, r) => a + n(r.sv_active) + n(r.sv_idle) + n(r.sv_login), 0);
}

/** Idle server connections in every pool of SHOW POOLS. */
export function serversIdle(pools: AdminRow[]): number {
  return pools.reduce((a, r) => a + n(r.sv_idle), 0);
}
