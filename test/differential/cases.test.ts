/**
 * The protocol surface, case by case: each runs against PostgreSQL and
 * through pgmux in every mode (modes.ts), and the answers must be the same.
 * Each case owns the tables it names (prefix c_) and empties them first.
 *
 * One case in one mode:
 *   npx vitest run test/differential/cases.test.ts -t "transaction portal: named"
 * PGMUX_DIFF_SHOW=1 prints both recordings, step by step.
 */
import { differentialSuite } from './modes.ts';
import { Bind, Close, CopyData, CopyDone, CopyFail, Describe, Execute, Flush, FunctionCall, Parse, Query, Sync, type Msg } from './protocol.ts';
import { check, leave, send, type Script, type Step } from './script.ts';

/** Built-in function OIDs, fixed in PostgreSQL's catalog. */
const OID = { lower: 870, int4pl: 177 };

/**
 * The case's own table, empty. Created once and truncated before each run
 * rather than recreated, so its OID (which RowDescription carries) is the
 * same in PostgreSQL's run and pgmux's.
 */
const table = (name: string, cols = 'id int, v text') => [`CREATE TABLE IF NOT EXISTS ${name} (${cols})`, `TRUNCATE ${name}`];

const cases: Script[] = [
  { name: 'simple query: one statement', steps: [send('a', [Query('SELECT 1 AS one, NULL::text AS nothing')])] },
  { name: 'simple query: several statements, the second fails', steps: [send('a', [Query('SELECT 1; SELECT 1/0; SELECT 3')]), send('a', [Query('SELECT 4')])] },
  { name: 'simple query: empty and blank', steps: [send('a', [Query('')]), send('a', [Query(' ; ')])] },
  {
    name: 'simple query: notices and a warning',
    steps: [send('a', [Query("DO $$ BEGIN RAISE NOTICE 'n1'; RAISE WARNING 'w1'; END $$")]), send('a', [Query('COMMIT')])],
  },
  {
    name: 'extended: named statement with a parameter, described, run twice',
    steps: [
      send('a', [Parse('c_s1', 'SELECT $1::int + 1 AS n', [23]), Describe('S', 'c_s1'), Sync]),
      send('a', [Bind('', 'c_s1', ['41']), Describe('P', ''), Execute('', 0), Bind('', 'c_s1', [null]), Execute('', 0), Sync]),
      send('a', [Close('S', 'c_s1'), Close('S', 'c_s1'), Close('P', 'nope'), Sync]),
      send('a', [Bind('', 'c_s1', ['1']), Execute('', 0), Sync]),
    ],
  },
  {
    name: 'extended: a Parse of SQL that does not parse, then Bind, Execute, Sync',
    steps: [send('a', [Parse('', 'SELEC 1'), Bind('', ''), Execute('', 0), Sync]), send('a', [Query('SELECT 2')])],
  },
  {
    name: 'leave after an extended-protocol error, before its Sync: the next client is served',
    steps: [send('a', [Bind('', 'c_nosuch'), Flush]), leave('a', 'destroy'), send('b', [Query('SELECT 1')])],
  },
  {
    name: 'a Query sent while PostgreSQL skips to the Sync gets no answer; the connection is given back after the client leaves',
    steps: [send('a', [Bind('', 'c_nosuch')]), send('a', [Query('SELECT 1')]), send('a', [Sync]), leave('a', 'terminate'), send('b', [Query('SELECT 2')])],
  },
  {
    name: 'split: a Parse error arrives before the rest of its batch is sent',
    // The pause is the step's own (not the 3 ms between chunks), so the error is back before the rest is sent, every time.
    steps: [send('a', [Parse('', 'SELEC 1')], { wait: { quiet: 100 } }), send('a', [Bind('', ''), Execute('', 0), Sync]), send('b', [Query('SELECT 1')])],
  },
  {
    name: 'COPY FROM STDIN in one write, then another client',
    setup: table('c_cother'),
    steps: [send('b', [Query('COPY c_cother FROM STDIN'), CopyData('7\tz\n'), CopyDone]), send('a', [Query('SELECT count(*) FROM c_cother')])],
  },
  {
    name: 'a second Parse of a used name, with SQL that does not parse: the syntax error comes first',
    steps: [send('a', [Parse('c_dup', 'SELECT 1'), Sync]), send('a', [Parse('c_dup', 'SELEC 1'), Sync]), send('a', [Bind('', 'c_dup'), Execute('', 0), Sync])],
  },
  {
    name: 'Close of a statement never prepared, without Sync or Flush: nothing is sent until one',
    steps: [send('a', [Close('S', 'c_never'), Parse('', 'SELECT 1')], { wait: { quiet: 300 } })],
  },
  {
    name: 'extended: a statement without results and an empty one',
    steps: [send('a', [Parse('', ''), Bind('', ''), Describe('P', ''), Execute('', 0), Parse('', 'SET LOCAL work_mem = 1000'), Bind('', ''), Describe('P', ''), Execute('', 0), Sync])],
  },
  {
    name: 'function call by OID, an unknown OID, and inside a transaction block',
    steps: [
      send('a', [FunctionCall(OID.lower, ['AbC'])]),
      send('a', [FunctionCall(OID.int4pl, ['40', '2'])]),
      send('a', [FunctionCall(1, ['x'])]),
      send('a', [Query('BEGIN')]),
      send('a', [FunctionCall(OID.int4pl, ['1', null])]),
      send('a', [FunctionCall(OID.int4pl, ['x', '1'])]),
      send('a', [Query('ROLLBACK')]),
    ],
  },
  {
    name: 'transaction block across Syncs: begin, write, fail, aborted, roll back',
    setup: table('c_txn'),
    steps: [
      send('a', [Parse('', 'BEGIN'), Bind('', ''), Execute('', 0), Sync]),
      send('a', [Parse('', 'INSERT INTO c_txn VALUES (1)'), Bind('', ''), Execute('', 0), Sync]),
      send('a', [Query('SELECT 1/0')]),
      send('a', [Parse('', 'SELECT 1'), Bind('', ''), Execute('', 0), Sync]),
      send('a', [Query('ROLLBACK')]),
      send('b', [Query('SELECT count(*) FROM c_txn')]),
    ],
  },
  {
    name: 'transaction block: savepoints and a commit seen by another client',
    setup: table('c_sp'),
    steps: [
      send('a', [Query("BEGIN; INSERT INTO c_sp VALUES (1); SAVEPOINT x; INSERT INTO c_sp VALUES (2)")]),
      send('a', [Query('SELECT 1/0')]),
      send('a', [Query('ROLLBACK TO SAVEPOINT x')]),
      send('a', [Parse('', 'INSERT INTO c_sp VALUES (3)'), Bind('', ''), Execute('', 0), Sync]),
      send('a', [Query('COMMIT')]),
      send('b', [Query('SELECT id FROM c_sp ORDER BY id')]),
    ],
  },
  {
    name: 'implicit transaction of a pipeline: a failure rolls back the whole batch',
    setup: table('c_impl'),
    steps: [
      send('a', [Parse('', 'INSERT INTO c_impl VALUES (1)'), Bind('', ''), Execute('', 0), Parse('', 'SELECT 1/0'), Bind('', ''), Execute('', 0), Sync]),
      send('a', [Query('INSERT INTO c_impl VALUES (2); SELECT 1/0')]),
      send('b', [Query('SELECT count(*) FROM c_impl')]),
    ],
  },
  {
    name: 'parameters: SET, SET LOCAL, RESET and application_name as each client sees them',
    steps: [
      send('a', [Query("SET statement_timeout = '5s'")]),
      send('b', [Query('SHOW statement_timeout')]),
      send('a', [Query("SET application_name = 'renamed'")]),
      send('b', [Query("SELECT current_setting('application_name')")]),
      send('a', [Query("BEGIN; SET LOCAL statement_timeout = '7s'; SHOW statement_timeout; COMMIT")]),
      send('a', [Query('SHOW statement_timeout; SHOW application_name')]),
      send('a', [Query('RESET statement_timeout; RESET application_name')]),
      send('a', [Query('SHOW statement_timeout')]),
    ],
  },
  {
    name: 'parameters: a SET between extended statements ends with its client',
    steps: [
      send('b', [Close('S', 'c_set'), Parse('c_set', 'RESET statement_timeout'), Bind('', 'c_set'), Execute('', 0), Sync]),
      send('b', [Query("SET statement_timeout = '2s'")]),
      send('b', [Close('S', 'c_set'), Parse('c_set', 'SELECT 1'), Bind('', 'c_set'), Execute('', 0), Sync]),
      send('a', [Query('SELECT 1')]),
    ],
  },
  {
    name: 'parameters: a SET in a Query after extended messages without their Sync ends with its client',
    steps: [
      send('b', [Parse('', 'ROLLBACK'), Bind('', ''), Execute('', 0)]),
      send('b', [Query("SET statement_timeout = '2s'")]),
      leave('b', 'destroy'),
      send('a', [Query('SHOW statement_timeout')]),
    ],
  },
  {
    name: 'parameters: a SET ends with its client',
    steps: [send('b', [Query("SET statement_timeout = '2s'")]), leave('b', 'terminate'), send('a', [Query('SHOW statement_timeout')])],
  },
  // ---- portals ----
  {
    name: 'portal: unnamed, suspended twice and run out in one batch',
    steps: [send('a', [Parse('', 'SELECT g FROM generate_series(1, 5) g'), Bind('', ''), Execute('', 2), Execute('', 2), Execute('', 0), Execute('', 1), Sync])],
  },
  {
    name: 'portal: named, resumed after each Flush',
    steps: [
      send('a', [Parse('', 'SELECT g FROM generate_series(1, 5) g'), Bind('c_p', ''), Execute('c_p', 2), Flush]),
      send('a', [Execute('c_p', 2), Flush]),
      send('a', [Execute('c_p', 0), Sync]),
    ],
  },
  {
    name: 'portal: lives across Syncs inside a transaction block, closed, then gone',
    steps: [
      send('a', [Query('BEGIN')]),
      send('a', [Parse('c_ps', 'SELECT g FROM generate_series(1, 5) g'), Bind('c_pc', 'c_ps'), Execute('c_pc', 2), Sync]),
      send('a', [Execute('c_pc', 2), Sync]),
      send('a', [Describe('P', 'c_pc'), Close('P', 'c_pc'), Sync]),
      send('a', [Execute('c_pc', 1), Sync]),
      send('a', [Query('ROLLBACK')]),
    ],
  },
  {
    name: 'portal: a suspended portal outside a transaction block ends at Sync',
    steps: [
      send('a', [Parse('', 'SELECT g FROM generate_series(1, 3) g'), Bind('c_pe', ''), Execute('c_pe', 1), Sync]),
      send('a', [Execute('c_pe', 1), Sync]),
    ],
  },
  // ---- COPY ----
  {
    name: 'COPY FROM STDIN, simple protocol, data in later writes',
    setup: table('c_cin'),
    steps: [
      send('a', [Query('COPY c_cin FROM STDIN')], { wait: { type: 'G' } }),
      send('a', [CopyData('1\ta\n'), CopyData('2\tb\n')], { wait: 'none' }),
      send('a', [CopyDone], { wait: { rfq: 1 } }),
      send('a', [Query('SELECT id, v FROM c_cin ORDER BY id')]),
    ],
  },
  {
    name: 'COPY FROM STDIN, simple protocol, all in one write and split at every byte',
    setup: table('c_cin1'),
    steps: [
      send('a', [Query('COPY c_cin1 FROM STDIN'), CopyData('1\ta\n'), CopyDone], { split: 'bytes' }),
      send('a', [Query('SELECT count(*) FROM c_cin1')]),
    ],
  },
  {
    name: 'COPY FROM STDIN failed by the client, and a bad row',
    setup: table('c_cfail'),
    steps: [
      send('a', [Query('COPY c_cfail FROM STDIN')], { wait: { type: 'G' } }),
      send('a', [CopyData('1\ta\n'), CopyFail('client gave up')], { wait: { rfq: 1 } }),
      send('a', [Query('COPY c_cfail FROM STDIN')], { wait: { type: 'G' } }),
      send('a', [CopyData('x\ta\n'), CopyDone], { wait: { rfq: 1 } }),
      send('a', [Query('SELECT count(*) FROM c_cfail')]),
    ],
  },
  {
    name: 'COPY TO STDOUT in both protocols',
    steps: [
      send('a', [Query('COPY (SELECT g, g * 2 FROM generate_series(1, 3) g) TO STDOUT')]),
      send('a', [Parse('', 'COPY (SELECT g FROM generate_series(1, 2) g) TO STDOUT (FORMAT csv)'), Bind('', ''), Describe('P', ''), Execute('', 0), Sync]),
    ],
  },
  {
    name: 'COPY FROM STDIN, extended protocol, failed with CopyFail',
    setup: table('c_xfail'),
    steps: [
      send('a', [Parse('', 'COPY c_xfail FROM STDIN'), Bind('', ''), Execute('', 0), Sync], { wait: { type: 'G' } }),
      send('a', [CopyData('1\ta\n'), CopyFail('no more'), Sync], { wait: { rfq: 1 } }),
      send('a', [Query('SELECT count(*) FROM c_xfail')]),
    ],
  },
  {
    name: 'COPY FROM STDIN in one write, then an error whose Sync comes in two pieces',
    setup: table('c_cerr'),
    steps: [
      send('a', [Query('COPY c_cerr FROM STDIN'), CopyData('7\tz\n'), CopyDone]),
      send('a', [Bind('', 'c_nosuch'), Execute('', 0), Sync], { split: [33] }),
      send('a', [Query('SELECT 1')]),
    ],
  },
  {
    name: 'an error whose Sync comes in two pieces',
    steps: [send('a', [Bind('', 'c_nosuch'), Execute('', 0), Sync], { split: [33] }), send('a', [Query('SELECT 1')])],
  },
  {
    name: 'COPY FROM STDIN in one write, then an error',
    setup: table('c_cerr2'),
    steps: [send('a', [Query('COPY c_cerr2 FROM STDIN'), CopyData('7\tz\n'), CopyDone]), send('a', [Bind('', 'c_nosuch'), Execute('', 0), Sync]), send('a', [Query('SELECT 1')])],
  },
  {
    name: 'COPY FROM STDIN inside a transaction block, rolled back',
    setup: table('c_ctx'),
    steps: [
      send('a', [Query('BEGIN')]),
      send('a', [Query('COPY c_ctx FROM STDIN'), CopyData('1\ta\n'), CopyDone]),
      send('a', [Query('ROLLBACK')]),
      send('b', [Query('SELECT count(*) FROM c_ctx')]),
    ],
  },
  // ---- large messages and splits ----
  {
    name: 'large: a 3 MB query text and a 5 MB row',
    steps: [send('a', [Query(`SELECT length('${'y'.repeat(3_000_000)}')`)]), send('a', [Query("SELECT md5(repeat('x', 5000000)), repeat('x', 5000000)")])],
  },
  {
    name: 'split at every byte: a Query, then a pipeline',
    steps: [
      send('a', [Query('SELECT 1')], { split: 'bytes' }),
      send('a', [Parse('c_sb', 'SELECT $1::text'), Bind('', 'c_sb', ['ab']), Execute('', 0), Sync], { split: 'bytes' }),
    ],
  },
  {
    name: 'split: each header between its type byte and length, and bodies in halves',
    steps: [send('a', [Parse('', 'SELECT 12345'), Bind('', ''), Execute('', 0), Sync, Query('SELECT 2')], { split: [1, 3, 5, 10, 20, 21, 24, 30, 34, 39, 41, 44, 48] })],
  },
];

