import pino, { type Logger } from 'pino';
import { createRequire } from 'node:module';

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
