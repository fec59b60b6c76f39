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
  { file: 'cases', mode: 'transaction', name: 'COPY FROM STDIN in one write, then an error whose Sync comes in two pieces' },
  { file: 'cases', mode: 'statement', name: 'COPY FROM STDIN in one write, then an error whose Sync comes in two pieces' },
  { file: 'cases', mode: 'replica', name: 'COPY FROM STDIN in one write, then an error whose Sync comes in two pieces' },
  { file: 'cases', mode: 'transaction', name: 'COPY FROM STDIN in one write, then another client' },
  { file: 'cases', mode: 'statement', name: 'COPY FROM STDIN in one write, then another client' },
  { file: 'cases', mode: 'transaction', name: 'COPY FROM STDIN inside a transaction block, rolled back' },
  { file: 'cases', mode: 'session', name: 'a Query sent while PostgreSQL skips to the Sync gets no answer; the connection is given back after the client leaves' },
  { file: 'cases', mode: 'replica', name: 'a Query sent while PostgreSQL skips to the Sync gets no answer; the connection is given back after the client leaves' },
  { file: 'cases', mode: 'transaction', name: 'a second Parse of a used name, with SQL that does not parse: the syntax error comes first' },
  { file: 'cases', mode: 'statement', name: 'a second Parse of a used name, with SQL that does not parse: the syntax error comes first' },
  { file: 'cases', mode: 'replica', name: 'a second Parse of a used name, with SQL that does not parse: the syntax error comes first' },
  { file: 'cases', mode: 'transaction', name: 'leave after an extended-protocol error, before its Sync: the next client is served' },
  { file: 'cases', mode: 'statement', name: 'leave after an extended-protocol error, before its Sync: the next client is served' },
  { file: 'cases', mode: 'replica', name: 'leave after an extended-protocol error, before its Sync: the next client is served' },
  { file: 'cases', mode: 'session', name: 'parameters: SET, SET LOCAL, RESET and application_name as each client sees them' },
  { file: 'cases', mode: 'transaction', name: 'parameters: SET, SET LOCAL, RESET and application_name as each client sees them' },
  { file: 'cases', mode: 'replica', name: 'parameters: SET, SET LOCAL, RESET and application_name as each client sees them' },
  { file: 'cases', mode: 'transaction', name: 'parameters: a SET between extended statements ends with its client' },
  { file: 'cases', mode: 'statement', name: 'parameters: a SET between extended statements ends with its client' },
  { file: 'cases', mode: 'replica', name: 'parameters: a SET between extended statements ends with its client' },
  { file: 'cases', mode: 'transaction', name: 'split: a Parse error arrives before the rest of its batch is sent' },
  { file: 'cases', mode: 'statement', name: 'split: a Parse error arrives before the rest of its batch is sent' },
  { file: 'cases', mode: 'replica', name: 'split: a Parse error arrives before the rest of its batch is sent' },
  { file: 'items', mode: 'transaction', name: "item 2: the unnamed statement survives Sync after another client's error" },
  { file: 'items', mode: 'statement', name: "item 2: the unnamed statement survives Sync after another client's error" },
  { file: 'items', mode: 'replica', name: "item 2: the unnamed statement survives Sync after another client's error" },
  { file: 'items', mode: 'transaction', name: "item 2: the unnamed statement survives Sync after another client's named statement" },
  { file: 'items', mode: 'statement', name: "item 2: the unnamed statement survives Sync after another client's named statement" },
  { file: 'items', mode: 'transaction', name: 'item 3: in a failed transaction block, a duplicate statement name gets the aborted-transaction error' },
  { file: 'items', mode: 'replica', name: 'item 3: in a failed transaction block, a duplicate statement name gets the aborted-transaction error' },
  { file: 'items', mode: 'transaction', name: 'item 4: set_config parsed and bound but never executed changes nothing' },
  { file: 'items', mode: 'statement', name: 'item 4: set_config parsed and bound but never executed changes nothing' },
  { file: 'items', mode: 'replica', name: 'item 4: set_config parsed and bound but never executed changes nothing' },
  { file: 'items', mode: 'replica', name: 'item 8: extended COPY FROM STDIN, then a Query right after CopyDone' },
  { file: 'items', mode: 'replica', name: 'item 13: recovery state and transaction_read_only as on the primary' },
  { file: 'items', mode: 'session', name: "item 17: a client's own DEALLOCATE name and DISCARD ALL end its statements" },
  { file: 'items', mode: 'transaction', name: "item 17: a client's own DEALLOCATE name and DISCARD ALL end its statements" },
  { file: 'items', mode: 'statement', name: "item 17: a client's own DEALLOCATE name and DISCARD ALL end its statements" },
  { file: 'items', mode: 'replica', name: "item 17: a client's own DEALLOCATE name and DISCARD ALL end its statements" },
  { file: 'items', mode: 'transaction', name: 'item 18: an error before any Sync or Flush is sent at once' },
  { file: 'items', mode: 'statement', name: 'item 18: an error before any Sync or Flush is sent at once' },
  { file: 'items', mode: 'replica', name: 'item 18: an error before any Sync or Flush is sent at once' },
];

export function isKnownFailing(file: string, name: string, mode: Mode): boolean {
  return KNOWN_FAILING.some((k) => k.file === file && k.name === name && k.mode === mode);
}
