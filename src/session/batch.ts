import { classify, type Classification } from '../sql/classify.ts';
import { readParse, readQuery, readBind } from '../protocol/extended.ts';
import type { ClientStatement } from './statements.ts';
import type { BatchInfo } from '../routing/route-types.ts';

export type { BatchInfo };

/**
 * A batch: the client messages up to and including a Sync, Query,
 * FunctionCall or Flush. pgmux routes and sends a batch as one unit, so a
 * batch reaches one node and its Sync goes only there.
 */
export interface Batch {
  msgs: { type: number; msg: Buffer }[];
  bytes: number;
  /** Set by inspect(). */
  info: BatchInfo | null;
  /** A node the batch must go to (a read re-sent to the primary). */
  forceNode?: number;
}

export function newBatch(): Batch {
  return { msgs: [], bytes: 0, info: null };
}

const EMPTY: BatchInfo = Object.freeze({
  readOnly: true,
  functions: [],
  transaction: [],
  sets: [],
  resetAll: false,
  sessionState: null,
  clears: [],
  deallocates: [],
  hasSql: false,
  firstSql: null,
}) as BatchInfo;

/**
 * Words without which a statement cannot set a parameter, keep session
 * state, control a transaction or clear state. When routing does not matter
 * (one node) and a text holds none of them, the parser could find nothing
 * that changes what pgmux does, so it is not asked. Matching is on
 * lower-cased substrings, so it errs towards parsing.
 */
const STATEFUL_WORDS = ['set', 'listen', 'prepare', 'declare', 'temp', 'advisory', 'load', 'discard', 'deallocate', 'begin', 'start', 'commit', 'rollback', 'abort', 'end', 'savepoint', 'release', 'into', 'transaction', 'session', 'lock'];

/** Statements that can only change session state through a function call (set_config, advisory locks) or SELECT INTO. */
const PLAIN_VERBS = new Set(['select', 'insert', 'update', 'delete', 'values', 'table', 'with']);

/** The first word of a text that starts with one (no comment, no parenthesis), lower-cased. */
function firstWord(lower: string): string {
  let i = 0;
  while (i < lower.length && (lower[i] === ' ' || lower[i] === '\n' || lower[i] === '\t' || lower[i] === '\r')) i++;
  let j = i;
  while (j < lower.length && lower[j] >= 'a' && lower[j] <= 'z') j++;
  return lower.slice(i, j);
}

function mayMatter(sql: string): boolean {
  return mayMatterLower(sql.toLowerCase());
}

function mayMatterLower(lower: string): boolean {
  const verb = firstWord(lower);
  if (PLAIN_VERBS.has(verb)) {
    // One DML statement (a semicolon, if any, only at the end) that calls
    // no function able to change the session: nothing for the parser to
    // find. UPDATE ... SET is the reason for this shortcut.
    const semi = lower.indexOf(';');
    const single = semi < 0 || lower.slice(semi + 1).trim() === '';
    const reads = verb === 'select' || verb === 'with' || verb === 'values' || verb === 'table';
    if (single && !lower.includes('set_config') && !lower.includes('advisory') && !lower.includes('temp') && !lower.includes('lo_') && !(reads && lower.includes('into'))) return false;
  }
  for (const w of STATEFUL_WORDS) if (lower.includes(w)) return true;
  return false;
}

const PLAIN: BatchInfo = Object.freeze({ ...EMPTY, readOnly: false, hasSql: true }) as BatchInfo;

/**
 * One DML statement that cannot change the session, control a transaction
 * or start a COPY (mayMatter finds nothing in it and its verb is a plain
 * one): on one node pgmux has nothing to do with its text but send it.
 */
export function plainStatement(sql: string): boolean {
  const lower = sql.toLowerCase();
  return PLAIN_VERBS.has(firstWord(lower)) && !mayMatterLower(lower);
}

/** What inspect() says, without routing, of a batch of plain statements. */
export function plainInfo(firstSql: string): BatchInfo {
  return { ...PLAIN, firstSql };
}

/** An extended-protocol run of the unnamed statement and portal, read by unnamedRun. */
export interface UnnamedRun {
  sql: string;
  /** The Parse after its name: the text and the parameter types. */
  rest: Buffer;
  describe: boolean;
}

