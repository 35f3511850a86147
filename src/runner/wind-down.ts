/**
 * The runner's attempts at shutdown, once it has stopped claiming: those still waiting for a
 * slot are handed back at once; running ones get up to the grace period to finish; the rest are
 * aborted and handed back too, attempts not counted.
 */
import type { Logger } from '../log.js';
import { ShutdownError } from './errors.js';
import type { OutcomeRecorder } from './record.js';
import { type TrackedAttempt, claimOf } from './tracked.js';

export interface WindDownOptions {
  /** The runner's attempts now (they leave as their outcomes are written). */
  attempts: () => TrackedAttempt[];
  graceMs: number;
  recorder: Pick<OutcomeRecorder, 'handBack'>;
  log: Logger;
}

/** Resolves when no attempt holds a lease any more. */
export async function windDown(opts: WindDownOptions): Promise<void> {
  const { recorder, graceMs } = opts;
  // Waiting for a slot: handed back in one statement.
  const waiting = opts.attempts().filter((a) => !a.started);
  await recorder.handBack(
    waiting.map((a) => claimOf(a.job)),
    'could not hand back queued jobs; their leases will expire',
  );
  for (const a of waiting) a.settle();
  const finished = Promise.all(opts.attempts().map((a) => a.done));
  let graceTimer: NodeJS.Timeout | undefined;
  const graceOver = new Promise((resolve) => (graceTimer = setTimeout(resolve, graceMs)));
  await Promise.race([finished, graceOver]);
  clearTimeout(graceTimer);
  const interrupted = opts.attempts().filter((a) => !a.settled);
  if (interrupted.length > 0) {
    opts.log.warn(
      { jobs: interrupted.length, graceMs },
      'grace period over: handing running jobs back',
    );
  }
  // Handed back in one statement, not one per attempt as each one's abort is recorded: with
  // 10,000 attempts in flight those queued 10,000 statements on the pool at once, most of
  // them timed out waiting for a connection, and their jobs stayed running until their
  // leases expired. If that statement fails, each attempt hands its own job back.
  const handedBack = recorder.handBack(
    interrupted.map((a) => claimOf(a.job)),
    'could not hand the interrupted jobs back together',
  );
  for (const a of interrupted) {
    // An outcome still waiting for the database is given up: the lease expires, it reruns.
    a.abandon(new ShutdownError(handedBack));
  }
  await Promise.all(interrupted.map((a) => a.done));
}
