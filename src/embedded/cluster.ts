/**
 * A throw-away PostgreSQL 15 cluster (a primary and optional streaming
 * replicas) on free ports in a temporary directory, for `npm start
 * --embedded` and the test suite. Tuned for speed, not durability.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { appendFile, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);

const PG_BIN = '/usr/lib/postgresql/15/bin';
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
}

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

// initdb and postgres refuse to run as root, so as root every server
// binary runs as the `postgres` OS user, which must own the files.
const asRoot = process.getuid?.() === 0;

function pgCommand(bin: string, args: string[]): [string, string[]] {
  const exe = path.join(PG_BIN, bin);
  return asRoot ? ['runuser', ['-u', 'postgres', '--', exe, ...args]] : [exe, args];
}

/** Runs a PostgreSQL binary; the error carries its stderr and, if given, the tail of a log file. */
async function pgRun(bin: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd: string; logFile?: string }): Promise<string> {
  const [cmd, argv] = pgCommand(bin, args);
  try {
    // cwd: the caller's directory may be unreadable for `postgres`.
    const { stdout } = await run(cmd, argv, { cwd: opts.cwd, env: { ...process.env, ...opts.env } });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    let detail = e.stderr?.trim() ?? '';
    if (opts.logFile) {
      const log = await readFile(opts.logFile, 'utf8').catch(() => '');
      detail += `\n--- ${opts.logFile} (tail) ---\n${log.split('\n').slice(-20).join('\n')}`;
    }
    throw new Error(`${bin} ${args.join(' ')} failed: ${detail || e.message}`);
  }
}

let postgresIds: Promise<{ uid: number; gid: number }> | undefined;

