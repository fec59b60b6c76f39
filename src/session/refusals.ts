import { PgError, SqlState } from '../protocol/errors.ts';
import type { BatchInfo } from './batch.ts';
import type { ClientParams } from './params.ts';

/** Session state a batch leaves: state-keeping statements and SETs pgmux cannot follow. */
export function sessionStateOf(info: BatchInfo, params: ClientParams): string | null {
  if (info.sessionState !== null) return info.sessionState;
  for (const s of info.sets) if (!params.tracks(s.name)) return `SET ${s.name}`;
  return null;
}

/** Why pgmux will not send a batch in this pool mode, or null. */
export function refusalFor(
  info: BatchInfo,
  state: string | null,
  opts: { mode: 'session' | 'transaction' | 'statement'; onSessionState: 'pin' | 'error'; pinned: boolean },
): PgError | null {
  if (opts.mode === 'statement' && info.transaction.some((t) => t.startsWith('begin'))) {
    return new PgError(SqlState.FEATURE_NOT_SUPPORTED, 'transaction blocks are not allowed in statement pooling mode', {
      hint: 'Use pool_mode = transaction for this user or endpoint.',
    });
  }
  if (state !== null && opts.mode !== 'session' && opts.onSessionState === 'error' && !opts.pinned) {
    return new PgError(SqlState.FEATURE_NOT_SUPPORTED, `${state} is not allowed in ${opts.mode} pooling mode`, {
      detail: 'It would leave state on a server connection that other clients share.',
      hint: 'Use session pooling for this client, or set on_session_state = pin.',
    });
  }
  return null;
}
