type Parser = (sql: string) => unknown;
/** The parser, once loadClassifier() has loaded it (its WASM module costs memory). */
let parseSync: Parser = () => {
  throw new Error('SQL parser not loaded');
};

/**
 * What a statement text does, read with PostgreSQL's own parser
 * (libpg-query): whether it only reads, which session parameters it sets,
 * which transaction control it holds, what session state it leaves behind
 * and which user functions it calls. Results are cached by text.
 */
export interface Classification {
  readOnly: boolean;
  writeReason: string | null;
  functions: string[];
  transaction: string[];
  /** rolledBack: a ROLLBACK later in the same batch undoes it (set by the batch's inspection). */
  sets: { name: string; value: string | null; rolledBack?: boolean }[];
  resetAll: boolean;
  sessionState: string | null;
  clears: string[];
  /** Prepared statements dropped: names, or '*' for all of them (DEALLOCATE ALL, DISCARD ALL). */
  deallocates: string[];
  parseError: boolean;
  statements: number;
}

let loaded: Promise<void> | null = null;
/** Loads the parser (WASM) once; classify() needs it loaded. */
export function loadClassifier(): Promise<void> {
  loaded ??= import('libpg-query').then(async (m) => {
    await m.loadModule();
    parseSync = m.parseSync;
  });
  return loaded;
}

/** Built-in functions that write, take locks or need the primary's state (pg_proc decides for all others). */
const WRITE_FUNCS = new Set(['nextval', 'setval', 'pg_advisory_lock', 'pg_advisory_lock_shared', 'pg_try_advisory_lock', 'pg_advisory_unlock', 'pg_advisory_unlock_all', 'pg_notify', 'txid_current']);

function walk(node: unknown, visit: (k: string, v: Record<string, unknown>) => void): void {
  if (Array.isArray(node)) for (const n of node) walk(n, visit);
  else if (node !== null && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) visit(k, v as Record<string, unknown>);
      walk(v, visit);
    }
  }
}

function argText(a: unknown): string {
  const c = (a as { A_Const?: Record<string, Record<string, unknown>> }).A_Const;
  if (!c) return '';
  if (c.sval) return String(c.sval.sval);
  if (c.ival) return String(c.ival.ival ?? 0);
  if (c.fval) return String(c.fval.fval);
  return '';
}

function isConst(a: unknown): boolean {
  return (a as { A_Const?: unknown }).A_Const !== undefined;
}

/** An option of BEGIN / START TRANSACTION, as the parser gives it. */
function transactionOption(options: unknown, name: string): string | null {
  for (const o of (options as { DefElem?: { defname: string; arg: unknown } }[]) ?? []) {
    if (o.DefElem?.defname === name) return argText(o.DefElem.arg);
  }
  return null;
}

/**
 * set_config(name, value, is_local) with constant arguments is a SET (or,
 * local, nothing that outlives the transaction); with any other argument
 * pgmux cannot tell what it sets: session state.
 */
function setConfigCall(args: unknown[], out: Classification): void {
  const [name, value, local] = args;
  const isLocal = (local as { A_Const?: { boolval?: { boolval?: boolean } } } | undefined)?.A_Const?.boolval;
  if (args.length !== 3 || !isConst(name) || !isConst(value) || isLocal === undefined) {
    out.sessionState ??= 'set_config';
    return;
  }
  if (isLocal.boolval === true) return;
  out.sets.push({ name: argText(name).toLowerCase(), value: argText(value) });
}

