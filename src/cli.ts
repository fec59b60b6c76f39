// The very first thing pgmux does, before any other module is even loaded
// (a static import would be, so there is none): SIGUSR1 is Node's signal
// to open its inspector, a debugging port anyone on the host could attach
// to, and pgmux's PAUSE. With a listener of its own, Node never opens the
// inspector on it; the server acts on the signal once it runs, and until
// then it does nothing.
process.on('SIGUSR1', () => {});

await import('./cli/main.ts');
