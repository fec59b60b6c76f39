/**
 * One case (or a few) per known problem, named after its item number:
 * each must behave through pgmux as it does against PostgreSQL. Each case
 * owns the tables it names (prefix item) and recreates them first.
 */
import { differentialSuite } from './modes.ts';
import { Bind, Close, CopyData, CopyDone, Describe, Execute, Flush, FunctionCall, Parse, Query, Raw, Sync, Terminate } from './protocol.ts';
import { check, connect, leave, send, wait, type Script } from './script.ts';

/** nextval(regclass): a built-in function's OID, fixed in PostgreSQL's catalog. */
const NEXTVAL_OID = 1574;

/** The case's own table, empty; its OID stays the same between the two runs (RowDescription carries it). */
const table = (name: string, cols = 'id int, v text') => [`CREATE TABLE IF NOT EXISTS ${name} (${cols})`, `TRUNCATE ${name}`];

/** A Query message whose string lacks its terminating NUL. */
const unterminatedQuery = () => {
  const sql = Buffer.from('SELECT 16');
  const head = Buffer.from([0x51, 0, 0, 0, 0]);
  head.writeInt32BE(4 + sql.length, 1);
  return Raw(Buffer.concat([head, sql]), 'Query without its terminating NUL');
};

const insert1 = [Parse('', 'INSERT INTO item1 VALUES (1)'), Bind('', ''), Execute('', 0)];

