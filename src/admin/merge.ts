/**
 * One SHOW result for the whole pgmux from each worker's own: what a
 * PgBouncer user reads as one pooler. Counts are summed per row key
 * (a pool, a database, a user), waits are the longest, settings are the
 * configured whole-pgmux values every worker shows alike, averages are
 * recomputed from each worker's, and lists of connections are every
 * worker's rows with the worker's index in a trailing `worker` column (so
 * PgBouncer's column positions stay).
 */
import type { Cell, Column, ResultSet } from './console.ts';

export interface WorkerRows {
  worker: number;
  answer: ResultSet;
}

/** How a column of rows with the same key is merged: summed, the largest, or the first worker's. */
type Rule = 'sum' | 'max' | 'first';

/** SHOW commands whose rows are connections: listed, each with its worker. */
export const LISTED = new Set(['CLIENTS', 'SERVERS', 'SOCKETS', 'ACTIVE_SOCKETS']);

/** SHOW commands answered by the console's own worker: the same on every worker. */
export const LOCAL = new Set(['CONFIG', 'VERSION']);

const num = (c: Cell | undefined) => (typeof c === 'number' ? c : Number(c ?? 0));

/**
 * Rows with the same key columns made one, in the order keys first
 * appear (the first answer's order, then keys only later workers have).
 */
