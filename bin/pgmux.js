#!/usr/bin/env node
// pgmux's sources are TypeScript run by Node's own type stripping.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  console.error(`pgmux needs Node.js 22.18 or newer (this is ${process.version}).`);
  process.exit(1);
}

// The SQL parser is a large WebAssembly module. Compiled by V8's baseline
// compiler only, it parses as fast and pgmux's peak memory stays a fifth of
// what the optimizing compiler's background work costs; the flag must be
// given to node itself, so pgmux runs itself again with it.
if (!process.execArgv.includes('--liftoff-only')) {
  const child = spawn(process.execPath, ['--liftoff-only', ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal === null ? 1 : 128)));
} else {
  await import('../src/cli.ts');
}
