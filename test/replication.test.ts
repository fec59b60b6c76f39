import { execFile } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { psql } from './helpers/clients.ts';
import { onPrimary, sleep, startPgmux, writeAuthFile, type RunningPgmux } from './helpers/pgmux.ts';
import { tempDir } from './helpers/temp.ts';
import { getCluster } from './cluster-context.ts';

const exec = promisify(execFile);

const started: RunningPgmux[] = [];
afterEach(async () => {
  for (const p of started.splice(0)) await p.stop();
});

/** pgmux in front of the primary, the superuser (a replication role) in its auth_file. */
async function pgmux(overrides: Record<string, unknown> = {}): Promise<RunningPgmux> {
  const c = getCluster();
  const p = await startPgmux({ auth_file: await writeAuthFile([`"${c.superuser}" "${c.superuserPassword}"`]), ...overrides });
  started.push(p);
  return p;
}

/** A libpq connection string through pgmux as the superuser. */
function conninfo(p: RunningPgmux, extra: string, user = getCluster().superuser): string {
  const c = getCluster();
  const password = user === c.superuser ? c.superuserPassword : c.roles.app.password;
  return `host=127.0.0.1 port=${p.port} user=${user} password=${password} dbname=postgres ${extra}`;
}

/** WAL senders on the primary serving clients named `name`. */
async function walSenders(name: string): Promise<number> {
  const rows = await onPrimary<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'walsender' AND application_name = $1", [name]);
  return rows[0].n;
}

const systemId = async () => (await onPrimary<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()'))[0].id;

describe('replication connections are passed through to the primary', () => {
  it('replication=database: IDENTIFY_SYSTEM and SQL, with the client\'s own settings, whatever the pool mode', async () => {
    const p = await pgmux({ pool_mode: 'transaction' });
    const info = conninfo(p, "replication=database application_name=abc options='-c enable_seqscan=off'");
    const [id, timeline, , dbname] = (await psql(info, 'IDENTIFY_SYSTEM')).split('|');
    expect(id).toBe(await systemId());
    expect(Number(timeline)).toBeGreaterThanOrEqual(1);
    expect(dbname).toBe('postgres');
    expect(await psql(info, 'SHOW application_name')).toBe('abc');
    expect(await psql(info, 'SHOW enable_seqscan')).toBe('off');
    // An ordinary client of the same database and user is unaffected.
    expect(await psql(conninfo(p, ''), 'SELECT 1')).toBe('1');
    // Not pooled: each replication client's server connection went with it.
    for (let i = 0; i < 50 && (await walSenders('abc')) > 0; i++) await sleep(20);
    expect(await walSenders('abc')).toBe(0);
  });

  it('replication=true (physical): IDENTIFY_SYSTEM; SQL is refused by the server in its own words', async () => {
    const p = await pgmux();
    const info = conninfo(p, 'replication=true');
    const [id, , , dbname] = (await psql(info, 'IDENTIFY_SYSTEM')).split('|');
    expect(id).toBe(await systemId());
    expect(dbname).toBe('');
    await expect(psql(info, 'SELECT 1')).rejects.toThrow('cannot execute SQL commands in WAL sender for physical replication');
  });

  it('pg_receivewal streams WAL through pgmux up to an end position', async () => {
    const p = await pgmux();
    const dir = await tempDir('pgmux-wal-', 0o755);
    // Some WAL to stream, leaving nothing behind in the database.
    // Transactional, so its commit flushes it; a walsender sends only flushed
    // WAL, so the end position is the flush position (the write position can
    // stay ahead of it until the WAL writer gets there).
    await onPrimary("SELECT pg_logical_emit_message(true, 'pgmux-test', 'x')");
    const endpos = (await onPrimary<{ lsn: string }>('SELECT pg_current_wal_flush_lsn()::text AS lsn'))[0].lsn;
    // WAL past the end position, so pg_receivewal sees it reached at once
    // instead of at its next status round.
    await onPrimary("SELECT pg_logical_emit_message(true, 'pgmux-test', 'y')");
    await exec('pg_receivewal', ['--dbname', conninfo(p, ''), '--directory', dir, `--endpos=${endpos}`, '--no-loop', '--no-password'], { timeout: 30_000 });
    const files = await readdir(dir);
    expect(files.some((f) => /^[0-9A-F]{24}(\.partial)?$/.test(f))).toBe(true);
  });

  it('with auth_type = hba, a physical replication connection matches only rules for "replication", a logical one its database, as in PostgreSQL', async () => {
    const c = getCluster();
    const dir = await tempDir('pgmux-hba-');
    const hba = path.join(dir, 'pg_hba.conf');
    await writeFile(hba, [`host replication ${c.superuser} 127.0.0.1/32 reject`, 'host all all 127.0.0.1/32 scram-sha-256', ''].join('\n'));
    const p = await pgmux({ auth_type: 'hba', auth_hba_file: hba });
    await expect(psql(conninfo(p, 'replication=true'), 'IDENTIFY_SYSTEM')).rejects.toThrow(
      `pg_hba.conf rejects replication connection for host "127.0.0.1", user "${c.superuser}", no encryption`,
    );
    expect((await psql(conninfo(p, 'replication=database'), 'IDENTIFY_SYSTEM')).split('|')[3]).toBe('postgres');
    await writeFile(hba, 'host all all 127.0.0.1/32 scram-sha-256\n');
    await p.server.reload({ ...p.server.currentConfig });
    await expect(psql(conninfo(p, 'replication=true'), 'IDENTIFY_SYSTEM')).rejects.toThrow(
      `no pg_hba.conf entry for replication connection from host "127.0.0.1", user "${c.superuser}", no encryption`,
    );
  });

  it('a user without REPLICATION is refused by the server, and an invalid replication value by pgmux, in PostgreSQL\'s words', async () => {
    const p = await pgmux();
    await expect(psql(conninfo(p, 'replication=database', 'app'), 'IDENTIFY_SYSTEM')).rejects.toThrow(/must be superuser or replication role to start walsender|permission denied to start WAL sender/);
    await expect(psql(conninfo(p, 'replication=sometimes'), 'IDENTIFY_SYSTEM')).rejects.toThrow('invalid value for parameter "replication": "sometimes"');
    await expect(psql(conninfo(p, 'replication=database dbname=pgmux'), 'SHOW VERSION')).rejects.toThrow('the admin console takes no replication connections');
    // replication=false is an ordinary connection.
    expect(await psql(conninfo(p, 'replication=false'), 'SELECT 1')).toBe('1');
  });
});
