import { describe, expect, it } from 'vitest';
import type { Cell, Column, ResultSet } from '../src/admin/console.ts';
import { mergeShow } from '../src/admin/merge.ts';

const POOL_COLUMNS = [
  'database', 'user', 'cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active', 'sv_active_cancel', 'sv_being_canceled',
  'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us', 'pool_mode', 'load_balance_hosts', 'endpoint', 'node', 'paused',
];
const rs = (names: string[], rows: Cell[][]): ResultSet => ({ columns: names.map((n): Column => [n, 'int4']), rows });
const at = (r: ResultSet, row: number, name: string) => r.rows[row][r.columns.findIndex(([n]) => n === name)];

describe('one SHOW for the whole pgmux from each worker\'s rows', () => {
  it('POOLS: counts summed per pool, maxwait the longest wait (seconds and microseconds together), paused if any', () => {
    const pool = (clActive: number, waiting: number, wait: [number, number], paused: number): Cell[] =>
      ['appdb', 'app', clActive, waiting, 0, 0, 1, 0, 0, 2, 0, 0, 0, wait[0], wait[1], 'transaction', null, 'main', 0, paused];
    const merged = mergeShow('POOLS', [
      { worker: 0, answer: rs(POOL_COLUMNS, [pool(3, 1, [1, 900_000], 0)]) },
      { worker: 1, answer: rs(POOL_COLUMNS, [pool(2, 4, [2, 100], 1), ['other', 'app', 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 'session', null, 'main', 0, 0]]) },
    ]);
    expect(merged.rows).toHaveLength(2);
    expect(merged.rows[0]).toEqual(['appdb', 'app', 5, 5, 0, 0, 2, 0, 0, 4, 0, 0, 0, 2, 100, 'transaction', null, 'main', 0, 1]);
    expect(merged.rows[1][0]).toBe('other');
  });

  it('STATS_AVERAGES: rates summed, times weighted by each worker\'s count of what they are per', () => {
    const names = ['database', 'server_assignment_count', 'xact_count', 'query_count', 'bytes_received', 'bytes_sent', 'xact_time', 'query_time', 'wait_time'];
    const merged = mergeShow('STATS_AVERAGES', [
      { worker: 0, answer: rs(names, [['appdb', 10, 10, 20, 100, 200, 1000, 400, 50]]) },
      { worker: 1, answer: rs(names, [['appdb', 30, 30, 20, 100, 200, 2000, 600, 0], ['b', 1, 1, 1, 1, 1, 1, 1, 1]]) },
    ]);
    // xact_time: (10×1000 + 30×2000) / 40; query_time: (20×400 + 20×600) / 40; wait_time: (10×50 + 30×0) / 40.
    expect(merged.rows).toEqual([['appdb', 40, 40, 40, 200, 400, 1750, 500, 13], ['b', 1, 1, 1, 1, 1, 1, 1, 1]]);
  });

  it('STATS: totals summed, averages recomputed', () => {
    const q = ['server_assignment_count', 'xact_count', 'query_count', 'received', 'sent', 'xact_time', 'query_time', 'wait_time'];
    const names = ['database', ...q.map((n) => `total_${n}`), ...q.map((n) => `avg_${n}`)];
    const row = (xacts: number, avgXacts: number, avgXactTime: number): Cell[] => ['appdb', 1, xacts, 1, 1, 1, 1, 1, 1, 0, avgXacts, 0, 0, 0, avgXactTime, 0, 0];
    const merged = mergeShow('STATS', [
      { worker: 0, answer: rs(names, [row(5, 1, 100)]) },
      { worker: 1, answer: rs(names, [row(7, 3, 300)]) },
    ]);
    expect(at(merged, 0, 'total_xact_count')).toBe(12);
    expect(at(merged, 0, 'avg_xact_count')).toBe(4);
    expect(at(merged, 0, 'avg_xact_time')).toBe(250);
  });

  it('CLIENTS: every worker\'s rows, the worker last', () => {
    const merged = mergeShow('CLIENTS', [
      { worker: 1, answer: rs(['type', 'id'], [['C', 3]]) },
      { worker: 0, answer: rs(['type', 'id'], [['C', 2], ['C', 4]]) },
    ]);
    expect(merged.columns.map(([n]) => n)).toEqual(['type', 'id', 'worker']);
    expect(merged.rows).toEqual([['C', 2, 0], ['C', 4, 0], ['C', 3, 1]]);
  });

  it('LISTS: counts summed, configured ones not, pools the distinct pools; STATE paused when any worker is', () => {
    const list = (clients: number): Cell[][] => [['databases', 2], ['users', 1], ['pools', 1], ['used_clients', clients], ['used_servers', 1], ['free_servers', 1]];
    const pools = rs(['database'], [['a'], ['b']]);
    const merged = mergeShow('LISTS', [{ worker: 0, answer: rs(['list', 'items'], list(3)) }, { worker: 1, answer: rs(['list', 'items'], list(4)) }], pools);
    expect(Object.fromEntries(merged.rows)).toEqual({ databases: 2, users: 1, pools: 2, used_clients: 7, used_servers: 2, free_servers: 2 });
    const state = (paused: string): Cell[][] => [['active', paused === 'yes' ? 'no' : 'yes'], ['paused', paused], ['suspended', 'no']];
    const both = mergeShow('STATE', [{ worker: 0, answer: rs(['key', 'value'], state('no')) }, { worker: 1, answer: rs(['key', 'value'], state('yes')) }]);
    expect(Object.fromEntries(both.rows)).toEqual({ active: 'no', paused: 'yes', suspended: 'no' });
  });
});
