/**
 * Generated sessions (generator.ts), each run against PostgreSQL and
 * through pgmux in every mode: the answers must be the same. The seed is
 * fixed; PGMUX_DIFF_RUNS sets the number of sessions per mode (the soak
 * script runs many more) and PGMUX_DIFF_SEED another seed. A failure
 * prints the shrunk session as a script to paste into cases.test.ts.
 */
import { expect, it } from 'vitest';
import fc from 'fast-check';
import { GENERATOR_EXCLUDES, scriptArb } from './generator.ts';
import { differentialSuite, MODES, type Mode } from './modes.ts';
import { isKnownFailing, KNOWN_FAILING } from './known-failing.ts';
import { formFor, skipFor } from './differences.ts';
import { printScript, type Script } from './script.ts';

const SEED = Number(process.env.PGMUX_DIFF_SEED ?? 20260514);
const RUNS = Number(process.env.PGMUX_DIFF_RUNS ?? 30);
/**
 * Shrinking stops this long after the first failure: from then on the
 * property holds without running, so fast-check ends with the smallest
 * failing session found so far (its own time limit would leave a run
 * going in the background).
 */
const SHRINK_MS = Number(process.env.PGMUX_DIFF_SHRINK_MS ?? 45_000);

const fleet = differentialSuite('generated', []);

it('excludes from the generator only shapes whose case is in KNOWN_FAILING or a listed difference, in each mode it names', () => {
  for (const [name, x] of Object.entries(GENERATOR_EXCLUDES)) {
    for (const mode of x.modes) {
      const failing = x.knownFailing.filter((c) => KNOWN_FAILING.some((k) => k.name === c && k.mode === mode) || skipFor(c, mode) !== undefined || formFor(c, mode) !== undefined);
      expect(failing, `GENERATOR_EXCLUDES.${name} in ${mode}: none of its cases fails there any more; put the shape back`).not.toEqual([]);
    }
  }
});

for (const mode of MODES) {
  const name = `generated sessions [${mode}]`;
  (isKnownFailing('generated', name, mode) ? it.fails : it)(
    name,
    async () => {
      let failedAt: number | null = null;
      let smallest: { script: Script; problems: string[] } | null = null;
      const result = await fc.check(
        fc.asyncProperty(scriptArb(mode), async (script: Script) => {
          if (failedAt !== null && Date.now() - failedAt > SHRINK_MS) return true;
          const problems = await fleet.differences(script, mode);
          if (problems.length === 0) return true;
          failedAt ??= Date.now();
          smallest = { script, problems };
          return false;
        }),
        { seed: SEED, numRuns: RUNS },
      );
      if (result.failed) {
        const { script, problems } = smallest ?? { script: result.counterexample?.[0] as Script, problems: [String(result.errorInstance)] };
        throw new Error(
          `${name}: seed ${SEED}, ${result.numRuns} sessions, failed after ${result.numShrinks} shrinks:\n\n${problems.join('\n\n')}\n\n` +
            `the session as a script:\n${printScript({ ...script, name: `from the generator: ${mode}, seed ${SEED}` })}`,
        );
      }
    },
    // Room for the runs, then for shrinking, then some.
    RUNS * 5_000 + SHRINK_MS + 60_000,
  );
}
