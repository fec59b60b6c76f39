// The build: pgmux's TypeScript bundled into dist/ as plain JavaScript. A
// bundle loads without Node's type stripper and as one module instead of
// a few hundred, which is a quarter of an idle pgmux's memory. Libraries
// loaded only when used stay outside it, loaded from node_modules.
export default {
  input: 'src/cli.ts',
  platform: 'node',
  external: [/^node:/, 'pg', 'postgres', 'prom-client', 'pino-pretty', 'libpg-query', 'ioredis'],
  output: { dir: 'dist', format: 'esm', sourcemap: true, chunkFileNames: '[name].js' },
};
