/**
 * --peer and PGMUX_PEERS: [peers] entries on the command line, as
 * `ID=host:port`, several comma-separated. The host may be an address
 * (IPv6 in brackets when a port follows), a name, or a Unix-socket
 * directory (`3=/run/pgmux-3:6433`). Values are left as written where they
 * are not numbers, so validation reports them against the flag.
 */
import { ConfigError } from '../config/errors.ts';

export function parsePeerSpecs(specs: string, source: string): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const spec of specs.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const eq = spec.indexOf('=');
    if (eq <= 0) throw new ConfigError(`${source}: expected peer_id=host:port, got ${JSON.stringify(spec)}`);
    const id = spec.slice(0, eq).trim();
    const where = spec.slice(eq + 1).trim();
    const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(where);
    const hostPort = bracketed === null && (where.match(/:/g) ?? []).length === 1 ? /^(.*):(.*)$/.exec(where) : null;
    const host = bracketed?.[1] ?? hostPort?.[1] ?? where;
    const port = bracketed?.[2] ?? hostPort?.[2];
    if (Object.hasOwn(out, id)) throw new ConfigError(`${source}: peer ${id} is given twice`);
    out[id] = port === undefined ? { host } : { host, port: /^[0-9]+$/.test(port) ? Number(port) : port };
  }
  return out;
}
