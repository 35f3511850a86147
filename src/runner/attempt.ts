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

/** What runAttempt needs of the attempt it runs (tracked.ts). */
export interface Abortable {
  readonly signal: AbortSignal;
  readonly abortReason: Error | undefined;
  onAbort: ((reason: Error) => void) | undefined;
  abort(reason: Error): void;
}

const RETURNED = Promise.resolve();

export async function runAttempt(
  job: JobRow,
  attempt: Abortable,
  deps: AttemptDeps,
): Promise<AttemptResult> {
  const timer = setTimeout(
    () => attempt.abort(new AttemptTimeoutError(deps.timeoutMs)),
    deps.timeoutMs,
  );
  const startedAt = performance.now();
  try {
    // No cache key (the cache off, or not cacheable): no single-flight, and no await for it.
    const key = job.cache_key;
    const flight = key === null ? LEADER : await beginFlight(job, key, deps);
    if (flight.role === 'cached') {
      return noCall({ kind: 'answered', result: flight.result, cached: true }, startedAt);
    }
    if (flight.role === 'follower') return noCall({ kind: 'coalesced' }, startedAt);
    // Canceled while it waited for a slot: the heuristic is not called at all.
    if (attempt.abortReason)
      return noCall({ kind: 'failed', error: attempt.abortReason }, startedAt);
    // The heuristic's answer, or the abort if that comes first: a heuristic that ignores its
    // signal is not waited for (`returned` says when it has really returned).
    let hasReturned = false;
    let onReturned: (() => void) | undefined;
    const outcome = await new Promise<Outcome>((resolve) => {
      const failed = (err: unknown) =>
        resolve({ kind: 'failed', error: attempt.abortReason ?? coerceError(err) });
      attempt.onAbort = failed;
      // Called from a microtask, as before this hook existed: every claimed job is dispatched
      // before any heuristic runs, and a heuristic that throws at once rejects `call`.
      const call = Promise.resolve().then(() => {
        if (attempt.abortReason) throw attempt.abortReason;
        return deps.heuristic.match(job.transaction, attempt.signal);
      });
      call.then(
        (answer) => {
          hasReturned = true;
          onReturned?.();
          try {
            resolve({ kind: 'answered', result: toMatchResult(answer), cached: false });
          } catch (err) {
            failed(err);
          }
        },
        (err: unknown) => {
          hasReturned = true;
          onReturned?.();
          failed(err);
        },
      );
    });
    attempt.onAbort = undefined;
    const returned = hasReturned ? RETURNED : new Promise<void>((r) => (onReturned = r));
    return { outcome, durationMs: performance.now() - startedAt, returned, hasReturned };
  } finally {
    clearTimeout(timer);
  }
}

/** An attempt whose heuristic was not called: nothing to wait for. */
function noCall(outcome: Outcome, startedAt: number): AttemptResult {
  return {
    outcome,
    durationMs: performance.now() - startedAt,
    returned: RETURNED,
    hasReturned: true,
  };
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
