/**
 * Runs a script (script.ts) against one server, PostgreSQL itself or a
 * pgmux in front of it, and records what each client receives, cut into
 * one segment per step. PostgreSQL's recording then guides the pgmux run:
 * each step there waits for as many messages as PostgreSQL sent for it, so
 * the two recordings line up segment by segment and a step pgmux leaves
 * unanswered shows as "no answer" rather than as a test timeout.
 */
import { encode, type BackendMsg } from './protocol.ts';
import { describeStep, type Script, type Step, type Wait } from './script.ts';
import { WireClient } from './wire.ts';

/** How long pgmux may take to send what PostgreSQL sent for a step. */
export const ANSWER_TIMEOUT_MS = 1500;
/** After messages sent without their Sync: how long PostgreSQL is given to say something (an error, a Flush's answers). */
const QUIET_MS = 40;
/** Longest wait for PostgreSQL's own answers; a script that needs more says so. */
const DIRECT_TIMEOUT_MS = 5000;
/** Longest wait for answers PostgreSQL is expected to owe (answers.ts); longer only if the model is wrong. */
const OWED_TIMEOUT_MS = 1000;
/** After the last step: how long to listen for anything more. */
const FINAL_QUIET_MS = 20;
/** Where answers may come later by design: how long to listen for them after the last step. */
const LATER_QUIET_MS = 300;
/** Once pgmux left a step unanswered, later steps wait only this long (they are reported, not relied on). */
const AFTER_NO_ANSWER_MS = 200;

export interface Segment {
  /** Index of the step in the script; -1 for the messages after the last step. */
  step: number;
  label: string;
  client: string | null;
  msgs: BackendMsg[];
  /** The login of a client (its connect step, or the connect a send step began with). */
  login?: boolean;
  /** A check step's rows, as JSON. */
  rows?: string;
  skipped?: boolean;
  /** pgmux run only: fewer messages than PostgreSQL's arrived within this many milliseconds. */
  noAnswer?: number;
}

export interface Recording {
  segments: Segment[];
}

/** Connections the harness itself uses, besides the clients under test. */
export interface SideAccess {
  /** Runs setup SQL as `app` on the primary. */
  setup(sql: string): Promise<void>;
  /** Runs SQL on a fresh superuser connection to appdb on the primary; rows as JSON. */
  check(sql: string): Promise<string>;
}

