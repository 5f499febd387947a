// The fuzz properties' harness (test/host/fuzz-*.test.ts): attempt() runs one call and requires
// a value or one of the allowed typed errors (a DevmapperError, never a TypeError / RangeError /
// SyntaxError) within a time budget; check() runs a property; plus arbitraries of any type.
// Lives under helpers/ so ava's default glob does not take it for a test file.
//
// FUZZ_SCALE=<factor> multiplies every property's run count (e.g. 10 for a long soak).
import type { ExecutionContext } from 'ava';
import fc from 'fast-check';
import { performance } from 'node:perf_hooks';
import { DevmapperError } from '../../../src/errors.js';

const SCALE = Math.max(1, Number(process.env.FUZZ_SCALE ?? '1') || 1);
export const runs = (n: number): number => Math.round(n * SCALE);

/**
 * Wall-clock budget of one call: inputs are small, so anything slower is a loop gone wrong. A
 * call over budget is timed again (twice at most) before it counts as a failure, so that a GC
 * pause or a busy machine does not fail the run, while a call that really spins still does.
 */
const BUDGET_MS = 100;
const RETIMES = 2;

export type ErrorClass = abstract new (...args: never[]) => Error;
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: DevmapperError };

/**
 * Calls `fn` and classifies what happened. Throws (failing the property, so fast-check shrinks
 * the input) when `fn` throws anything but one of the `allowed` typed errors, or takes longer
 * than BUDGET_MS.
 */
export function attempt<T>(fn: () => T, allowed: readonly ErrorClass[]): Outcome<T> {
  const started = performance.now();
  let outcome: Outcome<T>;
  try {
    outcome = { ok: true, value: fn() };
  } catch (caught) {
    const e: unknown = caught;
    if (!(e instanceof DevmapperError) || !allowed.some((c) => e instanceof c)) {
      const kind = e instanceof Error ? e.constructor.name : typeof e;
      const message = e instanceof Error ? e.message : String(e);
      throw new Error(`threw ${kind} (expected a value or ${allowed.map((c) => c.name).join(' / ')}): ${message}`, {
        cause: e,
      });
    }
    if (typeof e.code !== 'string' || e.code === '') throw new Error(`${e.name} without a string code`);
    outcome = { ok: false, error: e };
  }
  let ms = performance.now() - started;
  for (let i = 0; i < RETIMES && ms > BUDGET_MS; i++) {
    const again = performance.now();
    try {
      fn();
    } catch {
      // classified above
    }
    ms = performance.now() - again;
  }
  if (ms > BUDGET_MS)
    throw new Error(`call took ${ms.toFixed(1)} ms, over the ${BUDGET_MS} ms budget, ${RETIMES + 1} times`);
  return outcome;
}

export function value<T>(outcome: Outcome<T>, what: string): T {
  if (!outcome.ok) throw new Error(`${what}: expected a value, got ${outcome.error.name}: ${outcome.error.message}`);
  return outcome.value;
}

export function failure(outcome: Outcome<unknown>, cls: ErrorClass, what: string): DevmapperError {
  if (outcome.ok) throw new Error(`${what}: expected ${cls.name}, got a value ${show(outcome.value)}`);
  const error: DevmapperError = outcome.error;
  if (!(error instanceof cls)) throw new Error(`${what}: expected ${cls.name}, got ${(error as Error).name}`);
  return error;
}

export function show(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x)) ?? String(v);
  } catch {
    return typeof v;
  }
}

/** Runs one property `numRuns` times and logs how many cases were run. */
export function check<T>(
  t: ExecutionContext,
  arb: fc.Arbitrary<T>,
  numRuns: number,
  predicate: (input: T) => void,
): number {
  let cases = 0;
  const started = performance.now();
  fc.assert(
    fc.property(arb, (input) => {
      cases++;
      predicate(input);
    }),
    { numRuns, includeErrorInReport: true },
  );
  t.log(`${cases} cases in ${(performance.now() - started).toFixed(0)} ms`);
  t.true(cases >= numRuns);
  return cases;
}

/** Values of every type, hostile ones included (bigint, boxed, null-prototype, sparse...). */
export const anyValue = fc.anything({
  withBigInt: true,
  withBoxedValues: true,
  withNullPrototype: true,
  withMap: true,
  withSet: true,
  withTypedArray: true,
  withDate: true,
  withSparseArray: true,
  withObjectString: true,
  maxDepth: 2,
});

/** Mostly `arb`, sometimes a value of any type. */
export function mostly<T>(arb: fc.Arbitrary<T>): fc.Arbitrary<unknown> {
  return fc.oneof({ weight: 4, arbitrary: arb as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: anyValue });
}

export const U64_MAX = (1n << 64n) - 1n;
export const U32_MAX = 0xffff_ffff;
export const u64 = fc.bigInt({ min: 0n, max: U64_MAX });
export const u32 = fc.integer({ min: 0, max: U32_MAX });
export const align8 = (n: number): number => Math.ceil(n / 8) * 8;
export const inU64 = (n: unknown): boolean => typeof n === 'bigint' && n >= 0n && n <= U64_MAX;
