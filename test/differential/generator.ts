/**
 * Random sessions of two interleaved clients, from a small grammar of
 * frontend messages: statement and portal names from a tiny set so they
 * collide, a tiny set of SQL, Syncs, Flushes, errors and leaves anywhere,
 * writes split anywhere.
 *
 * Shapes known to differ today (each narrowed into a KNOWN_FAILING case)
 * are kept out with one named switch each in GENERATOR_EXCLUDES, so the
 * generated test stays green and finds new differences only.
 */
import fc from 'fast-check';
import type { Mode } from './modes.ts';
import { Bind, Close, CopyData, CopyDone, Describe, encode, Execute, Flush, FunctionCall, Parse, Query, Sync, type Msg } from './protocol.ts';
import { check, leave, send, type Script, type Step } from './script.ts';

/**
 * Message shapes left out of the grammar because they hit a difference
 * already narrowed into a hand-written case listed in KNOWN_FAILING.
 * Setting one to false puts the shape back (to check a fix).
 */
export const GENERATOR_EXCLUDES: Record<string, { modes: Mode[]; knownFailing: string[] }> = {
  /**
   * Extended-protocol messages left without their Sync at the end of an
   * action (a Flush, or nothing), in the replica topology: pgmux holds such
   * a run until its Sync to route it whole, so what PostgreSQL answers at
   * once comes later (the listed difference REPLICA_WHOLE_RUN). Excluded
   * there by ending every action that sends extended messages with a Sync.
   */
  unsyncedTail: {
    modes: ['replica'],
    knownFailing: [
      'item 18: an error before any Sync or Flush is sent at once',
      'a Query sent while PostgreSQL skips to the Sync gets no answer; the connection is given back after the client leaves',
      'parameters: a SET in a Query after extended messages without their Sync ends with its client',
    ],
  },
  /**
   * A batch written in pieces, so that an error comes back before pgmux has
   * the batch's Sync: in the replica topology the run is held until its
   * Sync (REPLICA_WHOLE_RUN). Excluded there by splitting such actions
   * only inside their last message.
   */
  splitBeforeSync: {
    modes: ['replica'],
    knownFailing: ['split: a Parse error arrives before the rest of its batch is sent'],
  },
};

const excluded = (name: string, mode: Mode) => GENERATOR_EXCLUDES[name]?.modes.includes(mode) ?? false;

const NAMES = ['', 's1', 's2'];
const PORTALS = ['', 'p1'];

/** The SQL the clients choose from; T is the run's own table. */
function sqlSet(table: string, mode: Mode): string[] {
  const sql = [
    'SELECT 1',
    `SELECT count(*) FROM ${table}`,
    'SELECT g FROM generate_series(1, 3) g',
    `INSERT INTO ${table} VALUES (1, 'x')`,
    'SELECT 1/0',
    'SELEC 1',
    'COMMIT',
    'ROLLBACK',
    "SET statement_timeout = '2s'",
    'RESET statement_timeout',
    'SHOW statement_timeout',
    "SELECT set_config('statement_timeout', '3s', false)",
  ];
  // Statement pooling refuses transaction blocks by design (STATEMENT_MODE_BEGIN).
  if (mode !== 'statement') sql.push('BEGIN');
  return sql;
}

type Action = { client: string; msgs: Msg[]; splits: number[] } | { client: string; leave: 'end' | 'destroy' | 'terminate' };

