/**
 * One attempt as the runner tracks it, from its claim until its outcome is recorded: what the
 * heartbeat renews, the reaper spares, shutdown hands back, and a slot counts.
 *
 * Made for every job claimed (a claim of fast jobs fetches hundreds ahead), so what only some
 * attempts need is made on first use: the AbortController (an AbortSignal costs microseconds to
 * make, and a job answered from the cache, or canceled while queued, never calls the heuristic)
 * and the promise shutdown waits on.
 */
import type { Claim, JobRow } from '../db/sql/rows.js';
import { Hold } from './durable-write.js';

export class TrackedAttempt {
  /**
   * Aborted once this attempt may no longer write its outcome: its lease was found taken, the
   * job finished elsewhere (canceled), or shutdown's grace period is over. Until then an
   * outcome that cannot be written for want of a database is retried (durable-write.ts).
   */
  readonly held = new Hold();
  started = false;
  /** Holding a slot: from its start until the heuristic call has returned. */
  inSlot = false;
  /** True once the outcome is recorded (or deliberately dropped). */
  settled = false;
  /** Why the attempt was aborted (timed out, canceled, lease lost, shutdown); undefined: it was not. */
  abortReason: Error | undefined;
  /** Told when the attempt is aborted: ends the wait for a heuristic that ignores its signal. */
  onAbort: ((reason: Error) => void) | undefined;
  #controller: AbortController | undefined;
  #done: Promise<void> | undefined;
  #markDone: (() => void) | undefined;

  constructor(readonly job: JobRow) {}

  /** The signal handed to the heuristic: aborted with the attempt. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.abortReason) this.#controller.abort(this.abortReason);
    }
    return this.#controller.signal;
  }

  /** Aborts the attempt (the first reason stays): its signal fires, and `onAbort` is told. */
  abort(reason: Error): void {
    if (this.abortReason) return;
    this.abortReason = reason;
    this.#controller?.abort(reason);
    this.onAbort?.(reason);
  }

  /**
   * Aborts the attempt and gives up its write: its claim is lost, its job finished elsewhere, or
   * shutdown's grace period is over.
   */
  abandon(reason: Error): void {
    this.abort(reason);
    this.held.abort();
  }

  /** Resolves when settled. */
  get done(): Promise<void> {
    this.#done ??= this.settled
      ? Promise.resolve()
      : new Promise<void>((resolve) => (this.#markDone = resolve));
    return this.#done;
  }

  /** The outcome is recorded (or deliberately dropped): `done` resolves. */
  settle(): void {
    this.settled = true;
    this.#markDone?.();
  }
}

/** What the attempt's fenced writes match on. */
export const claimOf = (job: JobRow): Claim => ({ id: job.id, attempts: job.attempts });
