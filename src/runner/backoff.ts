/**
 * Delay before retry number `attempt` (the attempt that just failed, from 1): exponential from
 * `baseMs`, capped at `maxMs`, with "equal jitter" (half fixed, half random) so retries of jobs
 * that failed together spread out but never come back sooner than half the nominal delay.
 */
export function retryDelayMs(
  attempt: number,
  opts: { baseMs: number; maxMs: number },
  random: () => number = Math.random,
): number {
  const nominal = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(nominal / 2 + random() * (nominal / 2));
}