function actionArb(table: string, mode: Mode): fc.Arbitrary<Action> {
  const sql = fc.constantFrom(...sqlSet(table, mode));
  const name = fc.constantFrom(...NAMES);
  const portal = fc.constantFrom(...PORTALS);
  const rows = fc.constantFrom(0, 0, 1, 2);
  const kind = fc.constantFrom('S', 'P');
  const end = fc.constantFrom<Msg[]>([Sync], [Sync], [Sync], [Flush], []);
  const one: fc.Arbitrary<Msg> = fc.oneof(
    fc.tuple(name, sql).map(([n, s]) => Parse(n, s)),
    fc.tuple(portal, name).map(([p, n]) => Bind(p, n)),
    fc.tuple(kind, name, portal).map(([k, n, p]) => Describe(k, k === 'S' ? n : p)),
    fc.tuple(portal, rows).map(([p, r]) => Execute(p, r)),
    fc.tuple(kind, name, portal).map(([k, n, p]) => Close(k, k === 'S' ? n : p)),
    fc.constant(Sync),
    fc.constant(Flush),
  );
  const msgs: fc.Arbitrary<Msg[]> = fc.oneof(
    { weight: 3, arbitrary: sql.map((s) => [Query(s)]) },
    {
      weight: 4,
      arbitrary: fc
        .tuple(name, sql, portal, fc.boolean(), rows, end)
        .map(([n, s, p, d, r, e]) => [Parse(n, s), Bind(p, n), ...(d ? [Describe('P', p)] : []), Execute(p, r), ...e]),
    },
    { weight: 2, arbitrary: fc.tuple(portal, name, rows).map(([p, n, r]) => [Bind(p, n), Execute(p, r), Sync]) },
    { weight: 2, arbitrary: fc.tuple(fc.array(one, { minLength: 1, maxLength: 4 }), end).map(([m, e]) => [...m, ...e]) },
    { weight: 1, arbitrary: fc.tuple(portal, rows, end).map(([p, r, e]) => [Execute(p, r), ...e]) },
    { weight: 1, arbitrary: fc.constant<Msg[]>([Query(`COPY ${table} FROM STDIN`), CopyData('7\tz\n'), CopyDone]) },
    { weight: 1, arbitrary: fc.constant<Msg[]>([Query(`COPY ${table} TO STDOUT`)]) },
    // lower(text), by its OID, fixed in PostgreSQL's catalog.
    { weight: 1, arbitrary: fc.constant<Msg[]>([FunctionCall(870, ['AbC'])]) },
  );
  const client = fc.constantFrom('a', 'b');
  return fc.oneof(
    { weight: 12, arbitrary: fc.record({ client, msgs, splits: fc.array(fc.nat(400), { maxLength: 3 }) }) },
    { weight: 1, arbitrary: fc.record({ client, leave: fc.constantFrom('end' as const, 'destroy' as const, 'terminate' as const) }) },
  );
}

/** Split offsets within the step's bytes (0 and the end mean no split), all inside the last message if `lastOnly`. */
function splitsFor(msgs: Msg[], raw: number[], lastOnly: boolean): number[] | undefined {
  const len = msgs.reduce((n, m) => n + encode(m).length, 0);
  // Inside the last message: not at its start, which would still part it from the rest.
  const from = lastOnly ? len - encode(msgs[msgs.length - 1]).length + 1 : 0;
  const at = [...new Set(raw.map((r) => from + (r % (len - from))).filter((r) => r > 0 && r < len))].sort((x, y) => x - y);
  return at.length ? at : undefined;
}

function toStep(a: Action, mode: Mode): Step {
  if ('leave' in a) return leave(a.client, a.leave);
  const msgs = a.msgs;
  const split = splitsFor(msgs, a.splits, excluded('splitBeforeSync', mode) && msgs.some((m) => EXTENDED.has(m.t)));
  return send(a.client, msgs, split ? { split } : {});
}

const EXTENDED = new Set(['Parse', 'Bind', 'Describe', 'Execute', 'Close', 'Flush']);

/** The action, ended with a Sync if extended messages follow its last Sync. */
function synced(a: Action): Action {
  if ('leave' in a) return a;
  const lastSync = a.msgs.map((m) => m.t).lastIndexOf('Sync');
  return a.msgs.slice(lastSync + 1).some((m) => EXTENDED.has(m.t)) ? { ...a, msgs: [...a.msgs, Sync] } : a;
}

/** Generated sessions for one mode, as scripts; every one ends with a count of the table from a side connection. */
export function scriptArb(mode: Mode): fc.Arbitrary<Script> {
  const table = `gen_${mode}`;
  // Only with a pool of one can a client wait on another (POOL_WAIT).
  const skipWhileHeld = mode === 'transaction' || mode === 'statement' || mode === 'replica';
  return fc.array(actionArb(table, mode), { minLength: 1, maxLength: 12 }).map((actions) => ({
    name: `generated (${mode})`,
    setup: [`CREATE TABLE IF NOT EXISTS ${table} (id int, v text)`, `TRUNCATE ${table}`],
    ...(skipWhileHeld ? { skipWhileHeld } : {}),
    steps: [...(excluded('unsyncedTail', mode) ? actions.map(synced) : actions).map((a) => toStep(a, mode)), check(`SELECT count(*)::int AS n FROM ${table}`, 50)],
  }));
}
