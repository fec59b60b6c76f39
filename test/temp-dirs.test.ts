import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeAuthFile } from './helpers/pgmux.ts';
import { removeTempDirs, tempDir } from './helpers/temp.ts';
import { makeTestCerts } from './helpers/tls.ts';

const mode = (p: string) => statSync(p).mode & 0o777;

describe('test files leave nothing behind', () => {
  it('tempDir directories are private and removed with the test file', async () => {
    const a = await tempDir('pgmux-temp-test-');
    const b = await tempDir('pgmux-temp-test-', 0o755);
    expect(mode(a)).toBe(0o700);
    expect(mode(b)).toBe(0o755);
    await removeTempDirs();
    expect(existsSync(a) || existsSync(b)).toBe(false);
  });

  it('a userlist with SCRAM verifiers is readable by its owner alone, and removed', async () => {
    const file = await writeAuthFile();
    expect(mode(file)).toBe(0o600);
    expect(mode(path.dirname(file))).toBe(0o700);
    await removeTempDirs();
    expect(existsSync(path.dirname(file))).toBe(false);
  });

  it('TLS keys are readable by their owners alone, and the CA and its key are removed', async () => {
    const certs = await makeTestCerts([]);
    expect(mode(certs.keyFile)).toBe(0o600);
    expect(mode(path.join(certs.dir, 'ca.key'))).toBe(0o600);
    await removeTempDirs();
    expect(existsSync(certs.dir)).toBe(false);
  });
});
