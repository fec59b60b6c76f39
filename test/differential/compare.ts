/**
 * Compares PostgreSQL's recording of a script with pgmux's, segment by
 * segment, applying the differences by design, and says what differs in
 * a form a person can act on.
 */
import { checkDifference, differencesFor, formFor } from './differences.ts';
import type { Recording, Segment } from './harness.ts';
import type { Mode } from './modes.ts';
import { showBackend, type BackendMsg } from './protocol.ts';
import { describeStep, type Script } from './script.ts';

/** A RowDescription with each column's table OID and column number zeroed (Script.ignoreTableOids). */
function withoutTableOids(m: BackendMsg): BackendMsg {
  if (m.type !== 'T') return m;
  const b = Buffer.from(m.body);
  let pos = 2;
  for (let i = 0; i < b.readInt16BE(0); i++) {
    pos = b.indexOf(0, pos) + 1;
    b.writeInt32BE(0, pos);
    b.writeInt16BE(0, pos + 4);
    pos += 18;
  }
  return { type: m.type, body: b };
}

let ignoreTableOids = false;
function same(a: BackendMsg, b: BackendMsg): boolean {
  if (ignoreTableOids) [a, b] = [withoutTableOids(a), withoutTableOids(b)];
  return a.type === b.type && a.body.equals(b.body);
}

function showMsgs(msgs: BackendMsg[], mark: number): string {
  if (msgs.length === 0) return '    (nothing)';
  return msgs.map((m, i) => `  ${i === mark ? '>' : ' '} ${showBackend(m)}`).join('\n');
}

function segmentProblem(d: Segment, p: Segment): string | null {
  if (d.label !== p.label) return `the runs went apart: PostgreSQL's run at "${d.label}", pgmux's at "${p.label}"`;
  if (!!d.skipped !== !!p.skipped) {
    return `${d.label}: ${d.skipped ? 'skipped against PostgreSQL, run through pgmux' : 'run against PostgreSQL, skipped through pgmux'} (a client held or did not hold its connection)`;
  }
  if (d.rows !== p.rows) return `${d.label}:\n  PostgreSQL: ${d.rows}\n  pgmux:      ${p.rows}`;
  const n = Math.max(d.msgs.length, p.msgs.length);
  let first = -1;
  for (let i = 0; i < n && first < 0; i++) if (!d.msgs[i] || !p.msgs[i] || !same(d.msgs[i], p.msgs[i])) first = i;
  if (first < 0 && !p.noAnswer) return null;
  const why = p.noAnswer ? ` — no answer: pgmux sent ${p.msgs.length} of PostgreSQL's ${d.msgs.length} messages within ${p.noAnswer} ms` : '';
  return `${d.label}${why}\n  PostgreSQL:\n${showMsgs(d.msgs, first)}\n  pgmux:\n${showMsgs(p.msgs, first)}`;
}

/** PostgreSQL's recording as pgmux's must be, where a listed difference rewrites some steps' answers. */
export function expectedRecording(script: Script, mode: Mode, direct: Recording): Recording {
  const form = formFor(script.name, mode)?.form;
  if (!form || !('rewrite' in form)) return direct;
  return {
    segments: direct.segments.map((seg) => {
      const step = seg.step >= 0 && !seg.login ? script.steps[seg.step] : undefined;
      return step?.do === 'send' && form.steps(step.msgs) ? { ...seg, msgs: form.rewrite(seg.msgs) } : seg;
    }),
  };
}

/**
 * Each client's whole stream, for a listed difference whose answers may
 * come later than PostgreSQL's: the same messages in the same order, and
 * the same rows from each check.
 */