const cache = new Map<string, Classification>();
export function classify(sql: string): Classification {
  const hit = cache.get(sql);
  if (hit) return hit;
  const out: Classification = { readOnly: true, writeReason: null, functions: [], transaction: [], sets: [], resetAll: false, sessionState: null, clears: [], deallocates: [], parseError: false, statements: 0 };
  let tree: { stmts?: { stmt: Record<string, Record<string, unknown>> }[] };
  try {
    tree = parseSync(sql) as unknown as typeof tree;
  } catch {
    out.parseError = true;
    out.readOnly = false;
    out.writeReason = 'syntax error';
    return out;
  }
  for (const { stmt } of tree.stmts ?? []) {
    out.statements++;
    const [kind, body] = Object.entries(stmt)[0];
    const write = (why: string) => {
      out.readOnly = false;
      out.writeReason ??= why;
    };
    switch (kind) {
      case 'SelectStmt':
        if (body.lockingClause) write('locking clause');
        if (body.intoClause) write('SELECT INTO');
        break;
      case 'VariableSetStmt':
        if (body.is_local) break;
        if (body.kind === 'VAR_RESET_ALL') out.resetAll = true;
        else if (body.kind === 'VAR_RESET' || body.kind === 'VAR_SET_DEFAULT') out.sets.push({ name: String(body.name).toLowerCase(), value: null });
        else if (body.kind === 'VAR_SET_VALUE') out.sets.push({ name: String(body.name).toLowerCase(), value: ((body.args as unknown[]) ?? []).map(argText).join(', ') });
        // SET TRANSACTION lasts as long as the transaction.
        else if (!(body.kind === 'VAR_SET_MULTI' && String(body.name).toUpperCase() === 'TRANSACTION')) out.sessionState = `SET ${String(body.name)}`;
        break;
      case 'VariableShowStmt':
        break;
      case 'TransactionStmt': {
        const k = String(body.kind);
        // A read-only transaction may run on a replica, unless it is
        // SERIALIZABLE, which a hot standby refuses.
        const ro = transactionOption(body.options, 'transaction_read_only') === '1' && transactionOption(body.options, 'transaction_isolation') !== 'serializable';
        if (k === 'TRANS_STMT_BEGIN' || k === 'TRANS_STMT_START') out.transaction.push(ro ? 'begin_read_only' : 'begin');
        else if (k === 'TRANS_STMT_COMMIT') out.transaction.push('commit');
        else if (k === 'TRANS_STMT_ROLLBACK') out.transaction.push('rollback');
        else out.transaction.push(k.toLowerCase());
        break;
      }
      case 'ListenStmt':
        out.sessionState ??= 'LISTEN';
        write('LISTEN');
        break;
      case 'PrepareStmt':
        out.sessionState ??= 'PREPARE';
        write('PREPARE');
        break;
      case 'DeclareCursorStmt':
        if (((body.options as number) & 0x20) !== 0) out.sessionState ??= 'DECLARE WITH HOLD';
        write('DECLARE');
        break;
      case 'CreateStmt':
      case 'CreateTableAsStmt':
        if (JSON.stringify(body).includes('"relpersistence":"t"')) out.sessionState ??= 'CREATE TEMP TABLE';
        write(kind);
        break;
      case 'DiscardStmt':
        out.clears.push(String(body.target).replace('DISCARD_', '').toLowerCase());
        if (body.target === 'DISCARD_ALL') out.deallocates.push('*');
        write('DISCARD');
        break;
      case 'DeallocateStmt':
        out.deallocates.push(body.isall === true ? '*' : String(body.name));
        write('DEALLOCATE');
        break;
      default:
        write(kind);
    }
    walk(body, (k, v) => {
      if (k !== 'FuncCall') return;
      const names = ((v.funcname as { String: { sval: string } }[]) ?? []).map((n) => n.String.sval.toLowerCase());
      const name = names[names.length - 1];
      if (name.startsWith('pg_advisory_lock') || name.startsWith('pg_try_advisory_lock')) out.sessionState ??= 'pg_advisory_lock';
      if (name === 'set_config') setConfigCall((v.args as unknown[]) ?? [], out);
      if (WRITE_FUNCS.has(name)) write(name);
      else out.functions.push(names.join('.'));
    });
  }
  if (cache.size > 10000) cache.clear();
  cache.set(sql, out);
  return out;
}