/** Gives a path to the `postgres` user when running as root; no-op otherwise. */
async function own(p: string): Promise<void> {
  if (!asRoot) return;
  postgresIds ??= Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]).then(([u, g]) => ({
    uid: Number(u.stdout.trim()),
    gid: Number(g.stdout.trim()),
  }));
  const { uid, gid } = await postgresIds;
  await chown(p, uid, gid);
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
  /** Nodes whose server was started, so stop() leaves others alone. */
  private readonly started = new Set<NodeInfo>();
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
    const began = Date.now();
    let baseDir: string;
    if (opts.baseDir) {
      baseDir = path.resolve(opts.baseDir);
      await mkdir(baseDir, { recursive: true });
    } else {
      baseDir = await mkdtemp(path.join(os.tmpdir(), 'pgmux-cluster-'));
    }
    await own(baseDir);

    const nodeDirs = (name: string): NodeDirs => {
      const dir = path.join(baseDir, name);
      return { dir, dataDir: path.join(dir, 'data'), logFile: path.join(dir, 'postgres.log') };
    };
    const primaryDirs = nodeDirs('primary');
    const replicaDirs = Array.from({ length: opts.replicas ?? 0 }, (_, i) => nodeDirs(`replica${i + 1}`));
    const ports = await distinctFreePorts(1 + replicaDirs.length);
    const primary: NodeInfo = { host: HOST, port: ports[0], dataDir: primaryDirs.dataDir, role: 'primary' };
    const replicas = replicaDirs.map((d, i): NodeInfo => ({ host: HOST, port: ports[i + 1], dataDir: d.dataDir, role: 'replica' }));
    const password = randomBytes(18).toString('base64url');
    const cluster = new LocalCluster(baseDir, !opts.baseDir, password, primary, replicas, log);

    try {
      await mkdir(primaryDirs.dir);
      await own(primaryDirs.dir);
      const pwfile = path.join(baseDir, 'superuser.pw');
      await writeFile(pwfile, password + '\n', { mode: 0o600 });
      await own(pwfile);
      log(`initdb ${primaryDirs.dataDir}`);
      await pgRun(
        'initdb',
        ['-D', primaryDirs.dataDir, '-U', 'postgres', `--pwfile=${pwfile}`, '--auth-local=trust', '--auth-host=scram-sha-256',
          '--encoding=UTF8', '--locale=C', '--no-sync', '--no-instructions'],
        { cwd: baseDir },
      );
      await rm(pwfile);
      // Appended last, so these override initdb's defaults; replicas copy the file.
      await appendFile(path.join(primaryDirs.dataDir, 'postgresql.conf'), confLines({ ...BASE_SETTINGS, ...opts.settings, ...nodeSettings(primary, primaryDirs) }));
      await writeFile(path.join(primaryDirs.dataDir, 'pg_hba.conf'), HBA);
      await cluster.startNode(primary, primaryDirs);

      await Promise.all(
        replicas.map(async (node, i) => {
          const d = replicaDirs[i];
          await mkdir(d.dir);
          await own(d.dir);
          log(`pg_basebackup ${d.dataDir}`);
          // -R writes primary_conninfo with the password from PGPASSWORD, so the
          // replica can log in to stream; -c fast avoids waiting for a spread checkpoint.
          await pgRun(
            'pg_basebackup',
            ['-h', HOST, '-p', String(primary.port), '-U', 'postgres', '-D', d.dataDir, '-R', '-X', 'stream', '-c', 'fast', '--no-sync', '-w'],
            { cwd: baseDir, env: { PGPASSWORD: password } },
          );
          await appendFile(path.join(d.dataDir, 'postgresql.conf'), confLines({ ...nodeSettings(node, d), ...opts.replicaSettings?.[i] }));
          await cluster.startNode(node, d);
        }),
      );
    } catch (err) {
      await cluster.stop().catch(() => {});
      throw err;
    }
    log(`cluster ready in ${Date.now() - began} ms: primary ${HOST}:${primary.port}` + replicas.map((r) => `, replica ${HOST}:${r.port}`).join(''));
    return cluster;
  }

  private async startNode(node: NodeInfo, d: NodeDirs): Promise<void> {
    this.log(`starting ${node.role} on ${node.host}:${node.port}`);
    // Marked before starting: a start that fails half way may leave a server behind.
    this.started.add(node);
    await pgRun('pg_ctl', ['-w', '-t', '60', '-D', d.dataDir, '-l', d.logFile, 'start'], { cwd: this.baseDir, logFile: d.logFile });
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
    // Replicas first: a primary shutting down waits for its WAL senders.
    const replicas = this.replicas.filter((n) => this.started.has(n));
    await Promise.all(replicas.map((n) => this.stopNode(n)));
    if (this.started.has(this.primary)) await this.stopNode(this.primary);
    this.started.clear();
    if (this.removeBaseDir) await rm(this.baseDir, { recursive: true, force: true });
    this.log('cluster stopped');
  }

  private async stopNode(node: NodeInfo): Promise<void> {
    if (!existsSync(path.join(node.dataDir, 'postmaster.pid'))) return; // never started or already stopped
    try {
      await pgRun('pg_ctl', ['-w', '-D', node.dataDir, '-m', 'fast', 'stop'], { cwd: this.baseDir });
    } catch (err) {
      // A stale pid file: the server is gone already (pg_ctl status exits 3).
      const [cmd, argv] = pgCommand('pg_ctl', ['-D', node.dataDir, 'status']);
      const stillRunning = await run(cmd, argv, { cwd: this.baseDir }).then(
        () => true,
        (e: { code?: number }) => e.code !== 3,
      );
      if (stillRunning) throw err;
    }
  }

  /**
   * Synchronous last-resort stop for `process.on('exit')` handlers, where
   * nothing asynchronous runs: immediate shutdown, then removal of the
   * directory it created. Errors are ignored.
   */
  stopNow(): void {
    for (const node of [...this.replicas, this.primary]) {
      if (!this.started.has(node) || !existsSync(path.join(node.dataDir, 'postmaster.pid'))) continue;
      const [cmd, argv] = pgCommand('pg_ctl', ['-w', '-D', node.dataDir, '-m', 'immediate', 'stop']);
      try {
        execFileSync(cmd, argv, { cwd: this.baseDir, stdio: 'ignore' });
      } catch {
        // Best effort: the process is exiting anyway.
      }
    }
    this.started.clear();
    if (this.removeBaseDir) rmSync(this.baseDir, { recursive: true, force: true });
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