// ---- pipelines with an error at each position ----

type Fault = 'parse' | 'bind' | 'execute';
/** Statement i of a three-statement pipeline, failing in the way asked for. */
function stmt(i: number, fault: Fault | null): Msg[] {
  const sql = fault === 'parse' ? 'SELEC 1' : fault === 'execute' ? 'SELECT 1/0' : `SELECT $1::int + ${i}`;
  const params = fault === 'execute' || fault === 'parse' ? [] : [fault === 'bind' ? 'not a number' : '10'];
  return [Parse(`c_pl${i}`, sql), Bind('', `c_pl${i}`, params), Describe('P', ''), Execute('', 0)];
}
/** Which of the pipeline's named statements exist afterwards. */
const probe = (): Step => send('a', [0, 1, 2].flatMap((i) => [Describe('S', `c_pl${i}`), Sync]));
for (const fault of ['parse', 'bind', 'execute'] as const) {
  for (const at of [0, 1, 2]) {
    const msgs = [0, 1, 2].flatMap((i) => stmt(i, i === at ? fault : null));
    cases.push({ name: `pipeline, one Sync: ${fault} error in statement ${at + 1} of 3`, steps: [send('a', [...msgs, Sync]), probe(), send('a', [Query('SELECT 9')])] });
  }
}
for (const at of [0, 1, 2]) {
  const msgs = [0, 1, 2].flatMap((i) => [...stmt(i, i === at ? 'execute' : null), Sync]);
  cases.push({ name: `pipeline, a Sync after each: execute error in statement ${at + 1} of 3`, steps: [send('a', msgs), probe()] });
}

