/**
 * One attempt as the runner tracks it, from its claim until its outcome is recorded: what the
 * heartbeat renews, the reaper spares, shutdown hands back, and a slot counts.
 */
import type { Claim, JobRow } from '../db/sql/rows.js';
import { Hold } from './durable-write.js';

export interface TrackedAttempt {
  job: JobRow;
  controller: AbortController;
  /**
   * Aborted once this attempt may no longer write its outcome: its lease was found taken, the
   * job finished elsewhere (canceled), or shutdown's grace period is over. Until then an
   * outcome that cannot be written for want of a database is retried (durable-write.ts).
   */
  held: Hold;
  started: boolean;
  /** Holding a slot: from its start until the heuristic call has returned. */
  inSlot: boolean;
  /** True once the outcome is recorded (or deliberately dropped). */
  settled: boolean;
  /** Resolves when settled. */
  done: Promise<void>;
  markDone: () => void;
}

/** A just-claimed job's attempt: not started, in no slot, not settled. */
export function track(job: JobRow): TrackedAttempt {
  let markDone!: () => void;
  const done = new Promise<void>((resolve) => (markDone = resolve));
  return {
    job,
    controller: new AbortController(),
    held: new Hold(),
    started: false,
    inSlot: false,
    settled: false,
    done,
    markDone,
  };
}

/** The outcome is recorded (or deliberately dropped): `done` resolves. */
export function settle(attempt: TrackedAttempt): void {
  attempt.settled = true;
  attempt.markDone();
}

/** What the attempt's fenced writes match on. */
export const claimOf = (job: JobRow): Claim => ({ id: job.id, attempts: job.attempts });
