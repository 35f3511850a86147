import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsPlugin from 'ajv-formats';
import type { Transaction } from '../heuristic/types.js';
import { type FieldError, HttpProblem, PROBLEM_TYPES } from './problem.js';
import {
  ALL_SCHEMAS,
  FIELD_RULES,
  PARAMETER_RULES,
  batchRequestSchema,
  listJobsQuerySchema,
  pageQuerySchema,
  transactionSchema,
  waitQuerySchema,
} from './schemas.js';

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

function check<T>(validate: ValidateFunction<T>, body: unknown, title: string, what: string): T {
  if (validate(body)) return body;
  const errors = toFieldErrors(validate.errors ?? []);
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
  const field = e.instancePath.split('/').pop() ?? '';
  if (/^\d+$/.test(field) && e.keyword === 'type') {
    return [e.instancePath, 'each transaction must be a JSON object'];
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
