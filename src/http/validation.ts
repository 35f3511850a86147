import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsPlugin from 'ajv-formats';
import type { Transaction } from '../heuristic/types.js';
import { type FieldError, HttpProblem, PROBLEM_TYPES } from './problem.js';
import { FIELD_RULES, PARAMETER_RULES } from './rules.js';
import {
  ALL_SCHEMAS,
  batchRequestSchema,
  listJobsQuerySchema,
  pageQuerySchema,
  transactionSchema,
  waitQuerySchema,
} from './schemas.js';
import { eventsQuerySchema, webhookCreateSchema, webhookUpdateSchema } from './webhook-schemas.js';
import type { EventType } from '../db/sql/events.js';

// ajv-formats is CommonJS; under NodeNext its default import is the module object.
const addFormats = addFormatsPlugin as unknown as typeof addFormatsPlugin.default;

const CURRENCIES = new Set(Intl.supportedValuesOf('currency'));

/** At most this many errors in one 422, so a bad 1000-item batch gets a readable answer. */
const MAX_ERRORS = 100;

/** An ajv instance that knows every schema in schemas.ts (also used by tests on responses). */
export function createAjv(opts: { coerceTypes?: boolean } = {}): Ajv {
  const ajv = new Ajv({
    allErrors: true,
    strict: true,
    allowUnionTypes: true,
    coerceTypes: opts.coerceTypes ?? false,
    useDefaults: opts.coerceTypes ?? false,
    verbose: true,
  });
  addFormats(ajv, ['date', 'date-time', 'uuid']);
  ajv.addFormat('iso4217', { type: 'string', validate: (code: string) => CURRENCIES.has(code) });
  for (const schema of ALL_SCHEMAS) ajv.addSchema(schema);
  return ajv;
}

const bodies = createAjv();
const validateTransaction = bodies.getSchema<Transaction>(transactionSchema.$id);
const validateBatch = bodies.getSchema<{ transactions: Transaction[] }>(batchRequestSchema.$id);

// Query strings arrive as strings: this instance coerces "10" to 10 and fills in defaults.
const queries = createAjv({ coerceTypes: true });
const validateWaitQuery = queries.compile<{ wait?: number }>(waitQuerySchema);
const validateListQuery = queries.compile<{
  status?: string;
  batch?: string;
  limit: number;
  cursor?: string;
}>(listJobsQuerySchema);
const validatePageQuery = queries.compile<{ limit: number; cursor?: string }>(pageQuerySchema);
const validateEventsQuery = queries.compile<{ after?: string; types?: string; batch?: string }>(
  eventsQuerySchema,
);

export interface WebhookInput {
  url: string;
  events?: EventType[];
  description?: string | null;
}
const validateWebhookCreate = bodies.getSchema<WebhookInput>(webhookCreateSchema.$id);
const validateWebhookUpdate = bodies.getSchema<Partial<WebhookInput> & { enabled?: boolean }>(
  webhookUpdateSchema.$id,
);

/** The body of POST /webhooks, or a 422 naming every bad field. */
export function parseWebhookCreate(body: unknown): WebhookInput {
  if (!validateWebhookCreate) throw new Error('WebhookCreate schema not registered');
  return check(validateWebhookCreate, body, 'Invalid webhook', 'the webhook schema');
}

/** The body of PATCH /webhooks/{id}, or a 422 naming every bad field. */
export function parseWebhookUpdate(body: unknown): Partial<WebhookInput> & { enabled?: boolean } {
  if (!validateWebhookUpdate) throw new Error('WebhookUpdate schema not registered');
  return check(validateWebhookUpdate, body, 'Invalid webhook', 'the webhook update schema');
}

export const parseEventsQuery = (query: unknown) => checkQuery(validateEventsQuery, query);

/** The body as a Transaction, or a 422 problem naming every bad field. */
export function parseTransaction(body: unknown): Transaction {
  if (!validateTransaction) throw new Error('Transaction schema not registered');
  return check(validateTransaction, body, 'Invalid transaction', 'the transaction schema');
}

/** The body as a batch request, or a 422 problem pointing at every bad item and field. */
export function parseBatch(body: unknown): { transactions: Transaction[] } {
  if (!validateBatch) throw new Error('BatchRequest schema not registered');
  return check(validateBatch, body, 'Invalid batch', 'the batch schema');
}

export const parseWaitQuery = (query: unknown) => checkQuery(validateWaitQuery, query);
export const parseListJobsQuery = (query: unknown) => checkQuery(validateListQuery, query);
export const parsePageQuery = (query: unknown) => checkQuery(validatePageQuery, query);

/**
 * NUL and unpaired UTF-16 surrogates: valid in a JSON string, but Postgres stores neither (a
 * `jsonb` string cannot hold U+0000, and a lone surrogate is not Unicode). In unicode mode a
 * surrogate range matches only surrogates that are not half of a pair.
 */
// eslint-disable-next-line no-control-regex -- NUL is exactly what this looks for
const UNSTORABLE = /[\u0000\uD800-\uDFFF]/u;
export const UNSTORABLE_TEXT =
  'must not contain NUL (\\u0000) or unpaired UTF-16 surrogates (\\ud800-\\udfff)';

