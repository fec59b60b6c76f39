import { writeFile } from 'node:fs/promises';
import path from 'node:path';

/** A pgbench workload: its arguments, and the targets it makes sense on. */
export interface Workload {
  name: string;
  describe: string;
  args(dir: string): Promise<string[]>;
  /** Client counts to run instead of the concurrency list (think-time). */
  clients?: number[];
  /** Targets it runs on; all when absent. */
  targets?: string[];
}

export const WORKLOADS: Workload[] = [
  { name: 'tpcb-steady', describe: 'pgbench default (TPC-B like), persistent connections', args: async () => [] },
  { name: 'readonly-steady', describe: 'pgbench -S, persistent connections', args: async () => ['-S'] },
  { name: 'readonly-short', describe: 'pgbench -S -C: a new connection per transaction', args: async () => ['-S', '-C'] },
  {
    name: 'prepared',
    describe: 'pgbench -S -M prepared: protocol-level prepared statements',
    args: async () => ['-S', '-M', 'prepared'],
    targets: ['direct', 'pgmux-session', 'pgmux-transaction', 'pgmux-transaction-replicas', 'pgbouncer-session', 'pgbouncer-transaction'],
  },
  {
    name: 'think-time',
    describe: 'short read transactions with 50 ms of client think time between them, many clients over a pool of 20',
    async args(dir) {
      const file = path.join(dir, 'think-time.sql');
      await writeFile(
        file,
        ['\\set aid random(1, 100000 * :scale)', 'BEGIN;', 'SELECT abalance FROM pgbench_accounts WHERE aid = :aid;', 'END;', '\\sleep 50 ms', ''].join('\n'),
      );
      return ['-f', file];
    },
    clients: [10, 200, 500],
    targets: ['direct', 'pgmux-transaction', 'pgbouncer-transaction'],
  },
];
