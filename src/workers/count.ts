import os from 'node:os';
import type { Config } from '../config/schema.ts';

/** How many worker processes `workers` asks for: auto is one per core the process may use. */
export function workerCount(config: Pick<Config, 'workers'>): number {
  return config.workers === 'auto' ? Math.min(255, os.availableParallelism()) : config.workers;
}
