/**
 * Domain errors: what the use-cases and authentication refuse, and why. They know nothing of
 * HTTP; the HTTP layer maps each to a status in one place (http/problem.ts).
 */

/**
 * No such job, batch, webhook or delivery for this client (missing, someone else's, or a
 * malformed id).
 */
export class NotFoundError extends Error {
  constructor(
    readonly kind: 'job' | 'batch' | 'webhook' | 'delivery',
    readonly id: string,
  ) {
    super(`No ${kind} with id "${id}".`);
    this.name = 'NotFoundError';
  }
}

/**
 * No such job or batch any more: its id (a UUIDv7) was made longer ago than the retention
 * period, so it was deleted after it finished (jobs/gone.ts).
 */
export class GoneError extends Error {
  constructor(
    readonly kind: 'job' | 'batch',
    readonly id: string,
    readonly createdAt: Date,
    readonly retentionMs: number,
  ) {
    const retention = retentionText(retentionMs);
    super(
      `${kind === 'job' ? 'Job' : 'Batch'} ${id} was created at ${createdAt.toISOString()}, ` +
        `longer ago than the retention period of ${retention}: finished ${kind}s are deleted ` +
        `${retention} after they finish, so its results are no longer available.`,
    );
    this.name = 'GoneError';
  }

  get retentionDays(): number {
    return Math.round((this.retentionMs / DAY_MS) * 100) / 100;
  }
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** "7 days", "1 day", "1.5 days". */
export function retentionText(retentionMs: number): string {
  const days = Math.round((retentionMs / DAY_MS) * 100) / 100;
  return `${days} day${days === 1 ? '' : 's'}`;
}

/** The job is terminal already, so it cannot be canceled. */
export class AlreadyFinishedError extends Error {
  constructor(
    readonly jobId: string,
    readonly status: string,
  ) {
    super(`Job ${jobId} is already ${status}; only pending or running jobs can be canceled.`);
    this.name = 'AlreadyFinishedError';
  }
}

/** Accepting the jobs would pass the client's pending-job cap; nothing was stored. */
export class QuotaExceededError extends Error {
  constructor(
    readonly limit: number,
    readonly jobs: number,
    /** When trying again is worthwhile. */
    readonly retryAfterSeconds: number,
  ) {
    super(
      `Accepting ${jobs === 1 ? 'a job' : `${jobs} jobs`} would exceed your limit of ${limit} ` +
        'pending jobs; nothing was stored. Retry after Retry-After seconds, when some have started.',
    );
    this.name = 'QuotaExceededError';
  }
}

/** The service holds its maximum of pending jobs; nothing was stored. */
/** As many file batches as the process takes at once are being uploaded (each holds a connection). */
export class FileBatchesBusyError extends Error {
  constructor(readonly limit: number) {
    super(
      `${limit} file batch(es) are being uploaded to this process already, the most it takes at ` +
        'once; nothing was stored. Retry after Retry-After seconds.',
    );
    this.name = 'FileBatchesBusyError';
  }
}

export class QueueFullError extends Error {
  constructor(
    readonly limit: number,
    readonly retryAfterSeconds: number,
  ) {
    super(
      `The service holds its maximum of ${limit} pending jobs; nothing was stored. ` +
        'Retry after Retry-After seconds.',
    );
    this.name = 'QueueFullError';
  }
}

/** No API key, or not a valid one. */
export class UnauthorizedError extends Error {
  constructor(
    message: string,
    /** RFC 6750 error code for the challenge, when the request carried something. */
    readonly code?: 'invalid_request' | 'invalid_token',
  ) {
    super(message);
    this.name = 'UnauthorizedError';
  }
}

/** Too many requests with invalid API keys from one address: keys are not checked for a while. */
export class TooManyAuthFailuresError extends Error {
  constructor(readonly retryAfterSeconds: number) {
    super(
      'Too many requests with invalid API keys came from your address; keys are not checked ' +
        'for it until Retry-After seconds have passed.',
    );
    this.name = 'TooManyAuthFailuresError';
  }
}

/** An Idempotency-Key already used with a different request body. */
export class IdempotencyKeyReusedError extends Error {
  constructor(readonly what: 'job' | 'batch') {
    super(
      `This Idempotency-Key was already used for a different ${what} request body. Use a new ` +
        'key for a new request, or resend the original body to get the original result.',
    );
    this.name = 'IdempotencyKeyReusedError';
  }
}

/** Normalises anything thrown into an Error, so loops and logs handle one shape. */
export function coerceError(value: unknown): Error {
  if (value instanceof Error) return value;
  return new Error(typeof value === 'string' ? value : `non-error thrown: ${String(value)}`);
}
