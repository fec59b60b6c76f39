import { describe, expect, it, vi } from 'vitest';
import { Writable } from 'node:stream';
import pg from 'pg';
import pino from 'pino';
import { onPrimary, startPgmux } from './helpers/pgmux.ts';

/** A logger whose messages land in `lines`. */
function capture(lines: string[]): pino.Logger {
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line).msg);
      cb();
    },
  });
  return pino({ level: 'info' }, sink);
}

describe('an endpoint with one node', () => {
  for (const mode of ['session', 'transaction'] as const) {
    it(`${mode} mode: log_per_node_statement and notice_per_node_statement trace each statement with node 0`, async () => {
      const lines: string[] = [];
      const pgmux = await startPgmux({ pool_mode: mode, log_per_node_statement: true, notice_per_node_statement: true }, { logger: capture(lines) });
      const c = new pg.Client({ connectionString: pgmux.url() });
      const notices: string[] = [];
      c.on('notice', (n) => notices.push(n.message ?? ''));
      try {
        await c.connect();
        await c.query('SELECT 41 + 1 AS answer');
        await c.query('SELECT $1::int AS n', [7]);
        // With worker processes (PGMUX_TEST_WORKERS) the lines come over a pipe, maybe after the answers.
        await vi.waitFor(
          () => {
            expect(lines).toContain('node 0 statement: Query: SELECT 41 + 1 AS answer');
            expect(lines).toContain('node 0 statement: Parse: SELECT $1::int AS n');
            expect(lines).toContain('node 0 statement: Execute');
          },
          { timeout: 10_000, interval: 20 },
        );
        expect(notices).toContain('node 0 statement: Query: SELECT 41 + 1 AS answer');
      } finally {
        await c.end();
        await pgmux.stop();
      }
    });
  }

  it('counts its reads and writes in SHOW NODES and the node metrics', async () => {
    await onPrimary('CREATE TABLE counted (n int); GRANT ALL ON counted TO app', [], 'appdb');
    const pgmux = await startPgmux({ pool_mode: 'transaction', admin_users: 'app', metrics_listen: '127.0.0.1:0' });
    const c = new pg.Client({ connectionString: pgmux.url() });
    const admin = new pg.Client({ connectionString: pgmux.url('app', 'pgmux') });
    try {
      await c.connect();
      for (let i = 0; i < 4; i++) await c.query('INSERT INTO counted VALUES ($1)', [i]);
      for (let i = 0; i < 5; i++) await c.query('SELECT count(*) FROM counted');
      await admin.connect();
      const [node] = (await admin.query('SHOW NODES')).rows.filter((r) => r.endpoint === 'main');
      expect(node).toMatchObject({ node_id: 0, role: 'primary', status: 'up' });
      expect(Number(node.select_cnt)).toBeGreaterThanOrEqual(5);
      expect(Number(node.write_cnt)).toBeGreaterThanOrEqual(4);
      const { port } = pgmux.server.metricsAddress()!;
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(text).toMatch(/pgmux_node_up\{endpoint="main",node="0",role="primary"\} 1/);
      const reads = /pgmux_routed_statements\{endpoint="main",node="0",kind="read"\} (\d+)/.exec(text);
      expect(Number(reads?.[1])).toBeGreaterThanOrEqual(5);
    } finally {
      await admin.end().catch(() => {});
      await c.end().catch(() => {});
      await pgmux.stop();
      await onPrimary('DROP TABLE counted', [], 'appdb');
    }
  });
});