export interface Target {
  port: number;
  user: string;
  database: string;
  password: string;
  side: SideAccess;
  /** A pgmux run: PostgreSQL's recording of the same script. */
  guide?: Recording;
  /** Run after setup and after each step (replica topology: the replica has replayed the primary's WAL). */
  barrier?: () => Promise<void>;
  /** A step after which the runs part by design (differences.ts): nothing after it is run. */
  partsAfter?: (s: Step) => boolean;
  /** pgmux's answers may come later than PostgreSQL's by design (differences.ts): wait for them at the end. */
  answersLater?: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether a client holds its server connection in transaction pooling (POOL_WAIT in differences.ts). */
function holds(c: WireClient): boolean {
  return !c.closed && (c.status === 'T' || c.status === 'E' || c.unsynced || c.answers.owed());
}

/** Waits, against PostgreSQL, for what the step's Wait says. */
async function waitDirect(c: WireClient, w: Wait | undefined, from: number, zAtStart: number): Promise<void> {
  if (w === 'none') return;
  if (w === undefined) {
    // Not answered in time: PostgreSQL answered less than the model expects; go on from what it did send.
    if (!(await c.until(() => !c.answers.owed(), OWED_TIMEOUT_MS))) c.answers.reset();
    if (c.unsynced) await c.quiet(QUIET_MS);
  } else if ('rfq' in w) {
    await c.until(() => c.zCount >= zAtStart + w.rfq, DIRECT_TIMEOUT_MS);
  } else if ('type' in w) {
    await c.until(() => c.msgs.slice(from).some((m) => m.type === w.type), DIRECT_TIMEOUT_MS);
  } else if ('quiet' in w) {
    await sleep(w.quiet);
  } else {
    await c.until(() => false, DIRECT_TIMEOUT_MS);
  }
}

export async function runScript(script: Script, t: Target): Promise<Recording> {
  const clients = new Map<string, WireClient>();
  /** Every socket opened, those of clients that left and came back included, to close at the end. */
  const opened: WireClient[] = [];
  const cursor = new Map<WireClient, number>();
  const gone = new Set<string>();
  const segments: Segment[] = [];
  let unanswered = false;

  /** Closes a segment of `c`'s messages: PostgreSQL's run after `direct()`, pgmux's at PostgreSQL's count. */
  const segment = async (step: number, label: string, client: string, c: WireClient, direct: () => Promise<void>, extraMs = 0, login = false) => {
    const from = cursor.get(c)!;
    const guide = t.guide?.segments[segments.length];
    let end: number;
    let noAnswer = 0;
    const parts = step >= 0 && !login && (t.partsAfter?.(script.steps[step]) ?? false);
    if (guide && guide.label === label && parts) {
      // pgmux answers this step its own way (differences.ts): its answer is complete with ReadyForQuery.
      await c.until(() => c.msgs.slice(from).some((m) => m.type === 'Z'), ANSWER_TIMEOUT_MS + extraMs);
      await c.quiet(QUIET_MS);
      end = c.msgs.length;
    } else if (guide && guide.label === label) {
      const want = from + guide.msgs.length;
      const ms = (unanswered || t.answersLater ? AFTER_NO_ANSWER_MS : ANSWER_TIMEOUT_MS) + extraMs;
      if (!(await c.until(() => c.msgs.length >= want, ms))) noAnswer = ms;
      unanswered ||= noAnswer > 0;
      end = Math.min(c.msgs.length, want);
    } else {
      await direct();
      end = c.msgs.length;
    }
    cursor.set(c, end);
    segments.push({ step, label, client, msgs: c.msgs.slice(from, end), ...(noAnswer ? { noAnswer } : {}), ...(login ? { login } : {}) });
  };

  const open = async (i: number, client: string, step?: Extract<Step, { do: 'connect' }>) => {
    const c = await WireClient.connect(t.port);
    opened.push(c);
    clients.set(client, c);
    cursor.set(c, 0);
    gone.delete(client);
    const appName = step?.appName ?? `diff_${client}`;
    await c.login({ user: t.user, database: t.database, password: t.password, appName, startup: step?.startup, timeoutMs: DIRECT_TIMEOUT_MS });
    await segment(i, `${client}: connect`, client, c, async () => {}, 0, true);
    return c;
  };

  for (const sql of script.setup ?? []) await t.side.setup(sql);
  await t.barrier?.();

  try {
    for (let i = 0; i < script.steps.length; i++) {
      const s = script.steps[i];
      const label = `step ${i + 1} ${describeStep(s)}`;
      switch (s.do) {
        case 'connect':
          await open(i, s.client, s);
          break;
        case 'send': {
          if (script.skipWhileHeld && [...clients].some(([name, c]) => name !== s.client && !gone.has(name) && holds(c))) {
            segments.push({ step: i, label, client: s.client, msgs: [], skipped: true });
            break;
          }
          const c = clients.has(s.client) && !gone.has(s.client) ? clients.get(s.client)! : await open(i, s.client);
          const from = c.msgs.length;
          const zAtStart = c.zCount;
          const bytes = Buffer.concat(s.msgs.map(encode));
          for (const m of s.msgs) c.sent(m);
          const splits = s.split === 'bytes' ? Array.from({ length: bytes.length - 1 }, (_, k) => k + 1) : (s.split ?? []);
          await c.write(bytes, splits);
          // Large writes take their time on a busy machine: a millisecond more per 5 kB.
          const extraMs = (s.wait && s.wait !== 'none' && 'quiet' in s.wait ? s.wait.quiet : 0) + Math.round(bytes.length / 5000);
          await segment(i, label, s.client, c, () => waitDirect(c, s.wait, from, zAtStart), extraMs);
          break;
        }
        case 'wait': {
          const c = clients.get(s.client)!;
          await segment(i, label, s.client, c, () => waitDirect(c, s.wait, c.msgs.length, c.zCount), s.wait !== 'none' && 'quiet' in s.wait ? s.wait.quiet : 0);
          break;
        }
        case 'leave': {
          const c = clients.get(s.client);
          // Leaving without having come (generated scripts): nothing to do.
          if (!c || gone.has(s.client)) break;
          if (s.how === 'destroy') {
            c.destroy();
            await segment(i, label, s.client, c, async () => {});
          } else {
            if (s.how === 'terminate') c.socket.write(encode({ t: 'Terminate' }));
            else c.socket.end();
            await segment(i, label, s.client, c, () => c.until(() => false, 1000).then(() => {}));
          }
          gone.add(s.client);
          break;
        }
        case 'check':
          if (s.delayMs) await sleep(s.delayMs);
          segments.push({ step: i, label, client: null, msgs: [], rows: await t.side.check(s.sql) });
          break;
        case 'sleep':
          await sleep(s.ms);
          break;
      }
      await t.barrier?.();
      if (t.partsAfter?.(s)) return { segments };
    }
    // Whatever still arrives: late answers, or messages nobody asked for.
    // Every client waits at once; pgmux's run then takes all it got, so an
    // extra message shows.
    const live = [...clients].filter(([, c]) => !c.destroyedByUs);
    const quietAll = () => Promise.all(live.map(([, c]) => c.quiet(FINAL_QUIET_MS))).then(() => {});
    if (t.guide) {
      for (const [name, c] of live) await segment(-1, `${name}: after the last step`, name, c, async () => {});
      if (t.answersLater) await Promise.all(live.map(([, c]) => c.quiet(LATER_QUIET_MS)));
      await quietAll();
      live.forEach(([, c], k) => segments[segments.length - live.length + k].msgs.push(...c.msgs.slice(cursor.get(c)!)));
    } else {
      await quietAll();
      for (const [name, c] of live) await segment(-1, `${name}: after the last step`, name, c, async () => {});
    }
  } finally {
    for (const c of opened) c.destroy();
  }
  return { segments };
}
