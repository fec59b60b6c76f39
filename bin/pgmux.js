#!/usr/bin/env node
// pgmux's sources are TypeScript run by Node's own type stripping.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  console.error(`pgmux needs Node.js 22.18 or newer (this is ${process.version}).`);
  process.exit(1);
}
await import('../src/cli.ts');
