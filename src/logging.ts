import pino, { type Logger } from 'pino';
import { createRequire } from 'node:module';
import { isSecretPath, redactSecrets } from './config/redact.ts';

const require = createRequire(import.meta.url);

/** Field names whose values never reach a log line, at any depth pino can address. */
const SECRET_FIELDS = ['password', 'passwd', 'secret', 'proof', 'verifier', 'clientKey', 'serverKey', 'clientProof', 'saltedPassword'];

export const REDACT_PATHS = SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]);

/**
 * pgmux's logger: JSON lines, or readable lines when asked (`pretty`) or
 * when standard output is a terminal (`auto`). Secrets are removed from
 * whatever is logged, so a mistake in a log call cannot leak one.
 */
export function createLogger(opts: { level: string; format: 'auto' | 'json' | 'pretty'; destination?: NodeJS.WritableStream }): Logger {
  const base = { level: opts.level, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
  const readable = opts.format === 'pretty' || (opts.format === 'auto' && opts.destination === undefined && process.stdout.isTTY === true);
  if (readable) {
    // The readable format's module is loaded only when it is used.
    const pretty = require('pino-pretty') as typeof import('pino-pretty');
    return pino(base, pretty({ colorize: process.stdout.isTTY === true, sync: true, destination: opts.destination ?? 1 }));
  }
  return opts.destination === undefined ? pino(base) : pino(base, opts.destination);
}

type Value = string | number | boolean | null | undefined | Value[] | { [key: string]: Value };

/**
 * What a reload changed, setting by setting (`endpoints.main.nodes`,
 * `users.alice.pool_mode`), as `[before, after]`, for its log line. A
 * secret is named but its values are not shown; other strings lose any
 * password they carry (a URL's user:password@).
 */
export function configChanges(before: object, after: object): Record<string, [Value, Value] | 'changed'> {
  const out: Record<string, [Value, Value] | 'changed'> = {};
  const shown = (v: Value): Value => (typeof v === 'string' ? redactSecrets(v) : Array.isArray(v) ? v.map(shown) : v);
  const walk = (path: string[], a: Value, b: Value) => {
    const isObject = (v: Value) => typeof v === 'object' && v !== null && !Array.isArray(v);
    if (isObject(a) || isObject(b)) {
      const ao = (isObject(a) ? a : {}) as Record<string, Value>;
      const bo = (isObject(b) ? b : {}) as Record<string, Value>;
      for (const k of new Set([...Object.keys(ao), ...Object.keys(bo)])) walk([...path, k], ao[k], bo[k]);
      return;
    }
    if (JSON.stringify(a) === JSON.stringify(b)) return;
    out[path.join('.')] = isSecretPath(path) ? 'changed' : [shown(a) ?? null, shown(b) ?? null];
  };
  walk([], before as Value, after as Value);
  return out;
}
