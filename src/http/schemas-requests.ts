/**
 * JSON Schemas of what requests send: the transaction, the batch body, and the query strings of
 * the listing and waiting routes, with their limits. Part of schemas.ts (which re-exports them
 * and lists every schema by `$id`).
 */
export const MAX_BATCH_SIZE = 1000;
/** Most transactions in one file batch (NDJSON or CSV body). */
export const MAX_FILE_BATCH_SIZE = 100_000;
/** Longest `?wait=` / `Prefer: wait=` in seconds. */
export const MAX_WAIT_SECONDS = 60;
export const JOB_STATUSES = ['pending', 'running', 'succeeded', 'failed', 'canceled'] as const;

export const transactionSchema = {
  $id: 'Transaction',
  type: 'object',
  additionalProperties: false,
  required: ['date', 'description', 'amount'],
  properties: {
    date: {
      type: 'string',
      format: 'date',
      description: 'Booking date, YYYY-MM-DD (a real calendar date).',
      examples: ['2026-04-03'],
    },
    description: {
      type: 'string',
      minLength: 1,
      maxLength: 500,
      pattern: '\\S',
      description: 'The descriptor printed on the card statement.',
      examples: ['Payment Netflix APRIL***'],
    },
    amount: {
      type: 'number',
      description: 'Signed amount in the currency unit; negative for refunds.',
      examples: [15.49],
    },
    currency: {
      type: 'string',
      format: 'iso4217',
      description: 'ISO 4217 currency code, upper case.',
      examples: ['USD'],
    },
    mcc: {
      type: 'string',
      pattern: '^[0-9]{4}$',
      description: 'Merchant category code: four digits, as a string.',
      examples: ['5411'],
    },
    reference: {
      type: 'string',
      minLength: 1,
      maxLength: 200,
      description: "The client's own identifier for the transaction, echoed back untouched.",
      examples: ['txn-000123'],
    },
  },
} as const;

/**
 * A job's `transaction`: the one submitted, as the service sends it back. The same rules as
 * Transaction under its own name, because a request body and an answer are published
 * differently (openapi.ts: requests closed, answers open).
 */
export const submittedTransactionSchema = {
  ...transactionSchema,
  $id: 'SubmittedTransaction',
  description: 'The transaction as it was submitted.',
} as const;

export const batchRequestSchema = {
  $id: 'BatchRequest',
  type: 'object',
  additionalProperties: false,
  required: ['transactions'],
  properties: {
    transactions: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_BATCH_SIZE,
      items: { $ref: 'Transaction' },
      description: `1 to ${MAX_BATCH_SIZE} transactions; results keep this order.`,
    },
  },
} as const;

const waitParameter = {
  type: 'integer',
  minimum: 0,
  maximum: MAX_WAIT_SECONDS,
  description:
    `Long-poll: hold the request up to this many seconds (at most ${MAX_WAIT_SECONDS}) until ` +
    'the resource is finished or, with If-None-Match, differs from that ETag.',
} as const;

export const waitQuerySchema = {
  $id: 'WaitQuery',
  type: 'object',
  additionalProperties: false,
  properties: { wait: waitParameter },
} as const;

const cursorParameter = {
  type: 'string',
  minLength: 1,
  maxLength: 100,
  description: "Opaque cursor from a previous page's `next_cursor`.",
} as const;

const limitParameter = {
  type: 'integer',
  minimum: 1,
  maximum: 1000,
  default: 100,
  description: 'Page size, 1..1000.',
} as const;

export const listJobsQuerySchema = {
  $id: 'ListJobsQuery',
  type: 'object',
  additionalProperties: false,
  properties: {
    status: {
      type: 'string',
      pattern: `^(${JOB_STATUSES.join('|')})(,(${JOB_STATUSES.join('|')}))*$`,
      description: 'Only jobs in these statuses, comma-separated, e.g. `failed,canceled`.',
    },
    batch: { type: 'string', format: 'uuid', description: 'Only the jobs of this batch.' },
    limit: limitParameter,
    cursor: cursorParameter,
  },
} as const;

export const pageQuerySchema = {
  $id: 'PageQuery',
  type: 'object',
  additionalProperties: false,
  properties: { limit: limitParameter, cursor: cursorParameter },
} as const;