/** A field error for every string in `value` (at any depth) that Postgres cannot store. */
function unstorableText(value: unknown, pointer = ''): FieldError[] {
  if (typeof value === 'string') {
    return UNSTORABLE.test(value) ? [{ pointer, detail: UNSTORABLE_TEXT }] : [];
  }
  if (Array.isArray(value)) return value.flatMap((v, i) => unstorableText(v, `${pointer}/${i}`));
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).flatMap(([k, v]) =>
      unstorableText(v, `${pointer}/${escapePointer(k)}`),
    );
  }
  return [];
}

function check<T>(validate: ValidateFunction<T>, body: unknown, title: string, what: string): T {
  const valid = validate(body);
  // Checked on every body, valid or not, so the client learns of every bad field at once.
  const text = unstorableText(body);
  if (valid && text.length === 0) return body;
  const schemaErrors = toFieldErrors(valid ? [] : (validate.errors ?? []));
  const named = new Set(schemaErrors.map((e) => 'pointer' in e && e.pointer));
  const errors = [
    ...schemaErrors,
    ...text.filter((e) => !('pointer' in e) || !named.has(e.pointer)),
  ];
  const shown = errors.slice(0, MAX_ERRORS);
  const more = errors.length > shown.length ? ` The first ${MAX_ERRORS} are listed.` : '';
  throw new HttpProblem(
    422,
    PROBLEM_TYPES.validation,
    title,
    `The request body does not match ${what}: ${errors.length} error(s); see \`errors\`.${more}`,
    shown,
  );
}

/** One error per field, in words a client developer can act on. */
function toFieldErrors(errors: readonly ErrorObject[]): FieldError[] {
  const byPointer = new Map<string, string>();
  for (const e of errors) {
    const [pointer, detail] = describe(e);
    if (!byPointer.has(pointer)) byPointer.set(pointer, detail);
  }
  return [...byPointer].map(([pointer, detail]) => ({ pointer, detail }));
}

function describe(e: ErrorObject): [pointer: string, detail: string] {
  const params = e.params as Record<string, unknown>;
  if (e.keyword === 'required') {
    const field = String(params.missingProperty);
    return [`${e.instancePath}/${field}`, `is required: ${FIELD_RULES[field] ?? 'missing'}`];
  }
  if (e.keyword === 'additionalProperties') {
    const field = String(params.additionalProperty);
    const known = Object.keys(
      (e.parentSchema as { properties?: object } | undefined)?.properties ?? {},
    ).join(', ');
    return [`${e.instancePath}/${escapePointer(field)}`, `is not a known field (known: ${known})`];
  }
  if (e.instancePath === '' && e.keyword === 'type') {
    return ['', 'the request body must be a JSON object'];
  }
  if (e.instancePath === '' && e.keyword === 'minProperties') {
    const known = Object.keys((e.parentSchema as { properties?: object }).properties ?? {});
    return ['', `must change at least one of ${known.join(', ')}`];
  }
  const segments = e.instancePath.split('/');
  const field = segments.pop() ?? '';
  const parent = segments.at(-1) ?? '';
  if (/^\d+$/.test(field) && parent === 'transactions' && e.keyword === 'type') {
    return [e.instancePath, 'each transaction must be a JSON object'];
  }
  // An item of a list (`/events/1`): the list's rule says what each item must be.
  if (/^\d+$/.test(field) && parent !== 'transactions' && FIELD_RULES[parent]) {
    return [e.instancePath, FIELD_RULES[parent]];
  }
  return [e.instancePath, FIELD_RULES[field] ?? e.message ?? 'is invalid'];
}

/** The query as T (coerced, defaults filled in), or a 400 problem naming each bad parameter. */
export function checkQuery<T>(validate: ValidateFunction<T>, query: unknown): T {
  // A copy: ajv coerces in place and Koa's ctx.query is a getter-backed object.
  const copy: Record<string, unknown> = { ...(query as Record<string, unknown>) };
  const repeated = Object.keys(copy).filter((k) => Array.isArray(copy[k]));
  if (repeated.length === 0 && validate(copy)) return copy;
  const errors = new Map<string, string>();
  for (const name of repeated) errors.set(name, 'must be given once');
  for (const e of repeated.length === 0 ? (validate.errors ?? []) : []) {
    const params = e.params as Record<string, unknown>;
    if (e.keyword === 'additionalProperties') {
      const name = String(params.additionalProperty);
      const known = Object.keys(PARAMETER_RULES)
        .filter((k) => k in ((e.parentSchema as { properties?: object }).properties ?? {}))
        .join(', ');
      errors.set(name, `is not a known parameter here (known: ${known || 'none'})`);
      continue;
    }
    const name = e.instancePath.slice(1);
    if (!errors.has(name)) errors.set(name, PARAMETER_RULES[name] ?? e.message ?? 'is invalid');
  }
  throw new HttpProblem(
    400,
    PROBLEM_TYPES.invalidParameter,
    'Invalid query parameter',
    'The query string is not valid here; see `errors`.',
    [...errors].map(([parameter, detail]) => ({ parameter, detail })),
  );
}

function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** 400 for a cursor that no page of ours handed out. */
export function invalidCursor(): HttpProblem {
  return new HttpProblem(
    400,
    PROBLEM_TYPES.invalidParameter,
    'Invalid query parameter',
    'The query string is not valid here; see `errors`.',
    [{ parameter: 'cursor', detail: PARAMETER_RULES.cursor ?? 'is invalid' }],
  );
}
