// Number formats the benchmark report shares: a duration in µs as a readable figure (µs or ms)
// and one median over another as a ratio ("1.23×").

/** A duration in µs, as 12.3 µs / 123 µs / 1.23 ms / 12 ms. */
export const fmt = (us: number): string =>
  us >= 10_000
    ? `${(us / 1000).toFixed(0)} ms`
    : us >= 1000
      ? `${(us / 1000).toFixed(2)} ms`
      : us >= 100
        ? `${us.toFixed(0)} µs`
        : `${us.toFixed(1)} µs`;

/** a ÷ b as "1.23×" ("n/a" when b is not positive). */
export const ratio = (a: number, b: number): string => (b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a');
