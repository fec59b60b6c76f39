/**
 * The differences between PostgreSQL and pgmux that are there by design,
 * each with its reason, the modes it holds in and the exact form pgmux's
 * answer must still have. Everything not listed here (and not normalised
 * in wire.ts: cancel keys, notification pids, error source fields, the
 * login's ParameterStatus order and SASL data) must match byte for byte.
 */
import { parseErrorFields } from '../../src/protocol/messages.ts';
import type { Mode } from './modes.ts';
import type { BackendMsg, Msg } from './protocol.ts';
import { showBackend } from './protocol.ts';

export interface Difference {
  id: string;
  modes: Mode[];
  reason: string;
  /**
   * A step whose messages this is true of gets pgmux's own answer instead
   * of PostgreSQL's; the runs are compared up to that step and not after
   * it (the client's state differs from there on by design). Null for
   * differences the harness avoids rather than checks (see its note).
   */
  trigger: ((msgs: Msg[]) => boolean) | null;
  /** Cases that cannot be compared in these modes at all: registered as skipped, with this reason. */
  skipsCases?: string[];
  /** Cases whose answers through pgmux take `form` in these modes. */
  cases?: string[];
  /**
   * The exact form of pgmux's answers in those cases:
   * - later: PostgreSQL's messages, in PostgreSQL's order, but possibly
   *   later than PostgreSQL sends them: each client's whole stream is
   *   compared rather than step by step;
   * - rewrite: for the steps `steps` picks, PostgreSQL's answer as
   *   `rewrite` changes it; every other step as PostgreSQL's.
   */
  form?: { later: true } | { steps: (msgs: Msg[]) => boolean; rewrite: (msgs: BackendMsg[]) => BackendMsg[] };
  /** The ErrorResponse pgmux must send, field by field (all of them: no other field may be present). */
  error?: Record<string, string>;
  /** The ReadyForQuery status that must follow the error when the step ends its batch (Query or Sync). */
  readyForQuery?: string;
}

const BEGIN = /^\s*(begin|start\s+transaction)\b/i;
const sqlOf = (m: Msg) => (m.t === 'Query' || m.t === 'Parse' ? m.sql : null);

export const DIFFERENCES: Difference[] = [
  {
    id: 'STATEMENT_MODE_BEGIN',
    modes: ['statement'],
    reason:
      'statement pooling gives the server connection back after every statement, so it refuses transaction blocks (docs/transaction-pooling.md); the client stays connected and outside any transaction',
    trigger: (msgs) => msgs.some((m) => BEGIN.test(sqlOf(m) ?? '')),
    error: {
      S: 'ERROR',
      V: 'ERROR',
      C: '0A000',
      M: 'transaction blocks are not allowed in statement pooling mode',
      H: 'Use pool_mode = transaction for this user or endpoint.',
    },
    readyForQuery: 'I',
  },
  {
    id: 'POOL_WAIT',
    modes: ['transaction', 'statement', 'replica'],
    reason:
      'with a pool of one server connection, a client waits while another client holds it (inside a transaction block, or with extended-protocol messages not yet synced); directly, each client has its own backend and is answered at once. Hand-written cases never ask a client for anything at such a point; generated scripts skip that step in both runs (Script.skipWhileHeld)',
    trigger: null,
  },
  {
    id: 'REPLICA_LAG',
    modes: ['replica'],
    reason:
      "a replica replays the primary's WAL a little later (asynchronous streaming replication): a client's read may not yet see another client's commit (read-your-writes covers only the writer's own reads). The harness waits, after setup and after each step, until the replica has replayed everything the primary wrote (Fleet.replicaBarrier), so this never shows",
    trigger: null,
  },
  {
    id: 'IDLE_CLIENT_HOLDS_NO_BACKEND',
    modes: ['transaction', 'statement', 'replica'],
    reason:
      'between transactions a client holds no server connection: ending the backend pgmux last used for it (pg_terminate_backend) ends a pooled connection, which pgmux drops, and the client is told nothing; directly, the client\'s own backend ends and it gets FATAL 57P01',
    trigger: null,
    // Its form (the client is told nothing and goes on) is tested in test/server-fatal.test.ts.
    skipsCases: ['item 19: a backend terminated while its session-mode client is idle sends one FATAL 57P01, then the connection closes'],
  },
  {
    id: 'REPLICA_READ_ONLY',
    modes: ['replica'],
    reason:
      'a read served by a replica runs on a hot standby, where transaction_read_only is on (SHOW, current_setting): STABLE functions may run there (docs/load-balancing.md); pg_is_in_recovery() is VOLATILE and is answered by the primary',
    trigger: null,
    cases: ['item 13: transaction_read_only where a read is served'],
    // The one value PostgreSQL's primary gives as off is on.
    form: { steps: (msgs) => msgs.some((m) => /transaction_read_only/.test(sqlOf(m) ?? '')), rewrite: (msgs) => msgs.map((m) => (isDataRow(m, 'off') ? dataRow('on') : m)) },
  },
  {
    id: 'REPLICA_WHOLE_RUN',
    modes: ['replica'],
    reason:
      'an extended-protocol run that starts outside a transaction is held in pgmux until its Sync, Flush or a Query, so that it is routed whole to one node (docs/load-balancing.md): an error PostgreSQL reports before that reaches the client then, and a Query sent in the middle of the run travels with it',
    trigger: null,
    cases: [
      'item 18: an error before any Sync or Flush is sent at once',
      'a Query sent while PostgreSQL skips to the Sync gets no answer; the connection is given back after the client leaves',
      'split: a Parse error arrives before the rest of its batch is sent',
      'parameters: a SET in a Query after extended messages without their Sync ends with its client',
    ],
    form: { later: true },
  },
  {
    id: 'SESSION_RESET_TO_SERVER_DEFAULT',
    modes: ['session'],
    reason:
      "a pooled server connection was logged in without the client's startup settings (pgmux applies them when it lends it), so RESET, RESET ALL and DISCARD ALL take a setting the client gave at startup back to the server's default, and the client is told with ParameterStatus, as with PgBouncer (docs/pooling.md); the message-level modes put the startup value back",
    trigger: null,
    cases: ['parameters: SET, SET LOCAL, RESET and application_name as each client sees them', "item 17: a client's own DEALLOCATE name and DISCARD ALL end its statements"],
    // The scripts' clients give only application_name at startup; the server's default for it is empty.
    form: {
      steps: (msgs) => msgs.some((m) => /\b(RESET|DISCARD\s+ALL)\b/i.test(sqlOf(m) ?? '')),
      rewrite: (msgs) => {
        const out = msgs.filter((m) => !isParameterStatus(m, 'application_name'));
        const z = out.findIndex((m) => m.type === 'Z');
        out.splice(z < 0 ? out.length : z, 0, parameterStatusMsg('application_name', ''));
        return out;
      },
    },
  },
];

