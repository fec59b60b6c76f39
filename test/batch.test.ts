import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { classify, loadClassifier } from '../src/sql/classify.ts';
import { inspect, newBatch } from '../src/session/batch.ts';
import { query } from '../src/protocol/messages.ts';

/** What routing reads from a batch of one Query. */
function verdict(sql: string) {
  const b = newBatch();
  b.msgs.push({ type: 0x51, msg: query(sql) });
  const i = inspect(b, { statements: new Map(), unnamedSql: null, portals: new Map() }, true);
  return { readOnly: i.readOnly, functions: i.functions, transaction: i.transaction, sets: i.sets, sessionState: i.sessionState, clears: i.clears, resetAll: i.resetAll };
}

function parsed(sql: string) {
  const c = classify(sql);
  return { readOnly: c.readOnly, functions: c.functions, transaction: c.transaction, sets: c.sets, sessionState: c.sessionState, clears: c.clears, resetAll: c.resetAll };
}

describe('batch classification for routing', () => {
  beforeAll(() => loadClassifier());

  it('agrees with the parser on reads it answers without it, and leaves the rest to it', () => {
    const fixed = [
      'SELECT abalance FROM pgbench_accounts WHERE aid = 12345;',
      'select 1',
      'SELECT * FROM t WHERE a = 1 FOR UPDATE',
      'SELECT * INTO new_t FROM t',
      'SELECT 1; DELETE FROM t',
      "SELECT 'a' AS x FROM t FOR SHARE",
      'SELECT * FROM t -- FOR UPDATE',
      'SELECT nextval(\'s\')',
      'UPDATE t SET a = 1',
      'SELECT a FROM t /* ; DROP TABLE t */',
    ];
    const cols = ['a', 'aid', 'abalance', '*'];
    const tails = ['', ';', ' ;  ', ' FOR UPDATE', ' FOR NO KEY UPDATE', ' INTO x', '; SELECT 2', '; UPDATE t SET a = 1', ' -- c', ' LIMIT 1'];
    const gen = fc.tuple(fc.constantFrom(...cols), fc.constantFrom('t', 'pgbench_accounts'), fc.integer({ min: 0, max: 1e6 }), fc.constantFrom(...tails), fc.constantFrom('SELECT', 'select', '  SeLeCt'));
    const samples = fc.sample(gen, { numRuns: 300, seed: 42 }).map(([c, t, n, tail, verb]) => `${verb} ${c} FROM ${t} WHERE aid = ${n}${tail}`);
    for (const sql of [...fixed, ...samples]) expect(verdict(sql), sql).toEqual(parsed(sql));
  });
});