/**
 * Whether `chunk` is exactly Parse, Bind, Describe (optional), Execute
 * and Sync, all of the unnamed statement and portal, each whole and of
 * a sound length (anything odd goes the long way, where the server
 * answers it); the Parse's text if so.
 */
export function unnamedRun(chunk: Buffer, maxLength: number): UnnamedRun | null {
  const n = chunk.length;
  let pos = 0;
  const next = (type: number, min: number): number => {
    if (n - pos < 5 || chunk[pos] !== type) return -1;
    const len = chunk.readInt32BE(pos + 1);
    if (len < min || len > maxLength || len > n - pos - 1) return -1;
    const at = pos;
    pos += len + 1;
    return at;
  };
  const p = next(0x50, 8);
  if (p < 0 || chunk[p + 5] !== 0) return null;
  const b = next(0x42, 10);
  if (b < 0 || chunk[b + 5] !== 0 || chunk[b + 6] !== 0) return null;
  let describe = false;
  if (pos < n && chunk[pos] === 0x44) {
    const d = next(0x44, 6);
    if (d < 0 || (chunk[d + 5] !== 0x50 && chunk[d + 5] !== 0x53) || chunk[d + 6] !== 0) return null;
    describe = true;
  }
  const e = next(0x45, 9);
  if (e < 0 || chunk[e + 5] !== 0) return null;
  const s = next(0x53, 4);
  if (s < 0 || pos !== n || chunk.readInt32BE(s + 1) !== 4) return null;
  try {
    const parse = readParse(chunk.subarray(p, b));
    return { sql: parse.sql, rest: parse.rest, describe };
  } catch {
    return null;
  }
}

const CONTROL_VERBS = new Set(['begin', 'start', 'commit', 'end', 'rollback', 'abort']);

/**
 * What inspect() says of one Query that only controls the transaction
 * (BEGIN, COMMIT, END, ROLLBACK and their options): the parser's verdict
 * (cached by text), when it sets nothing, keeps no session state and
 * drops no statement; else null.
 */
export function transactionControl(sql: string): BatchInfo | null {
  if (!CONTROL_VERBS.has(firstWord(sql.toLowerCase()))) return null;
  const c = classify(sql);
  if (c.parseError || c.statements !== 1 || c.sets.length > 0 || c.resetAll || c.sessionState !== null || c.clears.length > 0 || c.deallocates.length > 0) return null;
  return fromOne(c, sql);
}

/**
 * One SELECT that calls no function at all (no parenthesis anywhere), has
 * no locking clause and no INTO: it only reads, and sets nothing, whatever
 * its literals. The parser would say the same, so it is not asked: reads
 * like pgbench -S differ in a literal each time and would miss its cache
 * on every statement. Matching is on lower-cased substrings, so anything
 * unusual (a comment, a string holding "for") goes to the parser.
 */
function plainRead(sql: string): boolean {
  if (sql.includes('(')) return false;
  const lower = sql.toLowerCase();
  if (firstWord(lower) !== 'select') return false;
  const semi = lower.indexOf(';');
  if (semi >= 0 && lower.slice(semi + 1).trim() !== '') return false;
  return !lower.includes('for') && !lower.includes('into') && !lower.includes('--') && !lower.includes('/*');
}

const { hasSql: _hasSql, firstSql: _firstSql, ...NOTHING } = EMPTY;
/** What the parser says of a plain read: it reads, and does nothing else. */
const PLAIN_READ: Classification = Object.freeze({ ...NOTHING, writeReason: null, parseError: false, statements: 1 });

/** What inspect() needs of the client's statements and portals. */
export interface InspectContext {
  readonly statements: ReadonlyMap<string, ClientStatement>;
  /** The text of the client's unnamed statement before this batch, if any. */
  readonly unnamedSql: string | null;
  /** Portal name to the text bound to it; inspect() follows the batch's Binds. */
  readonly portals: Map<string, string>;
}

/**
 * What the statements of a batch do, from a real PostgreSQL parser.
 * `routing`: whether the read-only verdict is needed (reads go to replicas).
 */
