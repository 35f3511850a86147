/**
 * Typed errors that decide what happens to a job, and the shape a failure is stored in.
 */

/** Thrown by a heuristic when retrying cannot help (bad input it cannot handle): fail at once. */
export class NonRetryableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'NonRetryableError';
  }
}

/** The attempt's AbortSignal reason when it ran past JOB_TIMEOUT_MS. */
export class AttemptTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`heuristic did not answer within ${timeoutMs} ms`);
    this.name = 'AttemptTimeoutError';
  }
}

/** The attempt's AbortSignal reason when its lease was lost (another process took the job). */
export class LeaseLostError extends Error {
  constructor() {
    super('lease lost: the job was reclaimed by another worker');
    this.name = 'LeaseLostError';
  }
}

/** The attempt's AbortSignal reason when the job was canceled (or finished) while it ran. */
export class JobCanceledError extends Error {
  constructor() {
    super('the job was canceled while this attempt ran; its result is discarded');
    this.name = 'JobCanceledError';
  }
}

/** The attempt's AbortSignal reason when the process is shutting down. */
export class ShutdownError extends Error {
  constructor() {
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

/** What `error` holds on a job whose attempt failed. */
export interface JobError {
  /** `timeout` | `heuristic_error` | `non_retryable` | `lease_expired` | `result_not_stored` */
  code: string;
  message: string;
  /** The attempt that failed, from 1. */
  attempt: number;
}

/** Normalises anything thrown into an Error, so the loop and the logs handle one shape. */
export function coerceError(value: unknown): Error {
  if (value instanceof Error) return value;
  return new Error(typeof value === 'string' ? value : `non-error thrown: ${String(value)}`);
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
