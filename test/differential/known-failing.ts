/**
 * Cases that fail today, by file, case name and mode. The suite runs them
 * with it.fails, so it stays green while they fail and turns red as soon
 * as one passes: fix pgmux, then delete its line here.
 */
import type { Mode } from './modes.ts';

export interface KnownFailure {
  /** The test file's id: 'cases', 'items' or 'generated'. */
  file: string;
  name: string;
  mode: Mode;
}

export const KNOWN_FAILING: KnownFailure[] = [
  { file: 'cases', mode: 'replica', name: 'a Query sent while PostgreSQL skips to the Sync gets no answer; the connection is given back after the client leaves' },
  { file: 'cases', mode: 'transaction', name: 'parameters: a SET in a Query after extended messages without their Sync ends with its client' },
  { file: 'cases', mode: 'statement', name: 'parameters: a SET in a Query after extended messages without their Sync ends with its client' },
  { file: 'cases', mode: 'replica', name: 'parameters: a SET in a Query after extended messages without their Sync ends with its client' },
  { file: 'cases', mode: 'session', name: 'parameters: SET, SET LOCAL, RESET and application_name as each client sees them' },
  { file: 'cases', mode: 'replica', name: 'split: a Parse error arrives before the rest of its batch is sent' },
  { file: 'items', mode: 'replica', name: 'item 13: recovery state and transaction_read_only as on the primary' },
  { file: 'items', mode: 'session', name: "item 17: a client's own DEALLOCATE name and DISCARD ALL end its statements" },
  { file: 'items', mode: 'replica', name: 'item 18: an error before any Sync or Flush is sent at once' },
];

export function isKnownFailing(file: string, name: string, mode: Mode): boolean {
  return KNOWN_FAILING.some((k) => k.file === file && k.name === name && k.mode === mode);
}