function compareStreams(direct: Recording, pgmux: Recording): string[] {
  const problems: string[] = [];
  const rows = (r: Recording) => r.segments.filter((s) => s.rows !== undefined).map((s) => `${s.label}: ${s.rows}`);
  const [dr, pr] = [rows(direct), rows(pgmux)];
  if (JSON.stringify(dr) !== JSON.stringify(pr)) problems.push(`checks:\n  PostgreSQL: ${dr.join('; ')}\n  pgmux:      ${pr.join('; ')}`);
  const clients = [...new Set(direct.segments.map((s) => s.client).filter((c) => c !== null))] as string[];
  for (const c of clients) {
    const stream = (r: Recording) => r.segments.filter((s) => s.client === c).flatMap((s) => s.msgs);
    const [d, p] = [stream(direct), stream(pgmux)];
    let first = -1;
    for (let i = 0; i < Math.max(d.length, p.length) && first < 0; i++) if (!d[i] || !p[i] || !same(d[i], p[i])) first = i;
    if (first >= 0) problems.push(`client ${c}, its whole stream (answers may come later here, not otherwise):\n  PostgreSQL:\n${showMsgs(d, first)}\n  pgmux:\n${showMsgs(p, first)}`);
  }
  return problems;
}

/**
 * Every problem found, first the earliest; empty when pgmux answered as
 * PostgreSQL did. `direct` is expectedRecording()'s: a rewrite is applied.
 */
export function compareRecordings(script: Script, mode: Mode, direct: Recording, pgmux: Recording): string[] {
  const problems: string[] = [];
  const diffs = differencesFor(mode);
  ignoreTableOids = script.ignoreTableOids ?? false;
  const form = formFor(script.name, mode);
  if (form?.form && 'later' in form.form) return compareStreams(direct, pgmux).map((p) => `${form.id}: ${p}`);
  const n = Math.max(direct.segments.length, pgmux.segments.length);
  for (let i = 0; i < n; i++) {
    const d = direct.segments[i];
    const p = pgmux.segments[i];
    if (!d || !p) {
      problems.push(`pgmux's run has ${pgmux.segments.length} segments, PostgreSQL's ${direct.segments.length}; first unmatched: ${(d ?? p).label}`);
      break;
    }
    const step = d.step >= 0 ? script.steps[d.step] : undefined;
    const diff = step?.do === 'send' && !d.skipped && !d.login ? diffs.find((x) => x.trigger!(step.msgs)) : undefined;
    if (diff && step?.do === 'send' && d.label === p.label) {
      // By design the runs part here; what pgmux answered must have the listed form.
      const problem = checkDifference(diff, step.msgs, d.msgs, p.msgs);
      if (problem) problems.push(`${d.label}: ${problem}`);
      break;
    }
    const problem = segmentProblem(d, p);
    if (problem) {
      problems.push(problem);
      // Later segments mostly repeat the first difference; stop once it is a change of course.
      if (d.label !== p.label || problems.length >= 2) break;
    }
  }
  return problems;
}

/** The report a failing comparison throws: what differs, then the script's steps for context. */
export function report(script: Script, mode: Mode, problems: string[]): string {
  const steps = script.steps.map((s, i) => `  step ${i + 1} ${describeStep(s)}`).join('\n');
  return [`${script.name} [${mode}]: pgmux answered differently from PostgreSQL`, ...problems, `script:\n${steps}`].join('\n\n');
}

/** Both recordings, segment by segment (PGMUX_DIFF_SHOW=1 prints them for every case). */
export function showRecordings(title: string, direct: Recording, pgmux: Recording): string {
  const out = [title];
  for (let i = 0; i < Math.max(direct.segments.length, pgmux.segments.length); i++) {
    const d = direct.segments[i];
    const p = pgmux.segments[i];
    out.push(`${(d ?? p).label}${d?.skipped ? ' (skipped)' : ''}`);
    if (d?.rows !== undefined || p?.rows !== undefined) out.push(`  PostgreSQL: ${d?.rows}`, `  pgmux:      ${p?.rows}`);
    else out.push('  PostgreSQL:', showMsgs(d?.msgs ?? [], -1), `  pgmux:${p?.noAnswer ? ' (no answer in time)' : ''}`, showMsgs(p?.msgs ?? [], -1));
  }
  return out.join('\n');
}
