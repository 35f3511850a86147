/**
 * The OpenAPI 3.1 document: components from the JSON Schemas in schemas.ts (the ones ajv
 * validates requests with), paths from the routes themselves (route.ts), so the docs cannot
 * drift from what the service accepts or serves. The pieces operations share are here.
 */
import { type Route, openApiPaths } from './route.js';
import { ALL_SCHEMAS, MAX_WAIT_SECONDS, waitQuerySchema } from './schemas.js';
import { webhookOperations } from './webhook-schemas.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** `$id` dropped, `$ref: "Name"` pointed at `#/components/schemas/Name`. */
function toComponent(schema: unknown): Json {
  if (Array.isArray(schema)) return schema.map(toComponent);
  if (schema !== null && typeof schema === 'object') {
    const out: Record<string, Json> = {};
    for (const [key, value] of Object.entries(schema)) {
      if (key === '$id') continue;
      out[key] =
        key === '$ref' && typeof value === 'string'
          ? `#/components/schemas/${value}`
          : toComponent(value);
    }
    return out;
  }
  return schema as Json;
}

export const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
export const json = (schema: Json) => ({ 'application/json': { schema } });
export const problem = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: ref('Problem') } },
});

/** Query parameters from a query schema's properties. */
export function queryParameters(schema: { properties: Record<string, object> }) {
  return Object.entries(schema.properties).map(([name, prop]) => {
    const { description, ...rest } = prop as { description?: string };
    return { name, in: 'query', required: false, description, schema: toComponent(rest) };
  });
}

export const idParameter = (what: 'job' | 'batch') => ({
  name: 'id',
  in: 'path',
  required: true,
  description: `The ${what} id.`,
  schema: { type: 'string', format: 'uuid' },
});

export const headers = {
  Location: { description: 'Where to poll.', schema: { type: 'string' } },
  RetryAfter: {
    description:
      'Seconds until looking again is worthwhile, from the queue ahead, the slots serving it ' +
      'and observed heuristic durations (1..60). Only while not finished.',
    schema: { type: 'integer', minimum: 1, maximum: 60 },
  },
  ETag: { description: 'Strong tag of this representation.', schema: { type: 'string' } },
  IdempotentReplayed: {
    description: '`true` when an Idempotency-Key replay returned the original resource.',
    schema: { type: 'string', enum: ['true'] },
  },
  RequestId: { description: 'Echoed or generated request id.', schema: { type: 'string' } },
};

export const submitParameters = [
  {
    name: 'Idempotency-Key',
    in: 'header',
    required: false,
    description:
      'Makes a retried POST safe: the same key and body return the original resource and do no ' +
      'new work; the same key with another body is a 422. Remembered as long as the resource ' +
      '(JOB_RETENTION_DAYS after it finished; at least 24 h).',
    schema: { type: 'string', minLength: 1, maxLength: 257 },
  },
  {
    name: 'Prefer',
    in: 'header',
    required: false,
    description: `\`wait=N\` (N <= ${MAX_WAIT_SECONDS}): hold the answer up to N s; 200 with the finished resource if it finishes in time, else 202.`,
    schema: { type: 'string', examples: ['wait=10'] },
  },
];

export const conditionalParameters = [
  ...queryParameters(waitQuerySchema),
  {
    name: 'If-None-Match',
    in: 'header',
    required: false,
    description:
      'An ETag from an earlier answer: 304 if unchanged. With `wait`, the request is held until ' +
      'the resource differs from it (or is finished).',
    schema: { type: 'string' },
  },
];

/** A missing id created longer ago than the retention period: it expired (jobs/gone.ts). */
export const gone = (what: string) =>
  problem(
    `No such ${what} any more: its id (a UUIDv7) was made longer ago than the retention ` +
      'period (JOB_RETENTION_DAYS), after which finished jobs and batches are deleted. ' +
      '`retention_days` says how long that is.',
  );

export const unauthorized = problem(
  'No API key, or not a valid one (unknown, mistyped, revoked); see `WWW-Authenticate`.',
);

export const common4xx = {
  '400': problem('Invalid query parameter or Idempotency-Key.'),
  '401': unauthorized,
  '503': problem('The database is unreachable; retry after Retry-After.'),
};

export const submitErrors = {
  ...common4xx,
  '400': problem(
    'Invalid Idempotency-Key, malformed JSON, or a body that does not decode as its ' +
      'Content-Encoding says.',
  ),
  '413': problem('Body larger than the limit (or a declared Content-Length over it).'),
  '415': problem('Body is not JSON.'),
  '422': problem('Body does not match the schema (see `errors`), or Idempotency-Key reused.'),
  '429': problem(
    'Accepting it would exceed your pending-job limit (CLIENT_MAX_PENDING); nothing was ' +
      'stored. Retry after Retry-After.',
  ),
  '503': problem(
    'The database is unreachable, or the service holds its maximum of pending jobs ' +
      '(MAX_PENDING_JOBS); nothing was stored. Retry after Retry-After.',
  ),
};

/** Operations anyone may call, without an API key. */
export const open = { security: [] };

/** A GET of a job or batch: long-poll, ETag, 304. */
export function conditionalGet(
  operationId: string,
  summary: string,
  schema: string,
  what: 'job' | 'batch',
) {
  return {
    operationId,
    summary,
    parameters: [idParameter(what), ...conditionalParameters],
    responses: {
      '200': {
        description: `The ${what}.`,
        headers: { ETag: headers.ETag, 'Retry-After': headers.RetryAfter },
        content: json(ref(schema)),
      },
      '304': { description: 'Unchanged since If-None-Match.' },
      '404': problem(`No such ${what}.`),
      '410': gone(what),
      ...common4xx,
    },
  };
}

export function openApiDocument(
  version: string,
  routes: readonly Route[],
): Record<string, unknown> {
  const components = Object.fromEntries(
    ALL_SCHEMAS.map((schema) => [schema.$id, toComponent(schema)]),
  );
  return {
    openapi: '3.1.0',
    info: {
      title: 'Merchant normalizer',
      version,
      summary: 'Asynchronous merchant-name normalization for card transactions.',
      description:
        'Submit a transaction (or a batch of up to 1000), get a job id at once, and poll or ' +
        'long-poll (`?wait=N`) for the merchant, or have finished jobs pushed: signed webhooks ' +
        '(`/webhooks`; payloads under `webhooks`) or a Server-Sent Events stream (`/events`). ' +
        'Errors are RFC 9457 problem+json. Calls about jobs, batches, webhooks and events need ' +
        '`Authorization: Bearer <API key>`.',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    paths: openApiPaths(routes),
    webhooks: webhookOperations(),
    security: [{ apiKey: [] }],
    components: {
      schemas: components,
      securitySchemes: {
        apiKey: {
          type: 'http',
          scheme: 'bearer',
          description:
            'An API key (`mn_…`) from `merchant-normalizer keys create`, or the local key file ' +
            "the embedded start writes. Every job and batch belongs to the key's client; " +
            "another client's are not found (404).",
        },
      },
    },
  };
}
