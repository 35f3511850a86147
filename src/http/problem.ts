/**
 * RFC 9457 problem details. Every error response is one of these, rendered by the error
 * middleware; client errors say what was wrong, server errors only their status text.
 */

export type FieldError =
  | {
      /** JSON Pointer (RFC 6901) into the request body, e.g. "/amount"; "" is the whole body. */
      pointer: string;
      detail: string;
    }
  | {
      /** A query parameter's name. */
      parameter: string;
      detail: string;
    };

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail?: string;
  errors?: FieldError[];
  [extension: string]: unknown;
}

/** Relative problem-type URIs; README lists them. */
export const PROBLEM_TYPES = {
  validation: '/problems/validation-error',
  invalidParameter: '/problems/invalid-parameter',
  invalidIdempotencyKey: '/problems/invalid-idempotency-key',
  idempotencyKeyReused: '/problems/idempotency-key-reused',
  jobFinished: '/problems/job-already-finished',
  malformedJson: '/problems/malformed-json',
  unsupportedMediaType: '/problems/unsupported-media-type',
  tooLarge: '/problems/body-too-large',
  notFound: '/problems/not-found',
  gone: '/problems/gone',
  methodNotAllowed: '/problems/method-not-allowed',
  unavailable: '/problems/service-unavailable',
  unauthorized: '/problems/unauthorized',
  quotaExceeded: '/problems/pending-quota-exceeded',
  queueFull: '/problems/queue-full',
} as const;

export class HttpProblem extends Error {
  readonly expose = true;

  constructor(
    readonly status: number,
    readonly type: string,
    readonly title: string,
    readonly detail?: string,
    readonly errors?: FieldError[],
    readonly headers: Record<string, string> = {},
    /** Extension members (RFC 9457 §3.2), e.g. the status of a job that cannot be canceled. */
    readonly extensions: Record<string, unknown> = {},
  ) {
    super(detail ?? title);
    this.name = 'HttpProblem';
  }

  toBody(): ProblemBody {
    return {
      ...this.extensions,
      type: this.type,
      title: this.title,
      status: this.status,
      ...(this.detail !== undefined && { detail: this.detail }),
      ...(this.errors !== undefined && { errors: this.errors }),
    };
  }
}

export const notFound = (detail: string) =>
  new HttpProblem(404, PROBLEM_TYPES.notFound, 'Not Found', detail);
