/**
 * What the messages of one extended-protocol run did to a client's names
 * (statements prepared or closed, the unnamed statement), as pgmux
 * recorded it when it sent them. When the server fails a message it skips
 * the rest of the run up to Sync; pgmux then undoes those messages'
 * effects, the last first, so the names are what PostgreSQL has. Each undo
 * restores only what nothing later has changed since (a later run may have
 * set it again before this run's error arrived).
 */
export class RunUndo {
  private log: (() => void)[] = [];

  /** A Sync was sent: what follows is another run. */
  next(): void {
    this.log = [];
  }

  /** Records one message's undo; returns what to call if the server skips or fails that message. */
  record(undo: () => void): () => void {
    const log = this.log;
    const mark = log.length;
    log.push(undo);
    return () => {
      for (let i = log.length - 1; i >= mark; i--) log[i]();
      if (log.length > mark) log.length = mark;
    };
  }
}

/** A value with the version of its last change, so an undo can tell whether anything changed it since. */
export class Versioned<T> {
  value: T;
  private version = 0;
  private static counter = 0;

  constructor(value: T) {
    this.value = value;
  }

  /** Sets the value for good: nothing will undo this change (earlier undos no longer apply). */
  put(value: T): void {
    this.value = value;
    this.version = ++Versioned.counter;
  }

  /** Sets the value; returns the undo of this change. */
  set(value: T): () => void {
    const before = this.value;
    const beforeVersion = this.version;
    const mine = ++Versioned.counter;
    this.value = value;
    this.version = mine;
    return () => {
      if (this.version !== mine) return;
      this.value = before;
      this.version = beforeVersion;
    };
  }
}
