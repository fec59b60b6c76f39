import { PgError } from '../protocol/errors.ts';
import type { Pool } from '../pool/pool.ts';
import { syncParametersQuery } from './params.ts';

/**
 * The ParameterStatus set for a client that logs in without a server
 * connection of its own (transaction pooling, reads over replicas): known
 * from an earlier login with the same settings, or learnt now from a pooled
 * connection, which also checks the settings (a value the server refuses
 * gets the server's own error). Also returns the client's settings as the
 * server spells them (TimeZone=utc is reported as UTC), lower-cased, for
 * the lends to come.
 */
export async function loginParameters(
  pool: Pool,
  settings: ReadonlyMap<string, string>,
  queryTimeoutMs: number,
): Promise<{ reported: Map<string, string>; want: Map<string, string> }> {
  const want = new Map<string, string>();
  for (const [k, v] of settings) want.set(k.toLowerCase(), v);
  const appName = want.get('application_name');
  want.delete('application_name');
  const cacheKey = JSON.stringify([...want].sort());
  let known = pool.startupParameters.get(cacheKey);
  if (known === undefined) {
    const server = await pool.acquire();
    try {
      const q = syncParametersQuery(want, server);
      if (q !== null) {
        const r = await server.runQuery(q, queryTimeoutMs);
        if (r.error !== null) {
          server.sessionSets.clear();
          throw new PgError(r.error.code, r.error.message, { detail: r.error.detail, hint: r.error.hint });
        }
      }
      known = new Map(server.parameters);
      pool.rememberStartupParameters(cacheKey, known);
    } finally {
      pool.release(server, { reset: false });
    }
  }
  const reported = new Map(known);
  reported.set('application_name', appName ?? '');
  for (const [k, v] of known) if (want.has(k.toLowerCase())) want.set(k.toLowerCase(), v);
  if (appName !== undefined) want.set('application_name', appName);
  return { reported, want };
}
