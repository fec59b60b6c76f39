/**
 * Starts one primary + replica for the whole test run and shares its
 * addresses and test roles with every test file through provide/inject.
 */
import type { TestProject } from 'vitest/node';
import { LocalCluster } from '../src/embedded/cluster.ts';
import type { ClusterInfo } from './cluster-context.ts';

const ROLES = { app: 'app-secret', other: 'other-secret' };

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const log = process.env.PGMUX_TEST_LOG ? (line: string) => console.error(`[cluster] ${line}`) : undefined;
  const cluster = await LocalCluster.start({ replicas: 1, log });
  // Vitest exits on Ctrl-C without running teardowns; don't leave servers behind.
  const onExit = () => cluster.stopNow();
  process.once('exit', onExit);
  try {
    const app = { password: ROLES.app, verifier: await cluster.createRole('app', ROLES.app) };
    const other = { password: ROLES.other, verifier: await cluster.createRole('other', ROLES.other) };
    await cluster.query('CREATE DATABASE appdb OWNER app');
    // Tests that read from the replica expect the roles and database there too.
    await cluster.waitForReplicas();
    const info: ClusterInfo = {
      primary: { host: cluster.primary.host, port: cluster.primary.port },
      replicas: cluster.replicas.map((r) => ({ host: r.host, port: r.port })),
      superuser: cluster.superuser,
      superuserPassword: cluster.superuserPassword,
      roles: { app, other },
      baseDir: cluster.baseDir,
    };
    project.provide('cluster', info);
  } catch (err) {
    process.off('exit', onExit);
    await cluster.stop();
    throw err;
  }
  return async () => {
    process.off('exit', onExit);
    await cluster.stop();
  };
}
