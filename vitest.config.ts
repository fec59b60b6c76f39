import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // All files share one cluster, and pgbench/e2e tests load both cores;
    // running files one at a time keeps timings stable.
    fileParallelism: false,
  },
});
