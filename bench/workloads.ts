import { writeFile } from 'node:fs/promises';
import path from 'node:path';

/** A pgbench workload: its arguments, and the targets it makes sense on. */
export interface Workload {
  name: string;
  describe: string;
  args(dir: string): Promise<string[]>;
  /** Client counts to run instead of the concurrency list (think-time, latency). */
  clients?: number[];
  /** Targets it runs on; all when absent. */
  targets?: string[];
  /** A fixed rate (pgbench -R) of this many transactions per second per client: a load that does not saturate. */
  ratePerClient?: boolean;
}

export const WORKLOADS: Workload[] = [
  { name: 'tpcb-steady', describe: 'pgbench default (TPC-B like), persistent connections', args: async () => [] },
  { name: 'readonly-steady', describe: 'pgbench -S, persistent connections', args: async () => ['-S'] },
  {
    name: 'latency',
    describe: 'pgbench -S at a fixed rate (-R, --latency-rate per client) that does not saturate the machine, 1 and 10 clients: the latency a pooler adds',
    args: async () => ['-S'],
    clients: [1, 10],
    ratePerClient: true,
    targets: ['direct', 'bare-proxy', 'pgmux-session', 'pgmux-transaction', 'pgbouncer-session', 'pgbouncer-transaction'],
  },
  { name: 'readonly-short', describe: 'pgbench -S -C: a new connection per transaction', args: async () => ['-S', '-C'] },
  {
    name: 'prepared',
    describe: 'pgbench -S -M prepared: protocol-level prepared statements',
    args: async () => ['-S', '-M', 'prepared'],
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
    targets: ['direct', 'pgmux-transaction', 'pgmux-transaction-w2', 'pgbouncer-transaction', 'pgbouncer-transaction-reuseport'],
  },
];

/** The default list: what the targets of the report are measured on. */
export const DEFAULT_WORKLOADS = ['tpcb-steady', 'readonly-steady', 'latency'];

/** Host-simulation workloads: transaction mode, pgmux on the primary alone against pgmux over primary + 2 replicas. */
export const SIM_WORKLOADS: Workload[] = [
  {
    name: 'sim-readonly',
    describe: 'pgbench -S',
    args: async () => ['-S'],
    targets: ['pgmux-transaction', 'pgmux-transaction-replicas', 'pgmux-transaction-replicas-ryw-off'],
  },
  {
    name: 'sim-tpcb',
    describe: 'pgbench default (TPC-B like): every transaction writes, so it runs on the primary either way',
    args: async () => [],
    targets: ['pgmux-transaction', 'pgmux-transaction-replicas'],
  },
  {
    name: 'sim-mixed',
    describe: 'pgbench -b select-only@9 -b simple-update@1: one transaction in ten writes, so read-your-writes has reads to hold back',
    args: async () => ['-b', 'select-only@9', '-b', 'simple-update@1'],
    targets: ['pgmux-transaction', 'pgmux-transaction-replicas', 'pgmux-transaction-replicas-ryw-off'],
  },
];
