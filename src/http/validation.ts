import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsPlugin from 'ajv-formats';
import type { Transaction } from '../heuristic/types.js';
import { type FieldError, HttpProblem, PROBLEM_TYPES } from './problem.js';
import { FIELD_RULES, transactionSchema } from './schemas.js';

// ajv-formats is CommonJS; under NodeNext its default import is the module object.
const addFormats = addFormatsPlugin as unknown as typeof addFormatsPlugin.default;

const CURRENCIES = new Set(Intl.supportedValuesOf('currency'));

function createAjv(): Ajv {
  const ajv = new Ajv({ allErrors: true, strict: true, coerceTypes: false });
  addFormats(ajv, ['date']);
  ajv.addFormat('iso4217', { type: 'string', validate: (code: string) => CURRENCIES.has(code) });
  return ajv;
}

const ajv = createAjv();
const validateTransaction = ajv.compile<Transaction>(transactionSchema);

/** The body as a Transaction, or a 422 problem naming every bad field. */
export function parseTransaction(body: unknown): Transaction {
  return check(validateTransaction, body);
}

function check<T>(validate: ValidateFunction<T>, body: unknown): T {
  if (validate(body)) return body;
  throw new HttpProblem(
    422,
    PROBLEM_TYPES.validation,
    'Invalid transaction',
    'The request body does not match the transaction schema; see `errors`.',
    toFieldErrors(validate.errors ?? []),
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
    const known = Object.keys(FIELD_RULES).join(', ');
    return [`${e.instancePath}/${escapePointer(field)}`, `is not a known field (known: ${known})`];
  }
  if (e.instancePath === '' && e.keyword === 'type') {
    return ['', 'the request body must be a JSON object'];
  }
  const field = e.instancePath.split('/').pop() ?? '';
  return [e.instancePath, FIELD_RULES[field] ?? e.message ?? 'is invalid'];
}

function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}
