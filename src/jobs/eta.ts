/**
 * Retry-After: when a client polling a job or batch should look again, from the queue ahead of
 * it, the slots serving the queue and the observed heuristic duration (instead of a constant).
 */
import type { BatchRow, JobRow } from '../db/sql/rows.js';
import type { JobStore } from '../db/store.js';
import type { AttemptStats } from '../runner/stats.js';

/** Retry-After is a hint for the next look, not a forecast: never more than this. */
export const MAX_RETRY_AFTER_SECONDS = 60;
/** Counting pending jobs ahead never goes past this many index entries. */
export const AHEAD_CAP = 10_000;
const WORKERS_TTL_MS = 2000;
const PENDING_TTL_MS = 1000;

/**
 * Seconds until a job is likely finished: `ahead` jobs queue before it and `slots` heuristics run
 * at once, each taking `meanMs`; a running job has `elapsedMs` behind it. Clamped to 1..60.
 */
export function estimateSeconds(input: {
  status: 'pending' | 'running';
  ahead: number;
  slots: number;
  meanMs: number;
  elapsedMs?: number;
}): number {
  const ms =
    input.status === 'running'
      ? input.meanMs - (input.elapsedMs ?? 0)
      : input.meanMs * (Math.floor(input.ahead / Math.max(1, input.slots)) + 1);
  return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, Math.ceil(ms / 1000)));
}

/**
 * How far a count of the pending jobs ahead can change `estimateSeconds`: with this many ahead or
 * more, the answer is MAX_RETRY_AFTER_SECONDS, so a count stopped here answers as the whole queue
 * would (0: the answer is the maximum with none ahead, nothing to count). That is
 * MAX_RETRY_AFTER_SECONDS of heuristic time per slot, never more than AHEAD_CAP: for a heuristic
 * of 10 s on 16 slots, 96 jobs, where a fixed cap read 10,000 index entries on every poll of a
 * job deep in a backlog.
 */
export function aheadThatMatters(slots: number, meanMs: number): number {
  if (estimateSeconds({ status: 'pending', ahead: 0, slots, meanMs }) === MAX_RETRY_AFTER_SECONDS) {
    return 0;
  }
  const rounds = Math.ceil((MAX_RETRY_AFTER_SECONDS * 1000) / Math.max(meanMs, 0));
  return Math.min(AHEAD_CAP, Math.max(1, slots) * rounds);
}

export class QueueEstimator {
  private workers = 1;
  /** When `workers` was counted (undefined: never). */
  private workersAt: number | undefined;
  private refreshing: Promise<void> | undefined;
  private pendingCount = 0;
  private pendingAt = 0;
  private addedSinceCount = 0;

  constructor(
    private readonly store: Pick<
      JobStore,
      'countPending' | 'countPendingBefore' | 'countActiveWorkers'
    >,
    private readonly stats: AttemptStats,
    /** Heuristics one runner process runs at once. */
    private readonly concurrency: number,
    /** The clock. @defaultValue Date.now */
    private readonly now: () => number = Date.now,
  ) {}

  /** Retry-After for a job that is not finished. */
  async forJob(row: JobRow): Promise<number> {
    if (row.status === 'running') {
      return estimateSeconds({
        status: 'running',
        ahead: 0,
        slots: 1,
        meanMs: this.stats.meanMs,
        // Both timestamps from the database's clock, not this process's.
        elapsedMs: row.started_at
          ? (row.read_at ?? new Date()).getTime() - row.started_at.getTime()
          : 0,
      });
    }
    return this.pendingBehind(row.seq);
  }

  /** Retry-After for a batch that is not done: until its last pending job (or running ones). */
  async forBatch(batch: BatchRow): Promise<number> {
    if (batch.last_pending_seq === null) {
      return estimateSeconds({ status: 'running', ahead: 0, slots: 1, meanMs: this.stats.meanMs });
    }
    return this.pendingBehind(batch.last_pending_seq);
  }

  /**
   * Retry-After for `own` jobs just submitted (and committed): they queue behind the pending
   * jobs as last counted plus those submitted here since. The count is refreshed in the
   * background at most once a second, so answering a submit costs no query.
   */
  forSubmitted(own: number): number {
    this.addedSinceCount += own;
    const slots = this.workers * this.concurrency;
    const meanMs = this.stats.meanMs;
    // Counted only as far as the count can change an answer: `ahead` below is never less than
    // the count (the jobs added since include `own`), so a count stopped at `cap` answers as
    // the whole queue would, for these slots and this mean.
    const cap = aheadThatMatters(slots, meanMs);
    if (cap > 0 && this.now() - this.pendingAt > PENDING_TTL_MS) {
      this.pendingAt = this.now();
      // The count will include what was committed before it started.
      const included = this.addedSinceCount;
      this.store
        .countPending({ cap })
        .then((n) => {
          this.pendingCount = n;
          this.addedSinceCount -= included;
        })
        .catch(() => undefined); // a stale hint is fine; a later submit counts again
    }
    const ahead = Math.max(0, this.pendingCount + this.addedSinceCount - own);
    return estimateSeconds({ status: 'pending', ahead, slots, meanMs });
  }

  /** Seconds until `ahead` more jobs have started: Retry-After for a refused submit. */
  async forBacklog(ahead: number): Promise<number> {
    const slots = await this.slots();
    return estimateSeconds({ status: 'pending', ahead, slots, meanMs: this.stats.meanMs });
  }

  private async pendingBehind(seq: string): Promise<number> {
    const slots = await this.slots();
    const meanMs = this.stats.meanMs;
    // Counted only as far as the count can change the answer, for the slots as last counted
    // (`countActiveWorkers` at most every WORKERS_TTL_MS).
    const cap = aheadThatMatters(slots, meanMs);
    const ahead = cap > 0 ? await this.store.countPendingBefore(seq, cap) : 0;
    return estimateSeconds({ status: 'pending', ahead, slots, meanMs });
  }

  /**
   * Heuristic slots across all runners: this process's concurrency times the active workers. A
   * count older than WORKERS_TTL_MS is read again in the background, and the answer uses the
   * last one meanwhile: only the first count is waited for. A GET waiting for it paid the count's
   * round trip every 2 s, and the count reads the running jobs' index, dead entries included
   * (19-22 ms against a 0.06 ms Retry-After count on the big table: docs/performance.md, "A big
   * table").
   */
  private async slots(): Promise<number> {
    const counted = this.workersAt;
    if (counted === undefined || this.now() - counted > WORKERS_TTL_MS) {
      this.refreshing ??= this.store
        .countActiveWorkers()
        .then((n) => {
          this.workers = Math.max(1, n);
          this.workersAt = this.now();
        })
        .finally(() => (this.refreshing = undefined));
      if (counted === undefined) await this.refreshing;
      // A failed count in the background leaves the last one; a later answer counts again.
      else this.refreshing.catch(() => undefined);
    }
    return this.workers * this.concurrency;
  }
}