// ---- Sync and Flush in every place ----

const batch = [Parse('', 'SELECT $1::int AS n'), Bind('', '', ['7']), Describe('P', ''), Execute('', 0)];
for (const sep of [Sync, Flush]) {
  for (let at = 0; at <= batch.length; at++) {
    cases.push({
      name: `${sep.t} after message ${at} of Parse, Bind, Describe, Execute`,
      steps: [send('a', [...batch.slice(0, at), sep]), send('a', [...batch.slice(at), Sync]), send('a', [Sync, Sync])],
    });
  }
}

// ---- a client leaving at every point, then another client reads ----

const write = [Query('BEGIN'), Parse('', 'INSERT INTO c_leave VALUES (1)'), Bind('', ''), Execute('', 0), Sync, Query('COMMIT')];
const hows = ['destroy', 'end', 'terminate'] as const;
for (let at = 1; at <= write.length; at++) {
  const how = hows[at % 3];
  cases.push({
    name: `leave (${how}) after message ${at} of BEGIN, Parse, Bind, Execute, Sync, COMMIT`,
    setup: table('c_leave'),
    steps: [...write.slice(0, at).map((m) => send('a', [m])), leave('a', how), send('b', [Query('SELECT count(*) FROM c_leave')]), check('SELECT count(*)::int AS n FROM c_leave', 200)],
  });
}

differentialSuite('cases', cases);
