// SQLSTATE codes pgmux itself raises, named as in PostgreSQL's errcodes.txt.
export const SqlState = {
  CONNECTION_FAILURE: '08006',
  SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION: '08001',
  PROTOCOL_VIOLATION: '08P01',
  FEATURE_NOT_SUPPORTED: '0A000',
  INVALID_AUTHORIZATION_SPECIFICATION: '28000',
  INVALID_PASSWORD: '28P01',
  INVALID_CATALOG_NAME: '3D000',
  TOO_MANY_CONNECTIONS: '53300',
  QUERY_CANCELED: '57014',
  ADMIN_SHUTDOWN: '57P01',
  CANNOT_CONNECT_NOW: '57P03',
  UNDEFINED_OBJECT: '42704',
  INTERNAL_ERROR: 'XX000',
  INVALID_SQL_STATEMENT_NAME: '26000',
  SYNTAX_ERROR: '42601',
  INVALID_PARAMETER_VALUE: '22023',
  INSUFFICIENT_PRIVILEGE: '42501',
  DUPLICATE_PREPARED_STATEMENT: '42P05',
  ACTIVE_SQL_TRANSACTION: '25001',
  READ_ONLY_SQL_TRANSACTION: '25006',
  OBJECT_NOT_IN_PREREQUISITE_STATE: '55000',
  CANT_CHANGE_RUNTIME_PARAM: '55P02',
  CONFIG_FILE_ERROR: 'F0000',
} as const;

export type Severity = 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE' | 'DEBUG' | 'INFO' | 'LOG';

export interface ErrorFields {
  severity: Severity;
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

/**
 * An error meant for a client: it carries what an ErrorResponse needs.
 * Thrown by protocol and auth code; the session turns it into the wire message.
 */
export class PgError extends Error {
  readonly code: string;
  readonly severity: Severity;
  readonly detail?: string;
  readonly hint?: string;

  constructor(code: string, message: string, opts: { severity?: Severity; detail?: string; hint?: string } = {}) {
    super(message);
    this.name = 'PgError';
    this.code = code;
    this.severity = opts.severity ?? 'FATAL';
    this.detail = opts.detail;
    this.hint = opts.hint;
  }

  fields(): ErrorFields {
    return { severity: this.severity, code: this.code, message: this.message, detail: this.detail, hint: this.hint };
  }
}

export function protocolViolation(message: string, detail?: string): PgError {
  return new PgError(SqlState.PROTOCOL_VIOLATION, message, { detail });
}
