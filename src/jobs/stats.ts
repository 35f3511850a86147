/**
 * Observed heuristic attempt durations (exponentially weighted mean), used to tell polling
 * clients how long to wait (`Retry-After`) instead of a constant.
 */
export class AttemptStats {
  private meanMs: number;

  /** @param initialMs assumed duration until the first attempt is observed. @defaultValue 1000 */
  constructor(initialMs = 1000) {
    this.meanMs = initialMs;
  }

  record(durationMs: number): void {
    this.meanMs = 0.8 * this.meanMs + 0.2 * durationMs;
  }

  /** Seconds a client should wait before polling a job in `status` again, 1..30. */
  retryAfterSeconds(status: string, startedAt: Date | null, now = Date.now()): number {
    const remaining =
      status === 'running' && startedAt ? this.meanMs - (now - startedAt.getTime()) : this.meanMs;
    return Math.min(30, Math.max(1, Math.ceil(remaining / 1000)));
  }
}
