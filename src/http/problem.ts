/**
 * RFC 9457 problem details. Every error response is one of these, rendered by the error
 * middleware; client errors say what was wrong, server errors only their status text. The one
 * map from domain errors to HTTP statuses is `problemOf`.
 */
import {
  AlreadyFinishedError,
  FileBatchesBusyError,
  GoneError,
  IdempotencyKeyReusedError,
  NotFoundError,
  QueueFullError,
  QuotaExceededError,
  TooManyAuthFailuresError,
  UnauthorizedError,
} from '../errors.js';
import {
  DeliveryInFlightError,
  EventExpiredError,
  StreamLimitError,
  WebhookLimitError,
} from '../push/errors.js';
import { UrlRefusedError } from '../push/ssrf.js';

export type FieldError =
  | {
      /** JSON Pointer (RFC 6901) into the request body, e.g. "/amount"; "" is the whole body. */
      pointer: string;
      /** The line of an uploaded file (a file batch) the pointer is about. */
      line?: number;
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
  malformedBody: '/problems/malformed-body',
  unsupportedMediaType: '/problems/unsupported-media-type',
  tooLarge: '/problems/body-too-large',
  notFound: '/problems/not-found',
  gone: '/problems/gone',
  methodNotAllowed: '/problems/method-not-allowed',
  unavailable: '/problems/service-unavailable',
  unauthorized: '/problems/unauthorized',
  tooManyAuthFailures: '/problems/too-many-failed-authentications',
  quotaExceeded: '/problems/pending-quota-exceeded',
  queueFull: '/problems/queue-full',
  webhookLimit: '/problems/webhook-limit',
  deliveryInFlight: '/problems/delivery-in-flight',
  eventExpired: '/problems/event-expired',
  tooManyStreams: '/problems/too-many-streams',
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

/** The problem a domain error stands for; `undefined` for anything that is not one. */
export function problemOf(err: unknown): HttpProblem | undefined {
  if (err instanceof HttpProblem) return err;
  if (err instanceof NotFoundError) return notFound(err.message);
  if (err instanceof GoneError) {
    return new HttpProblem(
      410,
      PROBLEM_TYPES.gone,
      'Gone',
      err.message,
      undefined,
      {},
      {
        retention_days: err.retentionDays,
      },
    );
  }
  if (err instanceof AlreadyFinishedError) {
    return new HttpProblem(
      409,
      PROBLEM_TYPES.jobFinished,
      'Job already finished',
      err.message,
      undefined,
      {},
      { job_status: err.status },
    );
  }
  if (err instanceof QuotaExceededError) {
    return new HttpProblem(
      429,
      PROBLEM_TYPES.quotaExceeded,
      'Too Many Pending Jobs',
      err.message,
      undefined,
      { 'Retry-After': String(err.retryAfterSeconds) },
      { limit: err.limit },
    );
  }
  if (err instanceof FileBatchesBusyError) {
    return new HttpProblem(
      503,
      PROBLEM_TYPES.unavailable,
      'Service Unavailable',
      err.message,
      undefined,
      { 'Retry-After': '5', Connection: 'close' },
    );
  }
  if (err instanceof QueueFullError) {
    return new HttpProblem(503, PROBLEM_TYPES.queueFull, 'Queue Full', err.message, undefined, {
      'Retry-After': String(err.retryAfterSeconds),
    });
  }
  if (err instanceof UnauthorizedError) {
    const challenge = `Bearer realm="merchant-normalizer"${err.code ? `, error="${err.code}"` : ''}`;
    return new HttpProblem(
      401,
      PROBLEM_TYPES.unauthorized,
      'Unauthorized',
      err.message,
      undefined,
      {
        'WWW-Authenticate': challenge,
      },
    );
  }
  if (err instanceof TooManyAuthFailuresError) {
    return new HttpProblem(
      429,
      PROBLEM_TYPES.tooManyAuthFailures,
      'Too Many Failed Authentications',
      err.message,
      undefined,
      { 'Retry-After': String(err.retryAfterSeconds) },
    );
  }
  if (err instanceof IdempotencyKeyReusedError) {
    return new HttpProblem(
      422,
      PROBLEM_TYPES.idempotencyKeyReused,
      'Idempotency-Key reused',
      err.message,
    );
  }
  return pushProblemOf(err);
}

/** The problems of push delivery (webhooks, the event stream). */
function pushProblemOf(err: unknown): HttpProblem | undefined {
  if (err instanceof UrlRefusedError) {
    return new HttpProblem(
      422,
      PROBLEM_TYPES.validation,
      'Invalid webhook',
      `The url is refused: ${err.reason}.`,
      [{ pointer: '/url', detail: `is refused: ${err.reason}` }],
    );
  }
  if (err instanceof WebhookLimitError) {
    return new HttpProblem(
      409,
      PROBLEM_TYPES.webhookLimit,
      'Too Many Webhooks',
      err.message,
      undefined,
      {},
      { limit: err.limit },
    );
  }
  if (err instanceof DeliveryInFlightError) {
    return new HttpProblem(409, PROBLEM_TYPES.deliveryInFlight, 'Delivery In Flight', err.message);
  }
  if (err instanceof StreamLimitError) {
    return new HttpProblem(
      429,
      PROBLEM_TYPES.tooManyStreams,
      'Too Many Event Streams',
      err.message,
      undefined,
      { 'Retry-After': '5' },
      { limit: err.limit },
    );
  }
  if (err instanceof EventExpiredError) {
    return new HttpProblem(410, PROBLEM_TYPES.eventExpired, 'Event Not In Log', err.message);
  }
  return undefined;
}
