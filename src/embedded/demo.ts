/**
 * `pgmux --embedded` (what `npm start` runs): a throw-away primary and
 * replica, a login role with a fresh password that may also use the admin
 * console, and the configuration that puts pgmux in front of them with
 * /metrics served. Everything lives in the cluster's
 * directory, so stopping the cluster removes it all.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/schema.ts';
import { LocalCluster } from './cluster.ts';

export interface Demo {
  /** The configuration given, with the demo's endpoint, users and files added. */
  config: Config;
  /** The same additions for a configuration read again (SIGHUP). */
  overlay: (c: Config) => Config;
  user: string;
  password: string;
  /** Stops the servers and removes their files. */
  stop: () => Promise<void>;
}

/** Starts the demo cluster; `signal` aborts the start, leaving nothing behind. */
export async function startDemo(config: Config, signal: AbortSignal, log: (line: string) => void): Promise<Demo> {
  const cluster = await LocalCluster.start({ replicas: 1, log, signal });
  try {
    const user = 'app';
    const password = randomBytes(9).toString('base64url');
    const verifier = await cluster.createRole(user, password);
    signal.throwIfAborted();
    // The role's own database, where it may create tables (PostgreSQL 15's
    // public schema is not writable by other roles).
    await cluster.query(`CREATE DATABASE ${user} OWNER ${user}`);
    signal.throwIfAborted();
    const authFile = path.join(cluster.baseDir, 'userlist.txt');
    await writeFile(authFile, `"${user}" "${verifier}"\n`, { mode: 0o600 });
    const nodes = [cluster.primary, ...cluster.replicas].map((n) => `postgresql://${n.host}:${n.port}`);
    const overlay = (c: Config): Config => ({
      ...c,
      // Reads go to the replica (weight 0 keeps them off the primary while
      // the replica is usable), so the routing shows at once.
      endpoints: Object.keys(c.endpoints).length > 0 ? c.endpoints : { main: { nodes, weights: [0, ...cluster.replicas.map(() => 1)] } },
      auth_file: c.auth_file ?? authFile,
      // The local superuser checks the nodes (health, roles, lag).
      health_check_user: c.health_check_user ?? cluster.superuser,
      // The admin console and /metrics are part of what there is to try;
      // metrics on a free port (printed at start) unless one is given.
      admin_users: c.admin_users === '' ? user : c.admin_users,
      metrics_listen: c.metrics_listen ?? '127.0.0.1:0',
      users: { ...c.users, [cluster.superuser]: { ...c.users[cluster.superuser], password: cluster.superuserPassword } },
    });
    return { config: overlay(config), overlay, user, password, stop: () => cluster.stop() };
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}
