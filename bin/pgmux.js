#!/usr/bin/env node
// pgmux runs from its bundle in dist/ (npm run build; npm ci makes it), or
// from its TypeScript sources by Node's own type stripping when there is none.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

// pgmux needs Node.js 22.18 or newer. A checkout has one of its own: the
// `node` devDependency that npm scripts and npx run on. pgmux run from
// anywhere else (npm link, npm install -g .) by an older `node` on the PATH
// runs itself on that one instead.
const [major, minor] = process.versions.node.split('.').map(Number);
const tooOld = major < 22 || (major === 22 && minor < 18);
const ownNode = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
if (tooOld && !existsSync(ownNode)) {
  console.error(`pgmux needs Node.js 22.18 or newer (this is ${process.version}).`);
  process.exit(1);
}

// V8 flags pgmux runs with, given to node itself, so pgmux runs itself again
// with them. The SQL parser is a large WebAssembly module: compiled by the
// baseline compiler only, it parses as fast and peak memory stays a fifth of
// what the optimizing compiler's background work costs. A small young
// generation keeps an idle client at a few kilobytes (10,000 idle clients
// in under 200 MB) at no cost to throughput, since the hot path allocates
// little.
const FLAGS = ['--liftoff-only', '--max-semi-space-size=4'];
if (tooOld || !process.execArgv.includes(FLAGS[0])) {
  const node = tooOld ? ownNode : process.execPath;
  // An older node's own flags may mean nothing to the newer one.
  const execArgv = tooOld ? [] : process.execArgv;
  const child = spawn(node, [...FLAGS, ...execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  // Every signal pgmux acts on goes on to it: SIGQUIT and SIGUSR2 would
  // otherwise end this process alone and leave pgmux running, and SIGUSR1
  // would open this process's inspector.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal === null ? 1 : 128 + (os.constants.signals[signal] ?? 0))));
} else {
  // SIGUSR1 is pgmux's PAUSE, never Node's inspector (a debugging port
  // anyone on the host could attach to): with a listener from the first
  // moment, Node does not open it while pgmux starts either.
  process.on('SIGUSR1', () => {});
  const bundle = new URL('../dist/cli.js', import.meta.url);
  await import(existsSync(bundle) ? bundle.href : '../src/cli.ts');
}