export const cases: Script[] = [
  {
    name: 'item 1: INSERT then Flush, the client leaves without Sync: rolled back',
    setup: table('item1'),
    steps: [send('a', [...insert1, Flush]), leave('a', 'destroy'), check('SELECT count(*)::int AS n FROM item1', 300)],
  },
  {
    name: 'item 1: INSERT then half a Sync, the client leaves: rolled back',
    setup: table('item1'),
    steps: [send('a', [...insert1, Raw(Buffer.from([0x53, 0, 0]), 'the first 3 bytes of a Sync')]), leave('a', 'end'), check('SELECT count(*)::int AS n FROM item1', 300)],
  },
  {
    name: 'item 2: the unnamed statement survives Sync, whoever else parses one',
    steps: [
      send('a', [Parse('', 'SELECT 1 AS a'), Sync]),
      send('b', [Parse('', 'SELECT 2 AS b'), Sync]),
      send('a', [Bind('', ''), Describe('P', ''), Execute('', 0), Sync]),
      send('b', [Bind('', ''), Execute('', 0), Sync]),
    ],
  },
  {
    name: "item 2: the unnamed statement survives Sync after another client's named statement",
    steps: [
      send('a', [Parse('', 'SELECT 1'), Bind('', ''), Execute('', 0), Sync]),
      send('b', [Close('S', 'item2'), Parse('item2', 'SELECT 2'), Bind('', 'item2'), Execute('', 0), Sync]),
      send('a', [Bind('', ''), Execute('', 0), Sync]),
    ],
  },
  {
    name: "item 2: the unnamed statement survives Sync after another client's error",
    steps: [
      send('b', [Parse('', 'SELECT 1'), Bind('', ''), Execute('', 0), Flush, Sync]),
      send('a', [Execute('', 0), Sync]),
      send('b', [Bind('', ''), Execute('', 0), Sync]),
    ],
  },
  {
    name: "item 2: another client's unnamed statement is not there for a client that parsed none",
    steps: [
      send('a', [Parse('', 'SELECT 1'), Sync]),
      send('b', [Bind('', ''), Execute('', 0), Sync]),
      send('b', [Describe('S', ''), Parse('', 'SELECT 2'), Close('S', ''), Sync]),
      send('b', [Bind('', ''), Execute('', 0), Sync]),
    ],
  },
  {
    name: 'item 3: duplicate statement name inside a transaction block aborts it',
    steps: [
      send('a', [Query('BEGIN')]),
      send('a', [Parse('item3', 'SELECT 1'), Sync]),
      send('a', [Parse('item3', 'SELECT 2'), Sync]),
      send('a', [Query('COMMIT')]),
      send('a', [Bind('', 'item3'), Execute('', 0), Sync]),
    ],
  },
  {
    name: 'item 3: in a failed transaction block, a duplicate statement name gets the aborted-transaction error',
    steps: [
      send('a', [Parse('item3f', 'SELECT 1'), Sync]),
      send('a', [Query('BEGIN')]),
      send('a', [Query('SELECT 1/0')]),
      send('a', [Parse('item3f', 'SELECT 1'), Bind('', 'item3f'), Execute('', 0), Sync]),
      send('a', [Query('ROLLBACK')]),
      send('a', [Bind('', 'item3f'), Execute('', 0), Sync]),
    ],
  },
  {
    name: 'item 3: Bind of an unknown statement inside a transaction block aborts it',
    steps: [send('a', [Query('BEGIN')]), send('a', [Bind('', 'item3_nosuch'), Execute('', 0), Sync]), send('a', [Query('COMMIT')])],
  },
  {
    name: 'item 4: set_config of statement_timeout stays with its client',
    steps: [
      send('a', [Query("SELECT set_config('statement_timeout', '1234', false)")]),
      send('b', [Query('SHOW statement_timeout')]),
      send('a', [Query('SHOW statement_timeout')]),
      send('a', [Parse('', "SELECT current_setting('statement_timeout')"), Bind('', ''), Execute('', 0), Sync]),
    ],
  },
  {
    name: 'item 4: set_config parsed and bound but never executed changes nothing',
    steps: [
      send('a', [Parse('', "SELECT set_config('statement_timeout', '3s', false)"), Bind('', ''), Sync]),
      send('b', [Query('SELECT 4')]),
      send('a', [Query('SHOW statement_timeout')]),
    ],
  },
  {
    name: 'item 5: a statement parsed after an error in the same batch was skipped',
    steps: [send('a', [Parse('', 'SELEC 1'), Parse('item5', 'SELECT 1'), Sync]), send('a', [Bind('', 'item5'), Execute('', 0), Sync])],
  },
  {
    name: 'item 6: Parse then Flush answers at once, named and unnamed',
    steps: [
      send('a', [Parse('item6', 'SELECT 1'), Flush]),
      send('a', [Sync]),
      send('a', [Parse('', 'SELECT 2'), Flush]),
      send('a', [Sync]),
      send('a', [Bind('', 'item6'), Execute('', 0), Flush]),
      send('a', [Sync]),
    ],
  },
  {
    name: 'item 7: the same statement name parsed twice',
    steps: [send('a', [Parse('d1', 'SELECT 1'), Sync]), send('a', [Parse('d1', 'SELECT 1'), Sync]), send('a', [Query('SELECT 7')])],
  },
  {
    name: 'item 8: extended COPY FROM STDIN with Sync right after Execute, as libpq sends it',
    setup: table('item8'),
    steps: [
      send('a', [Parse('', 'COPY item8 FROM STDIN'), Bind('', ''), Execute('', 0), Sync], { wait: { type: 'G' } }),
      send('a', [CopyData('1\tx\n'), CopyDone, Sync], { wait: { rfq: 1 } }),
      send('a', [Query('SELECT id, v FROM item8')]),
    ],
  },
  {
    name: 'item 8: extended COPY FROM STDIN, then a Query right after CopyDone',
    setup: table('item8'),
    steps: [
      send('a', [Parse('', 'COPY item8 FROM STDIN'), Bind('', ''), Execute('', 0), Sync], { wait: { type: 'G' } }),
      // PostgreSQL holds the COPY's CommandComplete back until something flushes it: the Query.
      send('a', [CopyData('2\ty\n'), CopyDone], { wait: { quiet: 100 } }),
      send('a', [Query('SELECT id, v FROM item8')]),
      send('a', [Query('SELECT 8')]),
    ],
  },
  {
    name: 'item 9: Bind with a 2 MB and an 8 MB text parameter',
    steps: [
      send('a', [Parse('', 'SELECT length($1), md5($1)', [25]), Bind('', '', [{ repeat: 'x', times: 2 * 1024 * 1024 }]), Execute('', 0), Sync]),
      send('a', [Parse('item9', 'SELECT length($1), md5($1)', [25]), Bind('', 'item9', [{ repeat: 'y', times: 8 * 1024 * 1024 }]), Execute('', 0), Sync]),
      send('a', [Query('SELECT 9')]),
    ],
  },
  {
    name: 'item 10: a Query whose header arrives in three pieces',
    steps: [
      send('a', [Query('SELECT 10')], { split: [1, 3] }),
      send('a', [Query('SELECT 11')], { split: [1, 3, 5] }),
      send('a', [Parse('', 'SELECT 12'), Bind('', ''), Execute('', 0), Sync], { split: [1, 3, 18, 19, 21] }),
    ],
  },
  {
    name: 'item 11: FunctionCall of nextval by OID goes to the primary',
    setup: ['DROP SEQUENCE IF EXISTS item11_seq', 'CREATE SEQUENCE item11_seq'],
    steps: [send('a', [FunctionCall(NEXTVAL_OID, ['item11_seq'])]), send('a', [FunctionCall(NEXTVAL_OID, ['item11_seq'])]), check('SELECT last_value::int FROM item11_seq')],
  },
  {
    name: 'item 12: BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY, SELECT, COMMIT',
    steps: [send('a', [Query('BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY')]), send('a', [Query('SELECT 1')]), send('a', [Query('COMMIT')])],
  },
  {
    name: 'item 13: recovery state as on the primary',
    steps: [
      send('a', [Query('SELECT pg_is_in_recovery()')]),
      send('a', [Parse('', 'SELECT pg_is_in_recovery()'), Bind('', ''), Execute('', 0), Sync]),
      send('a', [Query('SELECT pg_is_in_recovery(), 1')]),
    ],
  },
  {
    name: 'item 13: transaction_read_only where a read is served',
    steps: [send('a', [Query("SELECT current_setting('transaction_read_only')")]), send('a', [Query('SHOW transaction_read_only')])],
  },
  {
    name: "item 14: pgmux's own errors for unknown statements are ERRORs and the connection goes on",
    steps: [
      send('a', [Bind('', 'item14_nosuch'), Execute('', 0), Sync]),
      send('a', [Query('SELECT 14')]),
      send('a', [Describe('S', 'item14_nosuch'), Sync]),
      send('a', [Close('S', 'item14_nosuch'), Sync]),
      send('a', [Parse('item14', 'SELECT 1'), Parse('item14', 'SELECT 1'), Sync]),
      send('a', [Query('SELECT 15')]),
    ],
  },
  {
    name: "item 15: error texts name the client's statements",
    steps: [
      send('a', [Parse('item15', 'SELECT $1::int'), Sync]),
      send('a', [Bind('', 'item15'), Execute('', 0), Sync]),
      send('a', [Bind('', 'item15', ['1', '2']), Execute('', 0), Sync]),
      send('a', [Parse('item15', 'SELECT 2'), Sync]),
      send('a', [Close('S', 'item15'), Bind('', 'item15', ['1']), Sync]),
    ],
  },
  {
    name: 'item 16: protocol 3.5 with a _pq_ option: NegotiateProtocolVersion',
    steps: [connect('a', { startup: { minor: 5, params: [['_pq_.x', '1']] } }), send('a', [Query('SELECT 16')])],
  },
  {
    name: 'item 16: protocol 4.0 is refused',
    steps: [connect('a', { startup: { major: 4, minor: 0 } }), wait('a', { closed: true })],
  },
  {
    name: 'item 16: a Query without its terminator',
    steps: [send('a', [unterminatedQuery()], { wait: { quiet: 200 } }), send('a', [Query('SELECT 2')], { wait: { quiet: 200 } })],
  },
  {
    name: "item 16: a Describe of kind 'X'",
    steps: [send('a', [Describe('X', ''), Sync], { wait: { quiet: 200 } }), send('a', [Query('SELECT 3')], { wait: { quiet: 200 } })],
  },
  {
    name: "item 17: another client's DEALLOCATE ALL leaves a client's statements working",
    steps: [
      send('b', [Parse('item17b', 'SELECT 2'), Sync]),
      send('a', [Parse('item17a', 'SELECT 1'), Sync]),
      send('a', [Query('DEALLOCATE ALL')]),
      send('b', [Bind('', 'item17b'), Execute('', 0), Sync]),
      send('b', [Parse('item17c', 'SELECT 3'), Bind('', 'item17c'), Execute('', 0), Sync]),
      send('a', [Bind('', 'item17a'), Execute('', 0), Sync]),
    ],
  },
  {
    name: "item 17: a client's own DEALLOCATE name and DISCARD ALL end its statements",
    steps: [
      send('a', [Parse('item17d', 'SELECT 1'), Parse('item17e', 'SELECT 2'), Sync]),
      send('a', [Query('DEALLOCATE item17d')]),
      send('a', [Bind('', 'item17d'), Execute('', 0), Sync]),
      send('a', [Bind('', 'item17e'), Execute('', 0), Sync]),
      send('a', [Query('DISCARD ALL')]),
      send('a', [Bind('', 'item17e'), Execute('', 0), Sync]),
      send('a', [Parse('item17e', 'SELECT 3'), Bind('', 'item17e'), Execute('', 0), Sync]),
    ],
  },
  {
    name: 'item 18: an error before any Sync or Flush is sent at once',
    steps: [
      send('a', [Parse('', 'SELEC 18')], { wait: { quiet: 300 } }),
      send('a', [Sync]),
      send('a', [Parse('item18', 'SELECT 1'), Sync]),
      send('a', [Bind('', 'item18', ['x'])], { wait: { quiet: 300 } }),
      send('a', [Execute('', 0), Sync]),
    ],
  },
  {
    name: 'item 19: a backend terminated while its session-mode client is idle sends one FATAL 57P01, then the connection closes',
    steps: [
      connect('a', { appName: 'item19' }),
      send('a', [Query('SELECT 19')]),
      check("SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = 'item19' AND usename = 'app'"),
      wait('a', { closed: true }),
    ],
  },
  {
    name: 'item 20: Terminate as the very first bytes',
    steps: [connect('a', { startup: 'none' }), send('a', [Terminate], { wait: { closed: true } })],
  },
  {
    name: 'item 21: a new client preparing the same text after the table changed type',
    setup: ['DROP TABLE IF EXISTS item21', 'CREATE TABLE item21 (v int)', 'INSERT INTO item21 VALUES (1)'],
    ignoreTableOids: true,
    steps: [
      send('a', [Parse('item21', 'SELECT * FROM item21'), Bind('', 'item21'), Execute('', 0), Sync]),
      send('a', [Query("DROP TABLE item21; CREATE TABLE item21 (v text); INSERT INTO item21 VALUES ('one')")]),
      leave('a', 'terminate'),
      send('b', [Parse('item21', 'SELECT * FROM item21'), Bind('', 'item21'), Describe('P', ''), Execute('', 0), Sync]),
      send('b', [Parse('', 'SELECT * FROM item21'), Bind('', ''), Execute('', 0), Sync]),
    ],
  },
];

differentialSuite('items', cases);
