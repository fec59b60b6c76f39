/**
 * What the supervisor and its workers say to each other over Node's IPC
 * channel (structured-clone serialisation). Link messages go through the
 * supervisor: a worker never talks to another directly.
 */
import type { Config } from '../config/schema.ts';
import type { HandedConnection } from '../pool/server-connection.ts';

/** The supervisor, as the address of a link message. */
export const SUPERVISOR = -1;

export type LinkMessage =
  /** A question; `from` is filled in by the supervisor on the way. */
  | { pgmux: 'ask'; id: number; from: number; to: number; topic: string; payload: unknown }
  | { pgmux: 'tell'; from: number; to: number; topic: string; payload: unknown }
  /** The answer to ask `id` of `to`. */
  | { pgmux: 'answer'; id: number; to: number; ok: boolean; value?: unknown; error?: string };

export type SupervisorMessage =
  | LinkMessage
  /** Start serving: the worker's configuration (ports already resolved) and index. */
  | { pgmux: 'start'; config: Config; worker: number; count: number; quiet: boolean }
  /** SIGHUP: the configuration read again. */
  | { pgmux: 'reload'; config: Config }
  /** An idle server connection of pool `key` another worker handed over; its socket comes as the message's handle. */
  | { pgmux: 'take-over'; key: string; conn: HandedConnection };

export type WorkerMessage =
  | LinkMessage
  /** Ready for its 'start' (sent first: a message before the listener is attached would be lost). */
  | { pgmux: 'hello' }
  /** Listening: where (port 0 resolved). */
  | { pgmux: 'listening'; tcp: { host: string; port: number }[]; metrics: { host: string; port: number } | null }
  /** It could not start: why. */
  | { pgmux: 'failed'; error: string }
  /** The admin console's SHUTDOWN: the supervisor stops every worker. */
  | { pgmux: 'shutdown'; mode: string }
  /** An idle server connection of pool `key` for worker `to`, its socket as the message's handle: its grant moves with it. */
  | { pgmux: 'hand-over'; key: string; to: number; conn: HandedConnection };

export function isPgmuxMessage(m: unknown): m is { pgmux: string } {
  return typeof m === 'object' && m !== null && typeof (m as { pgmux?: unknown }).pgmux === 'string';
}
