/**
 * pgmux's admin console (database `pgmux`) as an operator reads it: the
 * same answers whether pgmux runs in this process or as worker processes
 * (PGMUX_TEST_WORKERS), whose SHOW POOLS, SERVERS, CLIENTS and DATABASES
 * it merges. The pgmux must list the user in `admin_users` or
 * `stats_users`.
 */
import { readFile, writeFile } from 'node:fs/promises';
import pg from 'pg';
import { parse, stringify } from 'smol-toml';
import type { Config } from '../../src/config/schema.ts';
import { inWorkerProcesses, type RunningPgmux } from './pgmux.ts';

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

/**
 * Has the admin console's next RELOAD read `next`, as an operator edits
 * the configuration file before RELOAD: in process through the server's
 * reloadSource; with worker processes by writing `next` to the file named
 * on the supervisor's command line (keeping the keys the test helper runs
 * it with: workers, log_format, log_level), which each worker's RELOAD has
 * the supervisor read.
 */
export async function configForReload(pgmux: RunningPgmux, next: Config): Promise<void> {
  if (!inWorkerProcesses) {
    pgmux.server.reloadSource = async () => next;
    return;
  }
  const args = (await readFile(`/proc/${pgmux.pids()[0]}/cmdline`, 'utf8')).split('\0');
  const file = args[args.indexOf('--config') + 1];
  if (file === undefined || !args.includes('--config')) throw new Error(`pgmux's command line names no --config: ${args.join(' ')}`);
  const running = parse(await readFile(file, 'utf8'));
  const kept = Object.fromEntries(['workers', 'log_format', 'log_level'].filter((k) => k in running).map((k) => [k, running[k]]));
  await writeFile(file, stringify({ ...(JSON.parse(JSON.stringify(next)) as Record<string, unknown>), ...kept }), { mode: 0o600 });
}
