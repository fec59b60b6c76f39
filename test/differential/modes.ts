/**
 * The pgmux topologies every case runs in, one pgmux each, started once per
 * test file and reused; the side connections the harness needs; and the
 * registration of a file's cases as one test per (case, mode).
 */
import { afterAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { getCluster } from '../cluster-context.ts';
import { startPgmux, type RunningPgmux } from '../helpers/pgmux.ts';
import { compareRecordings, expectedRecording, report, showRecordings } from './compare.ts';
import { runScript, type Recording, type SideAccess, type Target } from './harness.ts';
import { KNOWN_FAILING, isKnownFailing } from './known-failing.ts';
import { differencesFor, formFor, skipFor } from './differences.ts';
import type { Script, Step } from './script.ts';
import { probeAfterScript } from './probe.ts';

export const MODES = ['session', 'transaction', 'statement', 'none', 'replica'] as const;
export type Mode = (typeof MODES)[number];

/**
 * pgmux settings per mode. Clients share a pool of ONE server connection,
 * so whatever state leaks from one client to the next shows. Session mode
 * is the exception: there a client keeps its connection until it leaves,
 * so with one connection a second client could not even log in while the
 * first is connected; with two, the connection a client leaves behind is
 * the one the next client gets (idle connections are reused last in,
 * first out), after its reset.
 */
function settings(mode: Mode): Record<string, unknown> {
  const c = getCluster();
  switch (mode) {
    case 'session':
      return { pool_mode: 'session', default_pool_size: 2 };
    case 'transaction':
    case 'statement':
      return { pool_mode: mode, default_pool_size: 1 };
    case 'none':
      return { pool_mode: 'none' };
    case 'replica':
      // Weight 0 on the primary: every read pgmux judges safe goes to the replica.
      return {
        pool_mode: 'transaction',
        default_pool_size: 1,
        load_balance: 'statement',
        endpoints: { main: { nodes: [c.primary, c.replicas[0]].map((n) => `postgresql://${n.host}:${n.port}`), weights: [0, 1] } },
        users: { postgres: { password: c.superuserPassword } },
        health_check_user: 'postgres',
      };
  }
}

export class Fleet {
  private readonly pgmux = new Map<Mode, Promise<RunningPgmux>>();
  private readonly direct = new Map<string, Recording>();
  private setupClient: Promise<pg.Client> | null = null;
  private lsnClients: Promise<[pg.Client, pg.Client]> | null = null;

  private connect(host: string, port: number, user: string, password: string): Promise<pg.Client> {
    const client = new pg.Client({ host, port, user, password, database: 'appdb' });
    client.on('error', () => {});
    return client.connect().then(() => client);
  }

  private readonly side: SideAccess = {
    setup: async (sql) => {
      const c = getCluster();
      this.setupClient ??= this.connect(c.primary.host, c.primary.port, 'app', c.roles.app.password);
      await (await this.setupClient).query(sql);
    },
    check: async (sql) => {
      const c = getCluster();
      const client = await this.connect(c.primary.host, c.primary.port, c.superuser, c.superuserPassword);
      try {
        return JSON.stringify((await client.query(sql)).rows);
      } finally {
        await client.end();
      }
    },
  };

  /** Until the replica has replayed everything the primary has written so far. */
  private readonly replicaBarrier = async () => {
    const c = getCluster();
    this.lsnClients ??= Promise.all([
      this.connect(c.primary.host, c.primary.port, c.superuser, c.superuserPassword).then(async (p) => {
        await p.query('SET synchronous_commit = on');
        return p;
      }),
      this.connect(c.replicas[0].host, c.replicas[0].port, c.superuser, c.superuserPassword),
    ]);
    const [primary, replica] = await this.lsnClients;
    // Nothing written since the last barrier (its own commit included): nothing to wait for.
    const now = (await primary.query('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0].l;
    if (now === this.lastLsn) return;
    // The cluster runs with synchronous_commit off, so a commit already
    // answered may not be flushed (and streamed) yet: take the insert
    // position, then commit synchronously (the connection set it on), which
    // flushes everything up to it (as LocalCluster.waitForReplicas does).
    const lsn = (await primary.query('SELECT pg_current_wal_insert_lsn()::text AS l, pg_current_xact_id()')).rows[0].l;
    const deadline = Date.now() + 10_000;
    while (!(await replica.query('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn])).rows[0].ok) {
      if (Date.now() > deadline) throw new Error(`the replica did not replay ${lsn} within 10 s`);
      await new Promise((r) => setTimeout(r, 2));
    }
    this.lastLsn = (await primary.query('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0].l;
  };
  private lastLsn = '';

  private target(port: number, extra: Partial<Target> = {}): Target {
    const c = getCluster();
    return { port, user: 'app', database: 'appdb', password: c.roles.app.password, side: this.side, ...extra };
  }

  pgmuxFor(mode: Mode): Promise<RunningPgmux> {
    let p = this.pgmux.get(mode);
    if (!p) {
      p = startPgmux(settings(mode));
      this.pgmux.set(mode, p);
    }
    return p;
  }

  /** PostgreSQL's recording of `script`, made once per file and script. */
  async directRun(script: Script): Promise<Recording> {
    const key = JSON.stringify([script.setup, script.steps, script.skipWhileHeld]);
    let rec = this.direct.get(key);
    if (!rec) {
      rec = await runScript(script, this.target(getCluster().primary.port));
      this.direct.set(key, rec);
    }
    return rec;
  }

  /** The problems found running `script` through pgmux in `mode` (empty: same as PostgreSQL). */
  async differences(script: Script, mode: Mode): Promise<string[]> {
    // PostgreSQL's answers, as a listed difference says pgmux's must differ (differences.ts).
    const guide = expectedRecording(script, mode, await this.directRun(script));
    const pgmux = await this.pgmuxFor(mode);
    const diffs = differencesFor(mode);
    const partsAfter = (s: Step) => s.do === 'send' && diffs.some((d) => d.trigger!(s.msgs));
    const barrier = mode === 'replica' ? this.replicaBarrier : undefined;
    const form = formFor(script.name, mode)?.form;
    const answersLater = form !== undefined && 'later' in form;
    const rec = await runScript(script, this.target(pgmux.port, { guide, barrier, partsAfter, answersLater }));
    if (process.env.PGMUX_DIFF_SHOW) console.log(showRecordings(`${script.name} [${mode}]`, guide, rec));
    const problems = compareRecordings(script, mode, guide, rec);
    const stuck = await probeAfterScript(mode, pgmux.port);
    if (stuck) {
      problems.push(stuck);
      // Start the next case on a fresh pgmux, so it is not blamed for this one.
      this.pgmux.delete(mode);
      await pgmux.stop();
    }
    return problems;
  }

  async assertSame(script: Script, mode: Mode): Promise<void> {
    const problems = await this.differences(script, mode);
    if (problems.length > 0) throw new Error(report(script, mode, problems));
  }

  async stop(): Promise<void> {
    for (const p of this.pgmux.values()) await (await p).stop();
    for (const c of [await this.setupClient, ...((await this.lsnClients) ?? [])]) await c?.end();
  }
}

/**
 * Registers one test per (case, mode), named after the case inside a
 * describe per mode; cases listed in KNOWN_FAILING run as it.fails.
 */
export function differentialSuite(file: string, cases: Script[], modes: readonly Mode[] = MODES): Fleet {
  const fleet = new Fleet();
  afterAll(() => fleet.stop());
  for (const mode of cases.length ? modes : []) {
    describe(mode, () => {
      for (const s of cases) {
        // A case a listed difference makes incomparable in this mode is not
        // run here; the difference's own form is tested where it names it.
        if (skipFor(s.name, mode) !== undefined) continue;
        (isKnownFailing(file, s.name, mode) ? it.fails : it)(s.name, () => fleet.assertSame(s, mode));
      }
    });
  }
  it('has unique case names, and KNOWN_FAILING names only cases of this file', () => {
    const names = cases.map((s) => s.name);
    expect(names.filter((n, i) => names.indexOf(n) !== i)).toEqual([]);
    expect(KNOWN_FAILING.filter((k) => k.file === file && !names.includes(k.name))).toEqual([]);
  });
  return fleet;
}
