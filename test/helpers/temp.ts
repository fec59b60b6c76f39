/**
 * Temporary directories for tests, removed when the test file ends. Test
 * files write userlists with SCRAM verifiers, TLS keys and whole clusters
 * under /tmp; nothing of it may outlive the run.
 *
 * Removal is registered twice: as an afterAll hook of the test file that
 * imports this module (vitest evaluates it once per file), and at process
 * exit for a file that dies half way.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';

const made = new Set<string>();

/** A fresh directory under the system temp dir, private to this user unless `mode` says otherwise. */
export async function tempDir(prefix: string, mode = 0o700): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  made.add(dir);
  if (mode !== 0o700) await chmod(dir, mode);
  return dir;
}

/** tempDir for places that cannot wait (synchronous helpers). */
export function tempDirSync(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  made.add(dir);
  return dir;
}

/** Removes every directory made so far. */
export async function removeTempDirs(): Promise<void> {
  const dirs = [...made];
  made.clear();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
}

afterAll(removeTempDirs);
process.once('exit', () => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});
