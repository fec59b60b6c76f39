// The build: pgmux's TypeScript bundled into dist/ as plain JavaScript. A
// bundle loads without Node's type stripper and as one module instead of
// a few hundred, which is a quarter of an idle pgmux's memory. Libraries
// loaded only when used stay outside it, loaded from node_modules. A
// worker process (workers > 1) starts from an entry of its own.
export default {
  input: { cli: 'src/cli.ts', worker: 'src/workers/worker-main.ts' },
  platform: 'node',
  external: [/^node:/, 'pg', 'postgres', 'prom-client', 'pino-pretty', 'libpg-query', 'ioredis'],
  output: { dir: 'dist', format: 'esm', sourcemap: true, chunkFileNames: '[name].js' },
};
