// A worker process, forked by the supervisor (workers > 1). As in cli.ts,
// SIGUSR1 gets a listener before any other module is loaded: it is
// pgmux's PAUSE, never Node's inspector.
process.on('SIGUSR1', () => {});

await import('./worker-run.ts');
