/**
 * A throw-away PostgreSQL 15 cluster (a primary and optional streaming
 * replicas) on free ports in a temporary directory, for `npm start
 * --embedded` and the test suite. Tuned for speed, not durability.
 *
 * Everything it starts it can stop at any moment, by process id: start()
 * takes an AbortSignal (Ctrl-C during start-up), and a process that exits
 * with clusters still running stops them on its way out.
 */
import { type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { appendFile, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { alive, isPostmasterOf, signal, waitFor, waitSync } from './processes.ts';
import { postgresIds, Programs } from './programs.ts';

const HOST = '127.0.0.1';
/** How long waitForReplicas waits beyond a replica's recovery_min_apply_delay. */
const REPLAY_TIMEOUT_MS = 60_000;

export interface NodeInfo {
  host: string;
  port: number;
  dataDir: string;
  role: 'primary' | 'replica';
}

export interface ClusterOptions {
  /** Streaming replicas made with pg_basebackup -R; default 0. */
  replicas?: number;
  /** Extra postgresql.conf settings for every node. */
  settings?: Record<string, string>;
  /** Extra settings per replica, by index (e.g. recovery_min_apply_delay). */
  replicaSettings?: Record<string, string>[];
  /** Where the nodes live; default a fresh temporary directory, removed on stop. */
  baseDir?: string;
  /** Progress lines; default silent. */
  log?: (line: string) => void;
  /**
   * Aborts the start: what was started is stopped, what was created
   * removed, and start() rejects with the signal's reason.
   */
  signal?: AbortSignal;
}

/** How long a postmaster may take to accept connections, or to stop. */
const SERVER_TIMEOUT_MS = 60_000;

/** A free TCP port on 127.0.0.1 (free when asked; another process may take it later). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Gives a path to the `postgres` user when running as root; no-op otherwise. */
async function own(p: string): Promise<void> {
  const ids = postgresIds();
  if (ids !== undefined) await chown(p, ids.uid, ids.gid);
}

/** Clusters not stopped yet, stopped at the latest when the process exits. */
const live = new Set<LocalCluster>();
let exitHook = false;

function stopAtExit(cluster: LocalCluster): void {
  live.add(cluster);
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const c of live) c.stopNow();
  });
}

