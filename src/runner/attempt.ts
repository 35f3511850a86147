/**
 * One attempt of one job: single-flight first, then the heuristic under a timeout and the
 * attempt's AbortSignal. It writes nothing; it says what happened, as a tagged outcome, and
 * record.ts writes that down.
 */
import { coerceError } from '../errors.js';
import type { Flight } from '../db/sql/cache.js';
import type { JobRow } from '../db/sql/rows.js';
import type { RunnerStore } from '../db/store.js';
import { type Heuristic, type MatchResult, toMatchResult } from '../heuristic/types.js';
import type { Logger } from '../log.js';
import { AttemptTimeoutError } from './errors.js';

export type Outcome =
  /** The heuristic answered (a `null` merchant is an answer), or the cache did (`cached`). */
  | { kind: 'answered'; result: MatchResult; cached: boolean }
  /** The heuristic threw, timed out, or the attempt was aborted (the signal's reason). */
  | { kind: 'failed'; error: Error }
  /** Another job is computing the same cache key: hand this one back; the leader completes it. */
  | { kind: 'coalesced' };

export interface AttemptResult {
  outcome: Outcome;
  durationMs: number;
  /**
   * Resolves when the heuristic has really returned. One that ignores its signal is not waited
   * for to record the outcome, but keeps its slot until then, so `concurrency` is never exceeded.
   */
  returned: Promise<void>;
  /** The heuristic has returned already (or was not called): `returned` is resolved. */
  hasReturned: boolean;
}

export interface AttemptDeps {
  heuristic: Heuristic;
  store: Pick<RunnerStore, 'beginFlight'>;
  timeoutMs: number;
  log: Logger;
}

export async function runAttempt(
  job: JobRow,
  controller: AbortController,
  deps: AttemptDeps,
): Promise<AttemptResult> {
  const signal = controller.signal;
  const timer = setTimeout(
    () => controller.abort(new AttemptTimeoutError(deps.timeoutMs)),
    deps.timeoutMs,
  );
  const startedAt = performance.now();
  const elapsed = () => performance.now() - startedAt;
  try {
    // No cache key (the cache off, or not cacheable): no single-flight, and no await for it.
    const key = job.cache_key;
    const flight = key === null ? LEADER : await beginFlight(job, key, deps);
    if (flight.role === 'cached') {
      const outcome: Outcome = { kind: 'answered', result: flight.result, cached: true };
      return { outcome, durationMs: elapsed(), returned: Promise.resolve(), hasReturned: true };
    }
    if (flight.role === 'follower') {
      const outcome: Outcome = { kind: 'coalesced' };
      return { outcome, durationMs: elapsed(), returned: Promise.resolve(), hasReturned: true };
    }
    // Canceled while it waited for a slot: the heuristic is not called at all.
    const call = Promise.resolve().then(() => {
      signal.throwIfAborted();
      return deps.heuristic.match(job.transaction, signal);
    });
    // Set before the race below settles (its reactions run in the order they were added).
    let hasReturned = false;
    const returned = call.then(
      () => void (hasReturned = true),
      () => void (hasReturned = true),
    );
    let outcome: Outcome;
    try {
      const answer = await Promise.race([call, rejectWhenAborted(signal)]);
      outcome = { kind: 'answered', result: toMatchResult(answer), cached: false };
    } catch (err) {
      outcome = {
        kind: 'failed',
        error: signal.aborted ? coerceError(signal.reason) : coerceError(err),
      };
    }
    return { outcome, durationMs: elapsed(), returned, hasReturned };
  } finally {
    clearTimeout(timer);
  }
}

const LEADER: Flight = { role: 'leader' };

/**
 * Single-flight: a job with a cache key takes the cached answer, or becomes the key's leader,
 * or (another job computes the key right now) a follower. Without the database it runs the
 * heuristic itself: a duplicate call is better than a stuck job.
 */
async function beginFlight(job: JobRow, cacheKey: string, deps: AttemptDeps): Promise<Flight> {
  try {
    return await deps.store.beginFlight({
      cacheKey,
      claim: { id: job.id, attempts: job.attempts },
    });
  } catch (err) {
    deps.log.warn({ err, jobId: job.id }, 'single-flight check failed; running anyway');
    return { role: 'leader' };
  }
}

function rejectWhenAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(coerceError(signal.reason));
    else signal.addEventListener('abort', () => reject(coerceError(signal.reason)), { once: true });
  });
}
