import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.ts';
import { tempDir } from './helpers/temp.ts';

describe('auth_file mistakes are configuration errors', () => {
  it('a missing auth_file exits 2 with "invalid configuration", before anything is started', async () => {
    const run = await runCli(['--embedded', '--listen', '127.0.0.1:0', '--auth-file', '/nonexistent/userlist.txt']);
    expect(run.stderr).toBe('pgmux: invalid configuration\nauth_file "/nonexistent/userlist.txt" does not exist\n');
    expect(run.code).toBe(2);
  });

  it('every bad line is named with the file and its line, and no secret is quoted', async () => {
    const dir = await tempDir('pgmux-cli-');
    const file = path.join(dir, 'userlist.txt');
    await writeFile(file, '"app" hunter2\n"ok" "fine"\n"bob" "SCRAM-SHA-256$4096:c2FsdA==$AAAA:BBBB"\n', { mode: 0o600 });
    const run = await runCli(['--endpoint', 'main=127.0.0.1:1', '--listen', '127.0.0.1:0', '--auth-file', file]);
    expect(run.code).toBe(2);
    const lines = run.stderr.trim().split('\n');
    expect(lines[0]).toBe('pgmux: invalid configuration');
    expect(lines.slice(1).map((l) => l.split(': ')[0])).toEqual([`${file}:1`, `${file}:3`]);
    expect(lines[2]).toContain('malformed SCRAM verifier');
    for (const secret of ['hunter2', 'c2FsdA', 'AAAA']) expect(run.stderr).not.toContain(secret);
  });
});
