import { redactSecrets } from './redact.ts';

/**
 * A mistake in the configuration a user gave (file, environment or flags).
 * The message has one line per problem so every mistake is reported at
 * once, not one per restart. Whatever a problem quotes passes through
 * redactSecrets, so a message built anywhere cannot repeat a password.
 */
export class ConfigError extends Error {
  /** The problems, one per message line. */
  readonly problems: readonly string[];

  constructor(problems: string | readonly string[]) {
    const list = (typeof problems === 'string' ? [problems] : [...problems]).map(redactSecrets);
    super(list.join('\n'));
    this.name = 'ConfigError';
    this.problems = list;
  }
}
