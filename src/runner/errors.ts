/**
 * Why an attempt's AbortSignal fired, and how a failed attempt is stored on its job.
 */
import type { JobError } from '../db/sql/rows.js';
import { NonRetryableError } from '../heuristic/errors.js';

/** The attempt ran past JOB_TIMEOUT_MS. */
export class AttemptTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`heuristic did not answer within ${timeoutMs} ms`);
    this.name = 'AttemptTimeoutError';
  }
}

/** The attempt's lease was lost (another process took the job). */
export class LeaseLostError extends Error {
  constructor() {
    super('lease lost: the job was reclaimed by another worker');
    this.name = 'LeaseLostError';
  }
}

/** The job was canceled (or finished elsewhere) while the attempt ran. */
export class JobCanceledError extends Error {
  constructor() {
    super('the job was canceled while this attempt ran; its result is discarded');
    this.name = 'JobCanceledError';
  }
}

/** The process is shutting down. */
export class ShutdownError extends Error {
  /**
   * @param handedBack resolves true once the runner has handed this attempt's job back together
   * with the others interrupted (one statement for all); false: the attempt hands it back itself.
   */
  constructor(readonly handedBack: Promise<boolean> = Promise.resolve(false)) {
    super('worker shutting down');
    this.name = 'ShutdownError';
  }
}

/**
 * The attempt finished but its answer could not be stored (an error retrying the write would
 * not fix, e.g. a constraint or a trigger refusing it): the job is handed back and retried.
 */
export class ResultNotStoredError extends Error {
  constructor(cause: unknown) {
    super("the attempt's result could not be stored; the job is retried", { cause });
    this.name = 'ResultNotStoredError';
  }
}

export function jobErrorFrom(err: Error, attempt: number): JobError {
  if (err instanceof AttemptTimeoutError) return { code: 'timeout', message: err.message, attempt };
  if (err instanceof NonRetryableError) {
    return { code: 'non_retryable', message: err.message, attempt };
  }
  if (err instanceof ResultNotStoredError) {
    return { code: 'result_not_stored', message: err.message, attempt };
  }
  return { code: 'heuristic_error', message: err.message || err.name, attempt };
}