/** The pid in a data directory's postmaster.pid, if there is one. */
function pidFileOf(dataDir: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0], 10);
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Whether postmaster.pid says the server accepts connections (pg_ctl's own test). */
function serverReady(dataDir: string, pid: number): boolean {
  try {
    const lines = readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n');
    const status = lines[7]?.trim();
    return Number(lines[0]) === pid && (status === 'ready' || status === 'standby');
  } catch {
    return false;
  }
}

/** postgresql.conf lines; every value quoted, which PostgreSQL accepts for any type. */
function confLines(settings: Record<string, string>): string {
  return Object.entries(settings)
    .map(([k, v]) => `${k} = '${v.replaceAll("'", "''")}'\n`)
    .join('');
}

const BASE_SETTINGS: Record<string, string> = {
  listen_addresses: HOST,
  wal_level: 'replica',
  max_wal_senders: '10',
  // Keeps the WAL a base backup or a briefly stopped replica still needs:
  // without it a checkpoint during pg_basebackup can remove a segment the
  // backup has yet to stream.
  wal_keep_size: '256MB',
  hot_standby: 'on',
  fsync: 'off',
  synchronous_commit: 'off',
  full_page_writes: 'off',
  shared_buffers: '32MB',
  max_connections: '200',
  password_encryption: 'scram-sha-256',
  logging_collector: 'off',
};

const HBA = [
  'local all all trust',
  'local replication all trust',
  `host all all ${HOST}/32 scram-sha-256`,
  `host replication all ${HOST}/32 scram-sha-256`,
].join('\n') + '\n';

/** One node's files: <baseDir>/<name>/{data, postgres.log, socket}. */
interface NodeDirs {
  dir: string;
  dataDir: string;
  logFile: string;
}

export class LocalCluster {
  readonly primary: NodeInfo;
  readonly replicas: NodeInfo[];
  readonly superuser: string = 'postgres';
  readonly superuserPassword: string;
  readonly baseDir: string;
  /** Postmasters this cluster started, by node, so stop() leaves other servers alone. */
  private readonly postmasters = new Map<NodeInfo, ChildProcess>();
  /** initdb and pg_basebackup while they run. */
  private readonly programs = new Programs();
  private readonly removeBaseDir: boolean;
  private readonly log: (line: string) => void;
  private stopping: Promise<void> | undefined;

  private constructor(baseDir: string, removeBaseDir: boolean, password: string, primary: NodeInfo, replicas: NodeInfo[], log: (line: string) => void) {
    this.baseDir = baseDir;
    this.removeBaseDir = removeBaseDir;
    this.superuserPassword = password;
    this.primary = primary;
    this.replicas = replicas;
    this.log = log;
  }

  static async start(opts: ClusterOptions = {}): Promise<LocalCluster> {
    const log = opts.log ?? (() => {});
    const abort = opts.signal;
    abort?.throwIfAborted();
    const began = Date.now();
    let baseDir: string;
    if (opts.baseDir) {
      baseDir = path.resolve(opts.baseDir);
      await mkdir(baseDir, { recursive: true });
    } else {
      baseDir = await mkdtemp(path.join(os.tmpdir(), 'pgmux-cluster-'));
    }

    const nodeDirs = (name: string): NodeDirs => {
      const dir = path.join(baseDir, name);
      return { dir, dataDir: path.join(dir, 'data'), logFile: path.join(dir, 'postgres.log') };
    };
    const primaryDirs = nodeDirs('primary');
    const replicaDirs = Array.from({ length: opts.replicas ?? 0 }, (_, i) => nodeDirs(`replica${i + 1}`));
    const password = randomBytes(18).toString('base64url');
    const primary: NodeInfo = { host: HOST, port: 0, dataDir: primaryDirs.dataDir, role: 'primary' };
    const replicas = replicaDirs.map((d): NodeInfo => ({ host: HOST, port: 0, dataDir: d.dataDir, role: 'replica' }));
    const cluster = new LocalCluster(baseDir, !opts.baseDir, password, primary, replicas, log);
    stopAtExit(cluster);
    // A program running when the start is aborted is stopped at once; the
    // step waiting on it then fails, and the catch below cleans up.
    const onAbort = () => void cluster.programs.stopAll();
    abort?.addEventListener('abort', onAbort, { once: true });
    /** Between steps: an abort that came during a step without a program of its own. */
    const step = () => abort?.throwIfAborted();

    try {
      step();
      await own(baseDir);
      const ports = await distinctFreePorts(1 + replicaDirs.length);
      primary.port = ports[0];
      replicas.forEach((r, i) => (r.port = ports[i + 1]));
      await mkdir(primaryDirs.dir);
      await own(primaryDirs.dir);
      const pwfile = path.join(baseDir, 'superuser.pw');
      await writeFile(pwfile, password + '\n', { mode: 0o600 });
      await own(pwfile);
      step();
      log(`initdb ${primaryDirs.dataDir}`);
      await cluster.programs.run(
        'initdb',
        ['-D', primaryDirs.dataDir, '-U', 'postgres', `--pwfile=${pwfile}`, '--auth-local=trust', '--auth-host=scram-sha-256',
          '--encoding=UTF8', '--locale=C', '--no-sync', '--no-instructions'],
        { cwd: baseDir },
      );
      await rm(pwfile);
      // Appended last, so these override initdb's defaults; replicas copy the file.
      await appendFile(path.join(primaryDirs.dataDir, 'postgresql.conf'), confLines({ ...BASE_SETTINGS, ...opts.settings, ...nodeSettings(primary, primaryDirs) }));
      await writeFile(path.join(primaryDirs.dataDir, 'pg_hba.conf'), HBA);
      step();
      await cluster.startNode(primary, primaryDirs, abort);

      await Promise.all(
        replicas.map(async (node, i) => {
          const d = replicaDirs[i];
          await mkdir(d.dir);
          await own(d.dir);
          step();
          log(`pg_basebackup ${d.dataDir}`);
          // -R writes primary_conninfo with the password from PGPASSWORD, so the
          // replica can log in to stream; -c fast avoids waiting for a spread checkpoint.
          await cluster.programs.run(
            'pg_basebackup',
            ['-h', HOST, '-p', String(primary.port), '-U', 'postgres', '-D', d.dataDir, '-R', '-X', 'stream', '-c', 'fast', '--no-sync', '-w'],
            { cwd: baseDir, env: { PGPASSWORD: password } },
          );
          await appendFile(path.join(d.dataDir, 'postgresql.conf'), confLines({ ...nodeSettings(node, d), ...opts.replicaSettings?.[i] }));
          step();
          await cluster.startNode(node, d, abort);
        }),
      );
      step();
    } catch (err) {
      await cluster.stop().catch(() => {});
      // Whatever failed as a result of the abort failed because of it.
      throw abort?.aborted ? abort.reason : err;
    } finally {
      abort?.removeEventListener('abort', onAbort);
    }
    log(`cluster ready in ${Date.now() - began} ms: primary ${HOST}:${primary.port}` + replicas.map((r) => `, replica ${HOST}:${r.port}`).join(''));
    return cluster;
  }

  /**
   * Starts a node's postmaster as a child of this process (so its pid is
   * known from the first moment) and waits until it accepts connections.
   */
  private async startNode(node: NodeInfo, d: NodeDirs, abort?: AbortSignal): Promise<void> {
    this.log(`starting ${node.role} on ${node.host}:${node.port}`);
    const child = this.programs.start('postgres', ['-D', d.dataDir], { cwd: this.baseDir, logFile: d.logFile });
    this.postmasters.set(node, child);
    let exited = false;
    child.once('exit', () => (exited = true));
    const pid = child.pid!;
    const ready = await waitFor(() => exited || abort?.aborted === true || serverReady(d.dataDir, pid), SERVER_TIMEOUT_MS);
    abort?.throwIfAborted();
    if (exited || !ready) {
      const log = await readFile(d.logFile, 'utf8').catch(() => '');
      const tail = log.split('\n').slice(-20).join('\n');
      throw new Error(`postgres -D ${d.dataDir} ${exited ? 'exited' : `did not accept connections within ${SERVER_TIMEOUT_MS / 1000} s`}:\n--- ${d.logFile} (tail) ---\n${tail}`);
    }
  }

  /** A postgresql:// URL for a node; the superuser's password is filled in for the superuser. */
  url(node: NodeInfo = this.primary, user: string = this.superuser, password?: string, database = 'postgres'): string {
    const pw = password ?? (user === this.superuser ? this.superuserPassword : undefined);
    const auth = encodeURIComponent(user) + (pw === undefined ? '' : `:${encodeURIComponent(pw)}`);
    return `postgresql://${auth}@${node.host}:${node.port}/${encodeURIComponent(database)}`;
  }

  private async withClient<T>(node: NodeInfo, fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({ host: node.host, port: node.port, user: this.superuser, password: this.superuserPassword, database: 'postgres' });
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  }

  /** Runs SQL as the superuser on a node (default the primary) and returns the rows. */
  query(sql: string, params: unknown[] = [], node: NodeInfo = this.primary): Promise<any[]> {
    return this.withClient(node, async (c) => (await c.query(sql, params)).rows);
  }

  /** Creates a LOGIN role with a SCRAM password on the primary; returns its verifier as stored in pg_authid. */
  async createRole(name: string, password: string, opts: { superuser?: boolean } = {}): Promise<string> {
    return this.withClient(this.primary, async (c) => {
      // Utility statements take no parameters, hence the escaping.
      await c.query(`SET password_encryption = 'scram-sha-256'`);
      await c.query(`CREATE ROLE ${pg.escapeIdentifier(name)} LOGIN ${opts.superuser ? 'SUPERUSER' : ''} PASSWORD ${pg.escapeLiteral(password)}`);
      const { rows } = await c.query('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [name]);
      return rows[0].rolpassword as string;
    });
  }

  /** Resolves once every replica has replayed all WAL the primary had when called. */
  async waitForReplicas(): Promise<void> {
    if (this.replicas.length === 0) return;
    // synchronous_commit is off cluster-wide, so committed WAL may not be
    // flushed (and so not streamed) yet. Take the insert position, then make
    // a synchronous commit: it flushes everything up to and past that point.
    const target = await this.withClient(this.primary, async (c) => {
      await c.query('SET synchronous_commit = on');
      const { rows } = await c.query('SELECT pg_current_wal_insert_lsn()::text AS lsn, pg_current_xact_id()');
      return rows[0].lsn as string;
    });
    await Promise.all(
      this.replicas.map((node) =>
        this.withClient(node, async (c) => {
          const { rows } = await c.query(`SELECT setting::bigint AS delay FROM pg_settings WHERE name = 'recovery_min_apply_delay'`);
          const deadline = Date.now() + REPLAY_TIMEOUT_MS + Number(rows[0].delay);
          for (;;) {
            const r = await c.query('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done, pg_last_wal_replay_lsn()::text AS at', [target]);
            if (r.rows[0].done) return;
            if (Date.now() > deadline) throw new Error(`replica ${node.host}:${node.port} replayed only to ${r.rows[0].at}, not ${target}`);
            await new Promise((res) => setTimeout(res, 20));
          }
        }),
      ),
    );
  }

  /** Stops every node this cluster started (fast mode) and removes the directory it created. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    await this.programs.stopAll();
    // Replicas first: a primary shutting down waits for its WAL senders.
    const replicas = this.replicas.filter((n) => this.postmasters.has(n));
    await Promise.all(replicas.map((n) => this.stopNode(n)));
    if (this.postmasters.has(this.primary)) await this.stopNode(this.primary);
    this.postmasters.clear();
    if (this.removeBaseDir) await rm(this.baseDir, { recursive: true, force: true });
    live.delete(this);
    this.log('cluster stopped');
  }

  /**
   * The pid of a node's running postmaster: from postmaster.pid when it
   * belongs to this data directory (a test may have restarted the node
   * with pg_ctl), else the one this cluster started, if still running.
   */
  private postmasterPid(node: NodeInfo): number | undefined {
    const fromFile = pidFileOf(node.dataDir);
    if (fromFile !== undefined && isPostmasterOf(fromFile, node.dataDir)) return fromFile;
    const own = this.postmasters.get(node)?.pid;
    return own !== undefined && alive(own) ? own : undefined;
  }

  /** Fast shutdown (SIGINT) of a node's postmaster, waiting until it has exited. */
  private async stopNode(node: NodeInfo): Promise<void> {
    const pid = this.postmasterPid(node);
    if (pid === undefined || !signal(pid, 'SIGINT')) return;
    if (await waitFor(() => !alive(pid), SERVER_TIMEOUT_MS)) return;
    signal(pid, 'SIGKILL');
    await waitFor(() => !alive(pid), 5_000);
  }

  /**
   * Synchronous last-resort stop for `process.on('exit')` handlers, where
   * nothing asynchronous runs: programs killed, immediate shutdown
   * (SIGQUIT) of the postmasters, then removal of the directory it created.
   */
  stopNow(): void {
    this.programs.stopAllNow();
    for (const node of [...this.replicas, this.primary]) {
      const pid = this.postmasters.has(node) ? this.postmasterPid(node) : undefined;
      if (pid === undefined || !signal(pid, 'SIGQUIT')) continue;
      if (!waitSync(() => !alive(pid), 10_000)) signal(pid, 'SIGKILL');
    }
    this.postmasters.clear();
    if (this.removeBaseDir) rmSync(this.baseDir, { recursive: true, force: true });
    live.delete(this);
  }
}

/** Settings that differ per node: its port and its own socket directory. */
function nodeSettings(node: NodeInfo, d: NodeDirs): Record<string, string> {
  return { port: String(node.port), unix_socket_directories: d.dir };
}

/** n distinct free ports (asked for one by one, the OS could hand out one twice). */
async function distinctFreePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}