export function inspect(batch: Batch, ctx: InspectContext, routing = true): BatchInfo {
  const info = inspectStatements(batch, ctx, routing);
  if (!routing || !info.readOnly) return info;
  // What pgmux cannot see as a whole read goes to the primary: a
  // FunctionCall (libpq's large objects; it may write), and a run not yet
  // ended by Sync (a Flush, or a batch cut for its size), whose later
  // statements could write on the node this part chose.
  const last = batch.msgs[batch.msgs.length - 1].type;
  const whole = last === 0x53 || last === 0x51;
  const call = batch.msgs.some((m) => m.type === 0x46);
  if (whole && !call) return info;
  return { ...info, readOnly: false, hasSql: info.hasSql || call };
}

/** The portal an Execute names. */
function executePortal(msg: Buffer): string {
  const end = msg.indexOf(0, 5);
  return msg.toString('utf8', 5, end < 0 ? msg.length : end);
}

/**
 * Where the statements go depends on every text the batch carries (a
 * Parse, a Query, a Bind of a statement parsed earlier); what they do to
 * the session (SET, BEGIN, LISTEN, DISCARD…) only on what runs: a Query,
 * or an Execute of a portal. A statement parsed and bound but never
 * executed changes nothing, in PostgreSQL and so for pgmux.
 */
function inspectStatements(batch: Batch, ctx: InspectContext, routing: boolean): BatchInfo {
  const routed: Classification[] = [];
  const executed: Classification[] = [];
  let parsedHere: Map<string, string> | null = null;
  let firstSql: string | null = null;
  let sawPlain = false;
  const classifyText = (sql: string): Classification | null => (!routing && !mayMatter(sql) ? null : plainRead(sql) ? PLAIN_READ : classify(sql));
  const route = (sql: string): Classification | null => {
    firstSql ??= sql;
    const c = classifyText(sql);
    if (c === null) sawPlain = true;
    else routed.push(c);
    return c;
  };
  for (const { type, msg } of batch.msgs) {
    try {
      if (type === 0x51 /* Query */) {
        const c = route(readQuery(msg));
        if (c !== null) executed.push(c);
      } else if (type === 0x50 /* Parse */) {
        const p = readParse(msg);
        (parsedHere ??= new Map()).set(p.name, p.sql);
        route(p.sql);
      } else if (type === 0x42 /* Bind */) {
        const b = readBind(msg);
        const here = parsedHere?.get(b.statement);
        const sql = here ?? (b.statement === '' ? ctx.unnamedSql : (ctx.statements.get(b.statement)?.sql ?? null));
        if (sql === null) ctx.portals.delete(b.portal);
        else {
          if (here === undefined) route(sql);
          ctx.portals.set(b.portal, sql);
        }
      } else if (type === 0x45 /* Execute */) {
        const sql = ctx.portals.get(executePortal(msg));
        const c = sql === undefined ? null : classifyText(sql);
        if (c !== null) executed.push(c);
      }
    } catch {
      // A malformed message: the server refuses it, in its own words.
    }
  }
  if (routed.length === 0 && executed.length === 0) return sawPlain ? { ...PLAIN, firstSql } : EMPTY;
  if (routed.length === 1 && executed.length === 1 && routed[0] === executed[0] && !sawPlain) return fromOne(routed[0], firstSql);
  const info: BatchInfo = { ...EMPTY, readOnly: !sawPlain, functions: [], transaction: [], sets: [], clears: [], deallocates: [], hasSql: routed.length > 0 || sawPlain, firstSql };
  for (const c of routed) {
    info.readOnly &&= c.readOnly;
    info.functions.push(...c.functions);
  }
  // A SET that a ROLLBACK later in the batch undoes never happened; one
  // after it is in a transaction of its own.
  const lastRollback = executed.findLastIndex((c) => c.transaction.includes('rollback'));
  for (let i = 0; i < executed.length; i++) {
    const c = executed[i];
    info.transaction.push(...c.transaction);
    if (i < lastRollback) for (const s of c.sets) info.sets.push({ ...s, rolledBack: true });
    else info.sets.push(...c.sets);
    info.resetAll ||= c.resetAll;
    info.sessionState ??= c.sessionState;
    info.clears.push(...c.clears);
    info.deallocates.push(...c.deallocates);
  }
  return info;
}

function fromOne(c: Classification, firstSql: string | null): BatchInfo {
  return {
    readOnly: c.readOnly,
    functions: c.functions,
    transaction: c.transaction,
    sets: c.sets,
    resetAll: c.resetAll,
    sessionState: c.sessionState,
    clears: c.clears,
    deallocates: c.deallocates,
    hasSql: true,
    firstSql,
  };
}
