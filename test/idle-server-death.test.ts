import { describe, expect, it } from 'vitest';
import net from 'node:net';
import pg from 'pg';
import { getCluster } from './cluster-context.ts';
import { adminConsole, serversIdle } from './helpers/admin.ts';
import { onPrimary, sleep, startPgmux, type RunningPgmux } from './helpers/pgmux.ts';

/** Every pgmux here lets `app` read the admin console, where the tests see the pools (of every worker). */
const CONSOLE = { stats_users: 'app' };

/** Resolves once pgmux has `n` idle server connections, as SHOW POOLS counts them. */
async function idleConnections(pgmux: RunningPgmux, n: number): Promise<void> {
  const admin = await adminConsole(pgmux);
  try {
    for (let i = 0; i < 200; i++) {
      if (serversIdle(await admin.show('POOLS')) >= n) return;
      await sleep(10);
    }
  } finally {
    await admin.end();
  }
  throw new Error(`pgmux never had ${n} idle server connections`);
}

/**
 * One round: a client's query leaves its server connection idle in the
 * pool; `kill` ends that backend; the next query must be served all the
 * same. Returns 'ok' or the error the client got.
 */
async function round(pgmux: RunningPgmux, mode: 'session' | 'transaction', kill: (pid: number) => Promise<void>): Promise<string> {
  const first = new pg.Client({ connectionString: pgmux.url(), query_timeout: 3000 });
  first.on('error', () => {});
  await first.connect();
  const pid = (await first.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
  // Session mode: the client leaves, and its connection goes back to the pool.
  if (mode === 'session') await first.end();
  await idleConnections(pgmux, 1);
  await kill(pid);
  const next = mode === 'session' ? new pg.Client({ connectionString: pgmux.url(), query_timeout: 3000 }) : first;
  next.on('error', () => {});
  try {
    if (mode === 'session') await next.connect();
    const r = await next.query('SELECT pg_backend_pid() AS pid');
    return r.rows[0].pid === pid ? 'served by the terminated backend' : 'ok';
  } catch (err) {
    return (err as Error).message;
  } finally {
    await next.end().catch(() => {});
  }
}

/**
 * Five rounds in which the idle backend is told to end while it is stopped,
 * so that pgmux hears nothing of it until the next query; it ends once it
 * runs again. `before` runs first in each round. Returns the outcomes.
 */
async function stoppedTerminations(pgmux: RunningPgmux, mode: 'session' | 'transaction', before: () => Promise<void> = async () => {}): Promise<string[]> {
  const stopped = new Set<number>();
  try {
    const outcomes: string[] = [];
    for (let i = 0; i < 5; i++) {
      outcomes.push(
        await round(pgmux, mode, async (pid) => {
          await before();
          process.kill(pid, 'SIGSTOP');
          stopped.add(pid);
          await onPrimary('SELECT pg_terminate_backend($1)', [pid]);
          setTimeout(() => {
            if (!stopped.delete(pid)) return;
            try {
              process.kill(pid, 'SIGCONT');
            } catch {
              // already gone
            }
          }, 300);
        }),
      );
    }
    return outcomes;
  } finally {
    // The rounds are over: the backends still stopped run (and end) now, not at their timers.
    for (const pid of stopped) {
      stopped.delete(pid);
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // already gone
      }
    }
  }
}

