/**
 * A differential script: what one or more clients send, when they wait and
 * when they leave, and side checks in between. The same script runs against
 * PostgreSQL and through pgmux; see harness.ts.
 */
import { printMsg, type Msg } from './protocol.ts';

/**
 * How long a step waits for answers. Against PostgreSQL it waits as said;
 * through pgmux it waits until as many messages arrived as PostgreSQL sent
 * for that step (so no timing of pgmux is trusted), or gives up after the
 * harness's answer timeout and reports "no answer".
 *
 * - undefined: every Query, Sync and FunctionCall sent so far answered with
 *   ReadyForQuery; a step ending in messages without their Sync also waits
 *   a short quiet time for what PostgreSQL sends at once (errors, Flush);
 * - rfq: that many ReadyForQuery more (for COPY, which swallows Syncs);
 * - type: a message of that type;
 * - quiet: that many milliseconds, whatever comes (a "no answer" to compare);
 * - closed: the connection closed by the other side;
 * - none: not at all.
 */
export type Wait = { rfq: number } | { type: string } | { quiet: number } | { closed: true } | 'none';

/** The startup packet: a protocol version and extra parameters, or none at all (the script sends raw bytes). */
export type Startup = 'none' | { major?: number; minor?: number; params?: [string, string][] };

export type Step =
  | { do: 'connect'; client: string; appName?: string; startup?: Startup }
  | { do: 'send'; client: string; msgs: Msg[]; split?: number[] | 'bytes'; wait?: Wait }
  | { do: 'wait'; client: string; wait: Wait }
  | { do: 'leave'; client: string; how: 'end' | 'destroy' | 'terminate' }
  /** SQL on a fresh superuser connection to appdb on the primary; its rows are compared. */
  | { do: 'check'; sql: string; delayMs?: number }
  | { do: 'sleep'; ms: number };

export interface Script {
  name: string;
  /** SQL run as `app` on the primary before each run: drop and create the case's own tables. */
  setup?: string[];
  steps: Step[];
  /**
   * Generated scripts: a client's step is skipped while another client
   * holds the only server connection (see POOL_WAIT in differences.ts), in
   * both runs alike, so interleavings stay comparable.
   */
  skipWhileHeld?: boolean;
  /**
   * The script drops and creates a table, so the table's OID (and its
   * columns' numbers) in RowDescription differ between the two runs, not
   * between PostgreSQL and pgmux: those fields are compared as zero.
   */
  ignoreTableOids?: boolean;
}

export interface SendOptions {
  /** Byte offsets into the step's bytes where a new socket write begins; 'bytes': every byte alone. */
  split?: number[] | 'bytes';
  wait?: Wait;
}

export function send(client: string, msgs: Msg[], opts: SendOptions = {}): Step {
  return { do: 'send', client, msgs, ...opts };
}
export const connect = (client: string, opts: { appName?: string; startup?: Startup } = {}): Step => ({ do: 'connect', client, ...opts });
export const wait = (client: string, w: Wait): Step => ({ do: 'wait', client, wait: w });
export const leave = (client: string, how: 'end' | 'destroy' | 'terminate'): Step => ({ do: 'leave', client, how });
export const check = (sql: string, delayMs?: number): Step => (delayMs === undefined ? { do: 'check', sql } : { do: 'check', sql, delayMs });
export const sleepStep = (ms: number): Step => ({ do: 'sleep', ms });

const lit = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n')}'`;

const cut = (s: string) => (s.length > 200 ? `${s.slice(0, 200)}…` : s);

/** A one-line description of a step, for reports. */
export function describeStep(s: Step): string {
  switch (s.do) {
    case 'send':
      return `${s.client}: ${s.msgs.map((m) => cut(printMsg(m))).join(', ')}${s.split ? ` split ${s.split === 'bytes' ? 'at every byte' : `at ${s.split.join(', ')}`}` : ''}`;
    case 'connect':
      return `${s.client}: connect${s.startup ? ` ${JSON.stringify(s.startup)}` : ''}`;
    case 'wait':
      return `${s.client}: wait ${JSON.stringify(s.wait)}`;
    case 'leave':
      return `${s.client}: leave (${s.how})`;
    case 'check':
      return `check ${s.sql}`;
    case 'sleep':
      return `sleep ${s.ms} ms`;
  }
}

function printStep(s: Step): string {
  switch (s.do) {
    case 'send': {
      const opts: string[] = [];
      if (s.split) opts.push(`split: ${s.split === 'bytes' ? "'bytes'" : `[${s.split.join(', ')}]`}`);
      if (s.wait) opts.push(`wait: ${JSON.stringify(s.wait)}`);
      return `send(${lit(s.client)}, [${s.msgs.map(printMsg).join(', ')}]${opts.length ? `, { ${opts.join(', ')} }` : ''})`;
    }
    case 'connect':
      return `connect(${lit(s.client)}${s.appName || s.startup ? `, ${JSON.stringify({ appName: s.appName, startup: s.startup })}` : ''})`;
    case 'wait':
      return `wait(${lit(s.client)}, ${JSON.stringify(s.wait)})`;
    case 'leave':
      return `leave(${lit(s.client)}, ${lit(s.how)})`;
    case 'check':
      return `check(${lit(s.sql)}${s.delayMs === undefined ? '' : `, ${s.delayMs}`})`;
    case 'sleep':
      return `sleepStep(${s.ms})`;
  }
}

/** The script as source text for cases.test.ts. */
export function printScript(s: Script): string {
  const lines = [`{`, `  name: ${lit(s.name)},`];
  if (s.setup) lines.push(`  setup: [${s.setup.map(lit).join(', ')}],`);
  if (s.skipWhileHeld) lines.push(`  skipWhileHeld: true,`);
  if (s.ignoreTableOids) lines.push(`  ignoreTableOids: true,`);
  lines.push(`  steps: [`, ...s.steps.map((st) => `    ${printStep(st)},`), `  ],`, `}`);
  return lines.join('\n');
}