function isDataRow(m: BackendMsg, value: string): boolean {
  return m.type === 'D' && m.body.readInt16BE(0) === 1 && m.body.readInt32BE(2) === Buffer.byteLength(value) && m.body.toString('utf8', 6) === value;
}

function dataRow(value: string): BackendMsg {
  const v = Buffer.from(value);
  const b = Buffer.alloc(6 + v.length);
  b.writeInt16BE(1, 0);
  b.writeInt32BE(v.length, 2);
  v.copy(b, 6);
  return { type: 'D', body: b };
}

function isParameterStatus(m: BackendMsg, name: string): boolean {
  return m.type === 'S' && m.body.toString('utf8', 0, m.body.indexOf(0)) === name;
}

function parameterStatusMsg(name: string, value: string): BackendMsg {
  return { type: 'S', body: Buffer.from(`${name}\0${value}\0`) };
}

/** The difference that gives a case's answers another form in a mode, if any. */
export function formFor(name: string, mode: Mode): Difference | undefined {
  return DIFFERENCES.find((d) => d.modes.includes(mode) && d.form && d.cases?.includes(name));
}

/** The difference that makes a case incomparable in a mode, if any. */
export function skipFor(name: string, mode: Mode): Difference | undefined {
  return DIFFERENCES.find((d) => d.modes.includes(mode) && d.skipsCases?.includes(name));
}

export function differencesFor(mode: Mode): Difference[] {
  return DIFFERENCES.filter((d) => d.modes.includes(mode) && d.trigger !== null);
}

/**
 * Checks pgmux's answer to a step that triggers `d`: what came before the
 * error is PostgreSQL's, then the listed error, then (when the step ends
 * its batch) ReadyForQuery with the listed status, and no close. Returns a
 * problem, or null.
 */
export function checkDifference(d: Difference, msgs: Msg[], direct: BackendMsg[], pgmux: BackendMsg[]): string | null {
  const at = pgmux.findIndex((m) => m.type === 'E');
  const show = () => pgmux.map((m) => `    ${showBackend(m)}`).join('\n');
  if (at < 0) return `${d.id}: expected pgmux's ErrorResponse, got:\n${show()}`;
  for (let i = 0; i < at; i++) {
    if (direct[i]?.type !== pgmux[i].type || !direct[i].body.equals(pgmux[i].body)) {
      return `${d.id}: before its error, pgmux's answers differ from PostgreSQL's at message ${i + 1}:\n${show()}`;
    }
  }
  const fields = Object.fromEntries(parseErrorFields(pgmux[at].body));
  if (JSON.stringify(fields) !== JSON.stringify(d.error)) {
    return `${d.id}: expected ErrorResponse ${JSON.stringify(d.error)}, got ${JSON.stringify(fields)}`;
  }
  const endsBatch = msgs.some((m) => m.t === 'Sync' || m.t === 'Query');
  const z = pgmux.slice(at + 1).find((m) => m.type === 'Z');
  if (endsBatch && d.readyForQuery && (!z || z.body.toString('latin1') !== d.readyForQuery)) {
    return `${d.id}: expected ReadyForQuery ${d.readyForQuery} after the error, got:\n${show()}`;
  }
  if (pgmux.some((m) => m.type === '<closed>')) return `${d.id}: pgmux closed the connection after its error:\n${show()}`;
  return null;
}
