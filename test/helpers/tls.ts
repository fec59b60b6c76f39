import { execFile } from 'node:child_process';
import { chmod, chown, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './temp.ts';

const exec = promisify(execFile);

export interface TestCerts {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
}

/**
 * A throw-away CA and a server certificate it signed, made with the openssl
 * command line. The certificate names `names` (wildcards allowed), localhost
 * and 127.0.0.1. Certificates are readable by the postgres OS user, so a
 * test PostgreSQL can use them too; the keys by their owners alone. The
 * directory is removed when the test file ends.
 */
export async function makeTestCerts(names: string[]): Promise<TestCerts> {
  const dir = await tempDir('pgmux-certs-');
  const f = (n: string) => path.join(dir, n);
  const run = (args: string[]) => exec('openssl', args, { cwd: dir });
  await run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=pgmux test CA', '-keyout', f('ca.key'), '-out', f('ca.crt')]);
  await run(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', f('server.key'), '-out', f('server.csr')]);
  const san = ['DNS:localhost', 'IP:127.0.0.1', ...names.map((n) => `DNS:${n}`)].join(',');
  await writeFile(f('ext.cnf'), `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n`);
  await run(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f('ext.cnf'), '-out', f('server.crt')]);
  await chmod(dir, 0o755);
  await chmod(f('server.key'), 0o600);
  await chmod(f('ca.key'), 0o600);
  if (process.getuid?.() === 0) {
    const { stdout } = await exec('id', ['-u', 'postgres']);
    const { stdout: gid } = await exec('id', ['-g', 'postgres']);
    // PostgreSQL refuses a key file it does not own (or that others can read).
    await chown(f('server.key'), Number(stdout.trim()), Number(gid.trim()));
  }
  for (const n of ['ca.crt', 'server.crt']) await chmod(f(n), 0o644);
  return { dir, caFile: f('ca.crt'), certFile: f('server.crt'), keyFile: f('server.key') };
}
