/**
 * The OpenAPI 3.1 document: components from the JSON Schemas in schemas.ts (the ones ajv
 * validates requests with), paths from the routes themselves (route.ts), so the docs cannot
 * drift from what the service accepts or serves; the named pieces operations share are in
 * openapi-components.ts. No `jsonSchemaDialect`: the default (the OAS 3.1 base dialect, JSON
 * Schema 2020-12) is what the schemas are written in, and Swagger UI warns about any other value.
 */
import { type Route, openApiPaths } from './route.js';
import { ALL_SCHEMAS, MAX_WAIT_SECONDS, waitQuerySchema } from './schemas.js';
import { webhookOperations } from './webhook-schemas.js';

import {
  HEADERS,
  type Json,
  RESPONSES,
  TAGS,
  headers,
  json,
  problem,
  ref,
  responseRef,
} from './openapi-components.js';

export { type Tag, TAGS, headers, json, problem, ref } from './openapi-components.js';

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

/** The 200 (finished within `Prefer: wait`) and 202 of a submit (respond.ts answerSubmit). */
export function submitted(schema: string, accepted: string) {
  return {
    '200': {
      description: 'Finished within `Prefer: wait`.',
      headers: {
        Location: headers.Location,
        'Content-Location': headers.ContentLocation,
        ETag: headers.ETag,
        'Preference-Applied': headers.PreferenceApplied,
        'Idempotent-Replayed': headers.IdempotentReplayed,
      },
      content: json(ref(schema)),
    },
    '202': {
      description: accepted,
      headers: {
        Location: headers.Location,
        ETag: headers.ETag,
        'Retry-After': headers.RetryAfter,
        'Preference-Applied': headers.PreferenceApplied,
        'Idempotent-Replayed': headers.IdempotentReplayed,
      },
      content: json(ref(schema)),
    },
  };
}

/** A 200 page of a cursor-paginated list, with `Link` to the next page. */
export const page = (description: string, schema: string) => ({
  description,
  headers: { Link: headers.Link },
  content: json(ref(schema)),
});

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

export const unauthorized = responseRef('Unauthorized');

export const common4xx = {
  '400': problem('Invalid query parameter or Idempotency-Key.'),
  '401': unauthorized,
  '503': problem('The database is unreachable; retry after Retry-After.', 'Retry-After'),
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
    'Accepting it would exceed your pending-job limit (CLIENT_MAX_PENDING; `limit` says it), ' +
      'or too many failed authentications came from your address (AUTH_FAILURES_PER_MINUTE); ' +
      'nothing was stored. Retry after Retry-After.',
    'Retry-After',
  ),
  '503': problem(
    'The database is unreachable, or the service holds its maximum of pending jobs ' +
      '(MAX_PENDING_JOBS); nothing was stored. Retry after Retry-After.',
    'Retry-After',
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
  const pollHeaders = { ETag: headers.ETag, 'Retry-After': headers.RetryAfter };
  return {
    operationId,
    summary,
    parameters: [idParameter(what), ...conditionalParameters],
    responses: {
      '200': { description: `The ${what}.`, headers: pollHeaders, content: json(ref(schema)) },
      '304': { description: 'Unchanged since If-None-Match.', headers: pollHeaders },
      '404': problem(`No such ${what}.`),
      '410': gone(what),
      ...common4xx,
    },
  };
}

type Schema = { [key: string]: Json };
type Operation = {
  security?: unknown[];
  requestBody?: { content?: Record<string, { schema?: Json }> };
  responses: Record<string, { $ref?: string; headers?: Record<string, unknown> }>;
};

/** The component names a value refers to (`#/components/schemas/Name`). */
function refsIn(value: unknown, into = new Set<string>()): Set<string> {
  if (Array.isArray(value)) for (const v of value) refsIn(v, into);
  else if (value !== null && typeof value === 'object') {
    for (const [key, v] of Object.entries(value)) {
      if (key === '$ref' && typeof v === 'string' && v.startsWith('#/components/schemas/')) {
        into.add(v.slice('#/components/schemas/'.length));
      } else refsIn(v, into);
    }
  }
  return into;
}

