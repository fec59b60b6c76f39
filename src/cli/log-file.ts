/**
 * log_file: log lines appended to a file instead of written to standard
 * output, as PgBouncer's logfile. The file is kept open; after it has been
 * rotated (moved away), SIGHUP makes pgmux open a new one at the same path.
 */
import pino from 'pino';
import { ConfigError } from '../config/errors.ts';

export interface LogFile {
  /** Where the logger writes. */
  stream: NodeJS.WritableStream;
  /** Opens the path again, for log rotation. */
  reopen(): void;
  /** Writes out what is buffered; for the last lines before exit. */
  flush(): void;
}

/** Opens (creating if needed) the log file; a path that cannot be opened is a configuration mistake. */
export function openLogFile(file: string): LogFile {
  let boom: ReturnType<typeof pino.destination>;
  try {
    // Synchronous writes: a line is in the file when the call returns, so
    // nothing is lost when pgmux exits right after logging it.
    boom = pino.destination({ dest: file, append: true, sync: true });
  } catch (err) {
    throw new ConfigError(`log_file "${file}": ${(err as Error).message}`);
  }
  return {
    stream: boom as unknown as NodeJS.WritableStream,
    reopen: () => boom.reopen(),
    flush: () => boom.flushSync(),
  };
}
