/**
 * Turns schema validation issues into one line each, in the terms of the
 * TOML file: the key path, what was expected, what was given and, when the
 * loader knows, where it was given.
 */
import type { z } from 'zod';
import { isIntegerAt, keysAt } from './introspect.ts';
import { isSecretPath } from './redact.ts';

type Issue = z.core.$ZodIssue;

/** TOML-style key path: `endpoints.main.nodes[0]`, quoting keys TOML would quote. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') {
      out += `[${seg}]`;
      continue;
    }
    const key = String(seg);
    const part = /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key);
    out += out === '' ? part : `.${part}`;
  }
  return out;
}

/** A given value as the message shows it; a secret only by its type. */
export function describeValue(value: unknown, secret = false): string {
  if (secret && (typeof value === 'string' || typeof value === 'number' || typeof value === 'bigint')) return `a ${typeof value}`;
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === undefined) return 'nothing';
  if (value === null || typeof value !== 'object') return String(value);
  // smol-toml's dates are Date subclasses.
  if (value instanceof Date) return 'a date';
  if (Array.isArray(value)) return 'a list';
  return 'a table';
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  array: 'a list',
  object: 'a table',
  record: 'a table',
};

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

/** The known key a misspelt one most likely meant, if one is close. */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(key.toLowerCase().replaceAll('-', '_'), k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(1, Math.floor(key.length / 3)) ? best : undefined;
}

function got(issue: { input?: unknown; path: readonly PropertyKey[] }): string {
  return `, got ${describeValue(issue.input, isSecretPath(issue.path))}`;
}

function unknownKey(key: string, table: readonly PropertyKey[]): string {
  const hint = closestKey(key, keysAt(table));
  return `unknown key "${key}"${hint === undefined ? '' : `, did you mean "${hint}"?`}`;
}

/** What is wrong, without the path. One entry per problem. */
function describe(issue: Exclude<Issue, { code: 'unrecognized_keys' }>): string[] {
  switch (issue.code) {
    case 'invalid_value':
      return [`expected one of ${issue.values.map(String).join('|')}${got(issue)}`];
    case 'invalid_type': {
      // zod reports a non-number given for an integer as "expected number".
      const expected = issue.expected === 'number' && isIntegerAt(issue.path) ? 'int' : issue.expected;
      const name = TYPE_NAMES[expected] ?? expected;
      return [issue.input === undefined ? `missing (expected ${name})` : `expected ${name}${got(issue)}`];
    }
    case 'too_small': {
      const min = Number(issue.minimum);
      if (issue.origin === 'array' || issue.origin === 'set') return [`expected at least ${min} ${min === 1 ? 'entry' : 'entries'}, got none`];
      if (issue.origin === 'string') return [min === 1 ? 'expected a non-empty string' : `expected at least ${min} characters${got(issue)}`];
      return [`expected ${issue.inclusive ? 'at least' : 'more than'} ${min}${got(issue)}`];
    }
    case 'too_big': {
      const max = Number(issue.maximum);
      if (issue.origin === 'array' || issue.origin === 'string') return [`expected at most ${max} ${issue.origin === 'array' ? 'entries' : 'characters'}`];
      return [`expected ${issue.inclusive ? 'at most' : 'less than'} ${max}${got(issue)}`];
    }
    case 'invalid_key':
      // The schema gives key checks messages that name the key.
      return issue.issues.map((inner) => inner.message);
    default:
      return [issue.message];
  }
}

/**
 * Lines for a failed validation. `sourceOf` says where the value at a path
 * came from ("from --pool-mode", "in pgmux.toml"), or undefined.
 */
export function formatIssues(issues: readonly Issue[], sourceOf: (path: readonly PropertyKey[]) => string | undefined): string[] {
  const lines: string[] = [];
  const add = (at: readonly PropertyKey[], what: string, valuePath: readonly PropertyKey[]) => {
    const where = formatPath(at);
    const source = sourceOf(valuePath);
    lines.push(`${where === '' ? '' : `${where}: `}${what}${source === undefined ? '' : ` (${source})`}`);
  };
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) add(issue.path, unknownKey(key, issue.path), [...issue.path, key]);
    } else if (issue.code === 'invalid_key') {
      // A bad record key is reported at its table, where the key is written.
      for (const what of describe(issue)) add(issue.path.slice(0, -1), what, issue.path);
    } else {
      for (const what of describe(issue)) add(issue.path, what, issue.path);
    }
  }
  return lines;
}
