/**
 * What a new client finds after a script has run through pgmux: it must be
 * answered (PostgreSQL answers every new connection), and find no setting
 * that an earlier client made (a new backend starts with none). A script
 * that leaves either behind fails, and pgmux is started afresh for the
 * next one, so that it is not blamed.
 */
import { getCluster } from '../cluster-context.ts';
import type { Mode } from './modes.ts';
import { encode, Query } from './protocol.ts';
import { WireClient } from './wire.ts';

/** How long a new client may wait for the pool after a script (a drain after a leave takes up to half a second). */
const PROBE_TIMEOUT_MS = 1500;

/**
 * Settings made in the session (SET, set_config) that differ from what
 * RESET would restore, but for application_name (pgmux sets each
 * client's) and the transaction_* ones (a replica's differ; item 13
 * compares those).
 */
const CHANGED_SETTINGS = `SELECT name || '=' || setting FROM pg_settings
  WHERE source = 'session' AND setting IS DISTINCT FROM reset_val
    AND name <> 'application_name' AND name NOT LIKE 'transaction\\_%' ORDER BY name`;

/** The text values of the DataRows in `msgs` (first column). */
function firstColumn(msgs: { type: string; body: Buffer }[]): string[] {
  return msgs.filter((m) => m.type === 'D').map((m) => m.body.toString('utf8', 6, 6 + m.body.readInt32BE(2)));
}

/** Runs `sql` on a logged-in client: its first column, or null if no ReadyForQuery 'I' came in time. */
async function ask(w: WireClient, sql: string): Promise<string[] | null> {
  const from = w.msgs.length;
  const z = w.zCount;
  w.socket.write(encode(Query(sql)));
  await w.until(() => w.zCount > z, PROBE_TIMEOUT_MS);
  if (w.zCount === z || w.status !== 'I') return null;
  return firstColumn(w.msgs.slice(from));
}

/** A problem a new client has after the script, or null. */
export async function probeAfterScript(mode: Mode, port: number): Promise<string | null> {
  const c = getCluster();
  // Session mode pools two connections (modes.ts): both must be free.
  const n = mode === 'session' ? 2 : 1;
  const clients: WireClient[] = [];
  const notAnswered = `after the script, a new client (${n === 1 ? 'one' : `${n} at once`}) was not answered within ${PROBE_TIMEOUT_MS} ms: pgmux kept a server connection it should have given back (PostgreSQL answers every new client)`;
  try {
    for (let i = 0; i < n; i++) clients.push(await WireClient.connect(port));
    const found = await Promise.all(
      clients.map(async (w) => {
        await w.login({ user: 'app', database: 'appdb', password: c.roles.app.password, appName: 'diff_probe', timeoutMs: PROBE_TIMEOUT_MS });
        if (w.status !== 'I') return null;
        const here = await ask(w, CHANGED_SETTINGS);
        if (here === null || mode !== 'replica') return here;
        // In the replica topology that read went to the replica; with txid_current() it goes to the primary.
        const primary = await ask(w, CHANGED_SETTINGS.replace('FROM pg_settings', 'FROM pg_settings, txid_current()'));
        return primary === null ? null : [...here, ...primary];
      }),
    );
    if (found.some((f) => f === null)) return notAnswered;
    const leaked = [...new Set(found.flat())];
    if (leaked.length) return `after the script, a new client found settings an earlier client made (a new PostgreSQL backend has none): ${leaked.join(', ')}`;
    return null;
  } catch {
    return notAnswered;
  } finally {
    for (const w of clients) w.destroy();
  }
}
