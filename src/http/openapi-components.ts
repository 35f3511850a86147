/**
 * The named pieces of the OpenAPI document that operations refer to: schema and header
 * references, the response headers the service sends, the responses every operation shares,
 * and the tags. openapi.ts assembles the document from them.
 */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
export const json = (schema: Json) => ({ 'application/json': { schema } });
const headerRef = (name: keyof typeof HEADERS) => ({ $ref: `#/components/headers/${name}` });
export const responseRef = (name: keyof typeof RESPONSES) => ({
  $ref: `#/components/responses/${name}`,
});

/** A problem+json response carrying X-Request-Id and the headers named in `withHeaders`. */
export const problem = (description: string, ...withHeaders: (keyof typeof HEADERS)[]) => ({
  description,
  headers: Object.fromEntries(
    [...withHeaders, 'X-Request-Id' as const].map((name) => [name, headerRef(name)]),
  ),
  content: { 'application/problem+json': { schema: ref('Problem') } },
});

/**
 * Every response header the service sends (src/http/respond.ts, problem.ts, middleware.ts and
 * the routes), in `components.headers`; responses refer to them by name.
 */
export const HEADERS = {
  'X-Request-Id': {
    description:
      'The request id: yours from `X-Request-Id` when it is sane (up to 128 of ' +
      '`A-Z a-z 0-9 _ . : -`), else a new UUID. On every answer; the log lines carry it.',
    schema: { type: 'string' },
  },
  Location: {
    description: 'Where to read the resource (a path on this server).',
    schema: { type: 'string' },
  },
  'Content-Location': {
    description: 'The resource this finished representation is of: the same path as Location.',
    schema: { type: 'string' },
  },
  'Retry-After-Poll': {
    description:
      'Seconds until looking again is worthwhile, from the queue ahead, the slots serving it ' +
      'and observed heuristic durations (1..60). Only while not finished.',
    schema: { type: 'integer', minimum: 1, maximum: 60 },
  },
  'Retry-After': {
    description:
      'Seconds to wait before retrying: nothing was done, and trying sooner fails again.',
    schema: { type: 'integer', minimum: 1 },
  },
  ETag: {
    description:
      'Strong tag of this representation; send it as If-None-Match to get 304 while unchanged ' +
      '(or, with `wait`, to be held until it changes).',
    schema: { type: 'string', examples: ['"n3JrYx0cQm0bI6vJt2y8cVhCq1Q"'] },
  },
  Link: {
    description: 'The next page, as `<path?…&cursor=…>; rel="next"`; absent on the last page.',
    schema: { type: 'string' },
  },
  'Preference-Applied': {
    description: 'With `Prefer: wait=N`: the wait honoured, `wait=N` (N at most 60).',
    schema: { type: 'string', examples: ['wait=30'] },
  },
  'Idempotent-Replayed': {
    description: '`true` when an Idempotency-Key replay returned the original resource.',
    schema: { type: 'string', enum: ['true'] },
  },
  'WWW-Authenticate': {
    description:
      'The challenge: `Bearer realm="merchant-normalizer"`, with `error="invalid_request"` ' +
      '(no or malformed key) or `error="invalid_token"` (unknown or revoked key).',
    schema: { type: 'string' },
  },
  Allow: { description: 'The methods this path takes.', schema: { type: 'string' } },
} as const;

/** Headers as route files name them (each a reference into `components.headers`). */
export const headers = {
  Location: headerRef('Location'),
  ContentLocation: headerRef('Content-Location'),
  RetryAfter: headerRef('Retry-After-Poll'),
  RetryAfterRefused: headerRef('Retry-After'),
  ETag: headerRef('ETag'),
  Link: headerRef('Link'),
  PreferenceApplied: headerRef('Preference-Applied'),
  IdempotentReplayed: headerRef('Idempotent-Replayed'),
  RequestId: headerRef('X-Request-Id'),
};

/**
 * Responses every operation shares, in `components.responses`. openApiDocument adds 405 and 500
 * to every operation, and 401 and 429 to every one that needs a key, so no route can forget them.
 */
export const RESPONSES = {
  Unauthorized: problem(
    'No API key, or not a valid one (unknown, mistyped, revoked); see `WWW-Authenticate`.',
    'WWW-Authenticate',
  ),
  TooManyFailedAuthentications: problem(
    'Too many failed authentications from your address (AUTH_FAILURES_PER_MINUTE): a key ' +
      'this process has not verified before waits Retry-After seconds.',
    'Retry-After',
  ),
  MethodNotAllowed: problem(
    'The path does not take this method; `Allow` lists those it does. (OpenAPI has no place ' +
      "for a path's own answers, so every operation lists it.)",
    'Allow',
  ),
  InternalError: problem(
    'A bug: the body says only "Internal Server Error"; the log has the details under the ' +
      'X-Request-Id.',
  ),
};

/** The tags, in the order Swagger UI shows them; every operation has one. */
export const TAGS = [
  {
    name: 'Jobs',
    description: 'Submit one transaction; read, long-poll, list and cancel its job.',
  },
  {
    name: 'Batches',
    description:
      'Submit up to 1000 transactions at once, all or nothing; follow their progress and read ' +
      'the results in submission order.',
  },
  {
    name: 'Stats',
    description:
      'Counts, throughput and latency of your jobs over a recent window (the dashboard).',
  },
  {
    name: 'Webhooks',
    description:
      'Signed HTTP callbacks (Standard Webhooks) for finished jobs and batches: endpoints, ' +
      'secrets, the delivery log, redelivery; and, under `webhooks`, what a receiver is sent.',
  },
  { name: 'Events', description: 'Your events as a Server-Sent Events stream, resumable.' },
  {
    name: 'Operations',
    description: 'Liveness, readiness and Prometheus metrics, for orchestrators and monitoring.',
  },
] as const;
export type Tag = (typeof TAGS)[number]['name'];
