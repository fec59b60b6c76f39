import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { freePort } from '../src/embedded/cluster.ts';
import { getCluster } from './cluster-context.ts';
import { CliProcess } from './helpers/cli.ts';
import { writeAuthFile } from './helpers/pgmux.ts';
import { tempDir } from './helpers/temp.ts';

/** Clients in SHOW CLIENTS that are not the console's own. */
const appClients = (rows: Record<string, unknown>[]) => rows.filter((r) => r.database === 'appdb');

describe('workers = 2 processes: the admin console and /metrics show the whole pgmux', () => {
  it('SHOW POOLS and /metrics count the clients of both workers, SHOW CLIENTS names each one\'s worker; PAUSE, RESUME and KILL_CLIENT cross the processes', async () => {
    const c = getCluster();
    const dir = await tempDir('pgmux-workers-admin-');
    const file = path.join(dir, 'pgmux.toml');
    const [port, metricsPort] = [await freePort(), await freePort()];
    await writeFile(
      file,
      [
        `listen = "127.0.0.1:${port}"`, `metrics_listen = "127.0.0.1:${metricsPort}"`, 'workers = 2', `auth_file = "${await writeAuthFile()}"`,
        'admin_users = "app"', 'pool_mode = "transaction"', 'log_format = "json"', 'unix_socket_dir = ""',
        '[endpoints.main]', `nodes = ["postgresql://${c.primary.host}:${c.primary.port}"]`,
      ].join('\n') + '\n',
    );
    const pgmux = new CliProcess(['--config', file]);
    const clients: pg.Client[] = [];
    const url = (db: string) => `postgresql://app:${encodeURIComponent(c.roles.app.password)}@127.0.0.1:${port}/${db}`;
    try {
      await pgmux.waitFor('workers started');
      const admin = new pg.Client({ connectionString: url('pgmux') });
      admin.on('error', () => {});
      await admin.connect();
      clients.push(admin);
      // The kernel spreads connections over the workers: open clients until both have some.
      let workers = new Set<unknown>();
      while (workers.size < 2 && clients.length < 60) {
        const x = new pg.Client({ connectionString: url('appdb') });
        x.on('error', () => {});
        await x.connect();
        await x.query('SELECT 1');
        clients.push(x);
        workers = new Set(appClients((await admin.query('SHOW CLIENTS')).rows).map((r) => r.worker));
      }
      expect(workers).toEqual(new Set([0, 1]));
      const n = clients.length - 1;
      const shown = appClients((await admin.query('SHOW CLIENTS')).rows);
      expect(shown).toHaveLength(n);
      expect(new Set(shown.map((r) => r.id)).size).toBe(n);

      const pools = (await admin.query('SHOW POOLS')).rows.filter((r) => r.database === 'appdb' && r.user === 'app');
      expect(pools).toHaveLength(1);
      expect(pools[0].cl_active + pools[0].cl_waiting).toBe(n);
      expect((await admin.query('SHOW DATABASES')).rows.find((r) => r.name === 'appdb')).toMatchObject({ current_client_connections: n });

      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const main = [...text.matchAll(/^pgmux_clients\{endpoint="main",state="\w+"\} (\d+)$/gm)].reduce((a, m) => a + Number(m[1]), 0);
      expect(main).toBe(n);
      expect(text).toMatch(/^pgmux_process_resident_memory_bytes\{worker="0"\} \d/m);
      expect(text).toMatch(/^pgmux_process_resident_memory_bytes\{worker="1"\} \d/m);

      // Commands cross the processes: PAUSE and RESUME reach both, KILL_CLIENT the worker that serves the client.
      await admin.query('PAUSE');
      expect((await admin.query('SHOW STATE')).rows.find((r) => r.key === 'paused')).toMatchObject({ value: 'yes' });
      await admin.query('RESUME');
      expect((await admin.query('SHOW STATE')).rows.find((r) => r.key === 'active')).toMatchObject({ value: 'yes' });
      const own = (await admin.query('SHOW CLIENTS')).rows.find((r) => r.database === 'pgmux')!.worker;
      const other = appClients((await admin.query('SHOW CLIENTS')).rows).find((r) => r.worker !== own)!;
      await admin.query(`KILL_CLIENT ${other.id}`);
      expect(appClients((await admin.query('SHOW CLIENTS')).rows).map((r) => r.id)).not.toContain(other.id);
      expect(appClients((await admin.query('SHOW CLIENTS')).rows)).toHaveLength(n - 1);

      await Promise.all(clients.map((x) => x.end().catch(() => {})));
      clients.length = 0;
      pgmux.signal('SIGTERM');
      expect((await pgmux.exited).code).toBe(0);
    } finally {
      await Promise.all(clients.map((x) => x.end().catch(() => {})));
      await pgmux.kill();
    }
  });
});