function byKey(answers: WorkerRows[], key: number[], rules: Record<number, Rule>): ResultSet {
  const merged = new Map<string, Cell[]>();
  for (const { answer } of answers) {
    for (const row of answer.rows) {
      const k = JSON.stringify(key.map((i) => row[i]));
      const have = merged.get(k);
      if (have === undefined) {
        merged.set(k, [...row]);
        continue;
      }
      for (const [i, rule] of Object.entries(rules)) {
        const at = Number(i);
        if (rule === 'sum') have[at] = num(have[at]) + num(row[at]);
        else if (rule === 'max') have[at] = Math.max(num(have[at]), num(row[at]));
      }
    }
  }
  return { columns: answers[0].answer.columns, rows: [...merged.values()] };
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const rulesFor = (rule: Rule, columns: number[]): Record<number, Rule> => Object.fromEntries(columns.map((c) => [c, rule]));

/** SHOW POOLS: counts summed per pool; maxwait (seconds and microseconds together) the longest; paused if any worker's is. */
function mergePools(answers: WorkerRows[]): ResultSet {
  const longest = new Map<string, number>();
  // maxwait and maxwait_us are one duration: the longest wait's pair, not each column's largest.
  const merged = byKey(answers, [0, 1, 17, 18], { ...rulesFor('sum', range(2, 12)), 19: 'max' });
  for (const { answer } of answers) {
    for (const row of answer.rows) {
      const k = JSON.stringify([row[0], row[1], row[17], row[18]]);
      longest.set(k, Math.max(longest.get(k) ?? 0, num(row[13]) * 1_000_000 + num(row[14])));
    }
  }
  for (const row of merged.rows) {
    const us = longest.get(JSON.stringify([row[0], row[1], row[17], row[18]])) ?? 0;
    row[13] = Math.floor(us / 1_000_000);
    row[14] = us % 1_000_000;
  }
  return merged;
}

/**
 * The averages of one row: rates per second summed; times per
 * transaction, query or assignment weighted by each worker's rate of
 * those (a worker with none in the period counts for nothing).
 */
function averages(rows: Cell[][], first: number): Cell[] {
  const at = (row: Cell[], i: number) => num(row[first + i]);
  const out: Cell[] = [];
  // assignments, xacts, queries, received, sent: rates.
  for (let i = 0; i < 5; i++) out.push(rows.reduce((a, r) => a + at(r, i), 0));
  // xact_time per xact, query_time per query, wait_time per assignment.
  for (const [time, count] of [[5, 1], [6, 2], [7, 0]]) {
    const weight = rows.reduce((a, r) => a + at(r, count), 0);
    const withTime = rows.filter((r) => at(r, time) > 0);
    if (weight > 0) out.push(Math.round(rows.reduce((a, r) => a + at(r, time) * at(r, count), 0) / weight));
    else out.push(withTime.length === 0 ? 0 : Math.round(withTime.reduce((a, r) => a + at(r, time), 0) / withTime.length));
  }
  return out;
}

/** SHOW STATS, STATS_TOTALS, STATS_AVERAGES: per database, totals summed, averages recomputed; sorted by database as on one worker. */
function stats(what: string, answers: WorkerRows[]): ResultSet {
  const groups = new Map<string, Cell[][]>();
  for (const { answer } of answers) for (const row of answer.rows) groups.set(String(row[0]), [...(groups.get(String(row[0])) ?? []), row]);
  const rows = [...groups.keys()].sort().map((db) => {
    const list = groups.get(db)!;
    const totals = (first: number) => range(first, first + 7).map((i) => list.reduce((a, r) => a + num(r[i]), 0));
    if (what === 'STATS') return [db, ...totals(1), ...averages(list, 9)];
    if (what === 'STATS_TOTALS') return [db, ...totals(1)];
    return [db, ...averages(list, 1)];
  });
  return { columns: answers[0].answer.columns, rows };
}

/** SHOW LISTS: counts summed; databases and users are configured (alike everywhere); pools are the distinct pools of SHOW POOLS. */
function lists(answers: WorkerRows[], pools: ResultSet | undefined): ResultSet {
  const merged = byKey(answers, [0], { 1: 'sum' });
  for (const row of merged.rows) {
    if (row[0] === 'databases' || row[0] === 'users') row[1] = Math.max(...answers.map((a) => num(a.answer.rows.find((r) => r[0] === row[0])?.[1])));
    if (row[0] === 'pools' && pools !== undefined) row[1] = pools.rows.length;
  }
  return merged;
}

/** SHOW STATE: active only when every worker is; paused or suspended when any is. */
function state(answers: WorkerRows[]): ResultSet {
  const value = (key: string, w: WorkerRows) => w.answer.rows.find((r) => r[0] === key)?.[1];
  const every = (key: string) => answers.every((w) => value(key, w) === 'yes');
  const any = (key: string) => answers.some((w) => value(key, w) === 'yes');
  return {
    columns: answers[0].answer.columns,
    rows: [['active', every('active') ? 'yes' : 'no'], ['paused', any('paused') ? 'yes' : 'no'], ['suspended', any('suspended') ? 'yes' : 'no']],
  };
}

/** Every worker's rows, each with its worker's index last. */
function listed(answers: WorkerRows[]): ResultSet {
  const columns: Column[] = [...answers[0].answer.columns, ['worker', 'int4']];
  return { columns, rows: answers.flatMap(({ worker, answer }) => answer.rows.map((row) => [...row, worker])) };
}

/**
 * The whole pgmux's answer to a SHOW from every worker's, the console's
 * own worker first: its values are taken where a column is not summed.
 * `pools` is the merged SHOW POOLS, for SHOW LISTS.
 */
export function mergeShow(what: string, answers: WorkerRows[], pools?: ResultSet): ResultSet {
  if (LISTED.has(what)) return listed([...answers].sort((a, b) => a.worker - b.worker));
  switch (what) {
    case 'POOLS':
      return mergePools(answers);
    case 'STATS':
    case 'STATS_TOTALS':
    case 'STATS_AVERAGES':
      return stats(what, answers);
    case 'DATABASES':
      // current_connections, current_client_connections summed; paused, disabled if any worker's.
      return byKey(answers, [0], { 12: 'sum', 14: 'sum', 15: 'max', 16: 'max' });
    case 'USERS': {
      const merged = byKey(answers, [0], { 5: 'sum', 7: 'sum' });
      merged.rows.sort((a, b) => (String(a[0]) < String(b[0]) ? -1 : String(a[0]) > String(b[0]) ? 1 : 0));
      return merged;
    }
    case 'LISTS':
      return lists(answers, pools);
    case 'ENDPOINTS':
      return byKey(answers, [0], { 4: 'sum' });
    case 'NODES':
      // Statements routed are summed; a node's state is the console's own worker's health check.
      return byKey(answers, [0, 1], { 9: 'sum', 10: 'sum' });
    case 'STATE':
      return state(answers);
    case 'PEER_POOLS':
      return byKey(answers, [0], { 1: 'sum', 2: 'sum', 3: 'sum' });
    default:
      return answers[0].answer;
  }
}