/** `schema` with every `additionalProperties: false` dropped, at any depth. */
function opened(schema: Json): Json {
  if (Array.isArray(schema)) return schema.map(opened);
  if (schema === null || typeof schema !== 'object') return schema;
  return Object.fromEntries(
    Object.entries(schema)
      .filter(([key, v]) => !(key === 'additionalProperties' && v === false))
      .map(([key, v]) => [key, opened(v)]),
  );
}

/**
 * The schema components. Request bodies stay as ajv validates them (closed: an unknown field is
 * a 422). Everything else is what the service sends, published open: a client generated from
 * this document must accept a field added later. (The schemas in schemas.ts stay closed, and
 * the tests check answers against those, so an undocumented field still fails a test.)
 */
function schemaComponents(operations: Operation[]): Record<string, Json> {
  const written = Object.fromEntries(
    ALL_SCHEMAS.map((schema) => [schema.$id, toComponent(schema) as Schema]),
  );
  const requests = new Set<string>();
  const pending = [...refsIn(operations.map((op) => op.requestBody ?? null))];
  for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
    if (requests.has(name)) continue;
    requests.add(name);
    pending.push(...refsIn(written[name]));
  }
  for (const [name, schema] of Object.entries(written)) {
    if (requests.has(name)) continue;
    const closed = [...refsIn(schema)].filter((r) => requests.has(r));
    if (closed.length > 0) {
      throw new Error(`response schema ${name} refers to request schema(s) ${closed.join(', ')}`);
    }
  }
  return Object.fromEntries(
    Object.entries(written).map(([name, schema]) => [
      name,
      requests.has(name) ? schema : opened(schema),
    ]),
  );
}

/**
 * What every operation answers besides its own responses: 405 and 500 always, 401 and 429
 * where a key is needed; and `X-Request-Id` on every response.
 */
function withSharedResponses(operation: Operation): Operation {
  const needsKey = operation.security === undefined;
  const responses: Operation['responses'] = {
    ...operation.responses,
    ...(needsKey && { '401': operation.responses['401'] ?? responseRef('Unauthorized') }),
    ...(needsKey && {
      '429': operation.responses['429'] ?? responseRef('TooManyFailedAuthentications'),
    }),
    '405': operation.responses['405'] ?? responseRef('MethodNotAllowed'),
    '500': operation.responses['500'] ?? responseRef('InternalError'),
  };
  for (const [status, response] of Object.entries(responses)) {
    if (response.$ref !== undefined) continue;
    responses[status] = {
      ...response,
      headers: { ...response.headers, 'X-Request-Id': headers.RequestId },
    };
  }
  return { ...operation, responses };
}

export function openApiDocument(
  version: string,
  routes: readonly Route[],
): Record<string, unknown> {
  const paths = openApiPaths(routes) as Record<string, Record<string, Operation>>;
  for (const operations of Object.values(paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      operations[method] = withSharedResponses(operation);
    }
  }
  const components = schemaComponents(Object.values(paths).flatMap((p) => Object.values(p)));
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
        '`Authorization: Bearer <API key>`.\n\n' +
        'Answers may gain fields in later versions (the response schemas are open): ignore ' +
        'those you do not know. Request bodies are checked strictly: an unknown field is a 422.',
    },
    // A relative URL: the server that serves this document (Swagger UI at /docs calls it).
    servers: [
      {
        url: '/',
        description: 'This service: the origin /openapi.json was loaded from.',
      },
    ],
    tags: TAGS,
    paths,
    webhooks: webhookOperations(),
    security: [{ apiKey: [] }],
    components: {
      schemas: components,
      responses: RESPONSES,
      headers: HEADERS,
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
