import { quoteLiteral } from './startup-params.ts';

/**
 * Session parameters in transaction mode: what each client chose, what each
 * server connection currently has, and the one query that turns the second
 * into the first when a connection is lent.
 */

/** Parameters PostgreSQL 15 reports with ParameterStatus that a client can set. */
export const REPORTED_SETTABLE = new Set([
  'application_name',
  'client_encoding',
  'datestyle',
  'default_transaction_read_only',
  'intervalstyle',
  'standard_conforming_strings',
  'timezone',
]);

/** What pgmux knows of one server session beyond its reported parameters. */
export interface ServerSessionState {
  /** ParameterStatus values, as the server named them. */
  readonly parameters: Map<string, string>;
  /** Parameters set on this session (by pgmux or a client), lower-cased name → value. */
  readonly sessionSets: Map<string, string>;
}

/** A client's chosen values, lower-cased name → value as the server takes it. */
export class ClientParams {
  readonly want = new Map<string, string>();
  /**
   * What the client's startup packet set: RESET and DISCARD ALL go back to
   * these, as a server session goes back to its startup values.
   */
  readonly startup: ReadonlyMap<string, string>;
  /** What the client has been told with ParameterStatus, by the server's name. */
  readonly reported = new Map<string, string>();
  private readonly extra: ReadonlySet<string>;

  constructor(startup: ReadonlyMap<string, string>, extra: ReadonlySet<string>) {
    for (const [k, v] of startup) this.want.set(k.toLowerCase(), v);
    this.startup = new Map(this.want);
    this.extra = extra;
  }

  /** Whether pgmux follows this parameter across server connections. */
  tracks(name: string): boolean {
    return REPORTED_SETTABLE.has(name) || this.extra.has(name) || this.want.has(name);
  }

  /** Only parameters the server reports can be followed from ParameterStatus. */
  static reported(name: string): boolean {
    return REPORTED_SETTABLE.has(name);
  }
}

function currentValue(server: ServerSessionState, name: string): string | undefined {
  const set = server.sessionSets.get(name);
  if (set !== undefined) return set;
  if (!REPORTED_SETTABLE.has(name)) return undefined;
  const same = server.parameters.get(name);
  if (same !== undefined) return same;
  for (const [k, v] of server.parameters) if (k.toLowerCase() === name) return v;
  return undefined;
}

/**
 * The query that gives `server` exactly a client's parameters (`want`): its own
 * values set, values left by earlier clients reset. Null when nothing
 * differs. The server's state is updated as if the query had run (the
 * caller sends it before anything of the client's, so it always has).
 */
export function syncParametersQuery(want: ReadonlyMap<string, string>, server: ServerSessionState): string | null {
  if (inSync(want, server)) return null;
  const calls: string[] = [];
  const resets: string[] = [];
  for (const [name, value] of want) {
    if (currentValue(server, name) === value) continue;
    // set_config takes the value as a startup packet does (a search_path
    // given as "a, b" is two schemas), which SET with a literal would not.
    calls.push(`pg_catalog.set_config(${quoteLiteral(name)}, ${quoteLiteral(value)}, false)`);
    server.sessionSets.set(name, value);
  }
  for (const name of [...server.sessionSets.keys()]) {
    if (want.has(name)) continue;
    resets.push(`RESET ${quoteIdent(name)}`);
    server.sessionSets.delete(name);
  }
  if (calls.length === 0 && resets.length === 0) return null;
  const parts = calls.length > 0 ? [`SELECT ${calls.join(', ')}`] : [];
  return [...parts, ...resets].join('; ');
}

/** Whether `server` has exactly the client's parameters already (checked on every lend: nothing allocated). */
function inSync(want: ReadonlyMap<string, string>, server: ServerSessionState): boolean {
  for (const [name, value] of want) if (currentValue(server, name) !== value) return false;
  for (const name of server.sessionSets.keys()) if (!want.has(name)) return false;
  return true;
}

/** A parameter name as an identifier (names are lower-cased, may hold dots). */
export function quoteIdent(name: string): string {
  return name
    .split('.')
    .map((p) => `"${p.replace(/"/g, '""')}"`)
    .join('.');
}
