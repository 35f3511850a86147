/**
 * Preloaded into a spawned server (`ServerProcess.spawn(env, { clockSkewMs })`) to make its
 * clock wrong: `Date.now()` and `new Date()` run CLOCK_SKEW_MS ahead (negative: behind). The
 * database's clock is untouched, as on a host whose clock drifted. Timers are unaffected.
 */
const skew = Number(process.env.CLOCK_SKEW_MS ?? 0);
const RealDate = Date;

class SkewedDate extends RealDate {
  constructor(...args: unknown[]) {
    if (args.length === 0) super(RealDate.now() + skew);
    // Date's other constructors (a value, or year, month, ...), passed through unchanged.
    else super(...(args as [string | number | Date]));
  }

  static override now(): number {
    return RealDate.now() + skew;
  }
}

globalThis.Date = SkewedDate as DateConstructor;