describe('a server connection whose backend ends while it is idle in the pool', () => {
  for (const mode of ['session', 'transaction'] as const) {
    it(`${mode} mode: after pg_terminate_backend of the idle backend the next query succeeds, 5 of 5`, async () => {
      const pgmux = await startPgmux({ ...CONSOLE, pool_mode: mode, default_pool_size: 1 });
      try {
        const outcomes: string[] = [];
        // pg_terminate_backend(pid, timeout) returns once the backend has
        // left, when its FATAL has been sent; its socket closes a moment
        // later, at process exit. The next query comes at once.
        for (let i = 0; i < 5; i++) outcomes.push(await round(pgmux, mode, (pid) => onPrimary('SELECT pg_terminate_backend($1, 5000)', [pid]).then(() => {})));
        expect(outcomes).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
      } finally {
        await pgmux.stop();
      }
    });

    it(`${mode} mode: an idle connection past server_check_delay is checked before it is lent, and a dead one replaced unseen, 5 of 5`, async () => {
      const pgmux = await startPgmux({ ...CONSOLE, pool_mode: mode, default_pool_size: 1, server_check_delay: 0.2 });
      try {
        // Past server_check_delay: only the check finds out.
        expect(await stoppedTerminations(pgmux, mode, async () => void (await sleep(300)))).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
      } finally {
        await pgmux.stop();
      }
    });
  }

  it('transaction mode: a backend terminated while idle, noticed only after the next query was sent, costs the client nothing, 5 of 5', async () => {
    // No check before lending: the query reaches the backend, whose FATAL
    // comes first; pgmux sends the query again on a new connection.
    const pgmux = await startPgmux({ ...CONSOLE, pool_mode: 'transaction', default_pool_size: 1, server_check_delay: 3600 });
    try {
      expect(await stoppedTerminations(pgmux, 'transaction')).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
    } finally {
      await pgmux.stop();
    }
  });

  it('server_check_query runs on a connection idle longer than server_check_delay, not on one reused at once', async () => {
    await onPrimary('CREATE SEQUENCE pgmux_checks; GRANT USAGE ON SEQUENCE pgmux_checks TO app', [], 'appdb');
    const pgmux = await startPgmux({ pool_mode: 'transaction', default_pool_size: 1, server_check_delay: 0.2, server_check_query: "select nextval('pgmux_checks')" });
    const c = new pg.Client({ connectionString: pgmux.url(), query_timeout: 3000 });
    try {
      await c.connect();
      const checks = async () => {
        const [row] = await onPrimary<{ n: string; called: boolean }>('SELECT last_value::text AS n, is_called AS called FROM pgmux_checks', [], 'appdb');
        return row.called ? Number(row.n) : 0;
      };
      for (let i = 0; i < 5; i++) await c.query('SELECT 1');
      expect(await checks()).toBe(0);
      await sleep(300);
      await c.query('SELECT 1');
      expect(await checks()).toBe(1);
      for (let i = 0; i < 5; i++) await c.query('SELECT 1');
      expect(await checks()).toBe(1);
    } finally {
      await c.end().catch(() => {});
      await pgmux.stop();
      await onPrimary('DROP SEQUENCE pgmux_checks', [], 'appdb');
    }
  });

  it('a FATAL that reaches an idle connection drops it at once, before its socket closes', async () => {
    // A relay in front of the primary that passes everything but the
    // server's end of the connection, as a middlebox may hold it back: what
    // pgmux sees of the backend's end is its FATAL alone.
    const c = getCluster();
    const relay = net.createServer((fromPgmux) => {
      const toServer = net.connect(c.primary.port, c.primary.host);
      fromPgmux.on('data', (d) => toServer.write(d));
      toServer.on('data', (d) => fromPgmux.write(d));
      toServer.on('error', () => {});
      fromPgmux.on('error', () => {});
      fromPgmux.on('close', () => toServer.destroy());
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    const port = (relay.address() as net.AddressInfo).port;
    const pgmux = await startPgmux({ ...CONSOLE, endpoints: { main: { nodes: [`postgresql://127.0.0.1:${port}`] } }, pool_mode: 'transaction', default_pool_size: 2 });
    try {
      const outcomes: string[] = [];
      for (let i = 0; i < 5; i++) {
        outcomes.push(
          await round(pgmux, 'transaction', async (pid) => {
            await onPrimary('SELECT pg_terminate_backend($1, 5000)', [pid]);
            await sleep(50);
          }),
        );
      }
      expect(outcomes).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
    } finally {
      await pgmux.stop();
      relay.close();
    }
  });
});
