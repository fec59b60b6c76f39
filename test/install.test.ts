import { execFileSync } from 'node:child_process';
import { copyFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.ts';
import { tempDir } from './helpers/temp.ts';

const repo = path.resolve(import.meta.dirname, '..');

/** Every `node` on the PATH (and the distribution's) older than pgmux needs, as npm on such a machine runs. */
function olderNodes(): string[] {
  const found = new Set<string>();
  for (const dir of [...(process.env.PATH ?? '').split(path.delimiter), '/usr/bin', '/usr/local/bin']) {
    const node = path.join(dir, 'node');
    try {
      const [major, minor] = execFileSync(node, ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim().split('.').map(Number);
      if (major < 22 || (major === 22 && minor < 18)) found.add(node);
    } catch {
      // Not there.
    }
  }
  return [...found];
}

const oldNode = olderNodes()[0];

/** The npm that comes with the system: its CLI script, run by `oldNode` the way `npm` on such a machine is. */
async function npmCli(): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir.includes('node_modules')) continue;
    try {
      return await realpath(path.join(dir, 'npm'));
    } catch {
      // Not there.
    }
  }
  return undefined;
}

describe.skipIf(oldNode === undefined)(`on a machine whose own Node.js is older (${oldNode})`, () => {
  it('npm ci prints no engine warnings', async () => {
    const npm = await npmCli();
    expect(npm).toBeDefined();
    const dir = await tempDir('pgmux-npm-');
    for (const f of ['package.json', 'package-lock.json', '.npmrc']) await copyFile(path.join(repo, f), path.join(dir, f));
    // --dry-run: npm resolves the whole tree and checks every engine, but installs nothing.
    const out = execFileSync(oldNode!, [npm!, 'ci', '--dry-run', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'], {
      cwd: dir,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PATH: `${path.dirname(oldNode!)}${path.delimiter}${process.env.PATH}` },
    });
    expect(out).toContain('added');
    expect(out).not.toContain('EBADENGINE');
  }, 120_000);

  it('pgmux started by it from anywhere runs on the checkout\'s own Node.js', async () => {
    const dir = await tempDir('pgmux-npm-');
    const version = execFileSync(oldNode!, [path.join(repo, 'bin', 'pgmux.js'), '--version'], { cwd: dir, encoding: 'utf8' });
    expect(version).toMatch(/^pgmux \d+\.\d+\.\d+\n$/);
    // Exit statuses come through the extra process.
    let status = 0;
    try {
      execFileSync(oldNode!, [path.join(repo, 'bin', 'pgmux.js'), '--pool-mode', 'bogus'], { cwd: dir, stdio: 'ignore' });
    } catch (err) {
      status = (err as { status: number }).status;
    }
    expect(status).toBe(2);
  });
});

describe('the pgmux command', () => {
  it('--version from the sources', async () => {
    expect((await runCli(['--version'])).stdout).toMatch(/^pgmux \d+\.\d+\.\d+\n$/);
  });
});
