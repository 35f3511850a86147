/**
 * Observed heuristic attempt durations (exponentially weighted mean), one input of the
 * Retry-After estimate (eta.ts).
 */
export class AttemptStats {
  private mean: number;

  /** @param initialMs assumed duration until the first attempt is observed. @defaultValue 1000 */
  constructor(initialMs = 1000) {
    this.mean = initialMs;
  }

  record(durationMs: number): void {
    this.mean = 0.8 * this.mean + 0.2 * durationMs;
  }

  get meanMs(): number {
    return this.mean;
  }
}
