/**
 * JSON Schemas (draft 2020-12, as OpenAPI 3.1 uses) for request bodies, query strings and
 * responses: the one definition ajv validates with and the OpenAPI document is built from.
 * A `$ref` names another schema here by its `$id`; openapi.ts rewrites it to a component.
 */
import { WEBHOOK_SCHEMAS } from './webhook-schemas.js';

import { INTERMEDIARY_KINDS } from '../heuristic/types.js';

import { INSIGHT_SCHEMAS } from './schemas-insights.js';
import {
  JOB_STATUSES,
  batchRequestSchema,
  submittedTransactionSchema,
  transactionSchema,
} from './schemas-requests.js';

export * from './schemas-requests.js';

const timestamp = { type: 'string', format: 'date-time' } as const;
const nullableTimestamp = { type: ['string', 'null'], format: 'date-time' } as const;
const uuid = { type: 'string', format: 'uuid' } as const;

const slug = { type: 'string', pattern: '^[a-z0-9]+(?:-[a-z0-9]+)*$' } as const;

export const merchantResultSchema = {
  $id: 'MerchantResult',
  type: 'object',
  additionalProperties: false,
  required: ['merchant'],
  properties: {
    merchant: {
      description: '`null` when the heuristic recognised no merchant (a success, not a failure).',
      oneOf: [
        {
          type: 'object',
          additionalProperties: false,
          required: ['name'],
          properties: {
            name: { type: 'string', examples: ['Sushi Go'] },
            id: {
              ...slug,
              description:
                'Stable id for joining, a lower-case slug of the name ("sushi-go"). Given by the ' +
                'bundled heuristic and the HTTP adapter; absent from results stored before ids ' +
                'existed and from in-process heuristics that do not set one.',
              examples: ['sushi-go'],
            },
          },
        },
        { type: 'null' },
      ],
    },
    intermediaries: {
      description:
        'Payment processors and platforms the descriptor names between the cardholder and the ' +
        'merchant, outermost first (`PAYPAL *SUSHI GO` -> PayPal); `[]` when there are none. ' +
        'Absent when the heuristic does not report them.',
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'name', 'kind'],
        properties: {
          id: { ...slug, examples: ['paypal'] },
          name: { type: 'string', examples: ['PayPal'] },
          kind: {
            enum: INTERMEDIARY_KINDS,
            description:
              '`processor` moves the money (Square, Toast, PayPal, Venmo, Google); `platform` ' +
              'sells or delivers for the merchant (DoorDash, Grubhub, Instacart).',
          },
        },
      },
    },
  },
} as const;

export const jobErrorSchema = {
  $id: 'JobError',
  type: 'object',
  additionalProperties: false,
  required: ['code', 'message', 'attempt'],
  properties: {
    code: {
      type: 'string',
      description: '`timeout`, `heuristic_error`, `non_retryable` or `lease_expired`.',
    },
    message: { type: 'string' },
    attempt: { type: 'integer', minimum: 1, description: 'The attempt that failed, from 1.' },
  },
} as const;

export const jobSchema = {
  $id: 'Job',
  type: 'object',
  additionalProperties: false,
  required: [
    'id',
    'status',
    'transaction',
    'result',
    'error',
    'attempts',
    'batch',
    'created_at',
    'started_at',
    'finished_at',
  ],
  properties: {
    id: uuid,
    status: { type: 'string', enum: JOB_STATUSES },
    transaction: { $ref: 'SubmittedTransaction' },
    result: {
      description: 'Set once `status` is `succeeded`.',
      oneOf: [{ $ref: 'MerchantResult' }, { type: 'null' }],
    },
    error: {
      description: 'Why the last attempt failed; set when `failed`, kept while retrying.',
      oneOf: [{ $ref: 'JobError' }, { type: 'null' }],
    },
    attempts: { type: 'integer', minimum: 0 },
    batch: {
      description: 'The batch this job belongs to and its position there, if any.',
      oneOf: [
        {
          type: 'object',
          additionalProperties: false,
          required: ['id', 'index'],
          properties: { id: uuid, index: { type: 'integer', minimum: 0 } },
        },
        { type: 'null' },
      ],
    },
    created_at: timestamp,
    started_at: { ...nullableTimestamp, description: 'When the latest attempt started.' },
    finished_at: nullableTimestamp,
  },
} as const;

export const jobListSchema = {
  $id: 'JobList',
  type: 'object',
  additionalProperties: false,
  required: ['jobs', 'next_cursor'],
  properties: {
    jobs: { type: 'array', items: { $ref: 'Job' } },
    next_cursor: { type: ['string', 'null'], description: '`null` on the last page.' },
  },
} as const;

const statusCounts = {
  type: 'object',
  additionalProperties: false,
  required: [...JOB_STATUSES],
  properties: Object.fromEntries(JOB_STATUSES.map((s) => [s, { type: 'integer', minimum: 0 }])),
} as const;

export const batchSchema = {
  $id: 'Batch',
  type: 'object',
  additionalProperties: false,
  required: [
    'id',
    'size',
    'counts',
    'finished',
    'done',
    'progress',
    'created_at',
    'started_at',
    'finished_at',
    'results',
  ],
  properties: {
    id: uuid,
    size: { type: 'integer', minimum: 1, description: 'Number of transactions.' },
    counts: { ...statusCounts, description: 'Jobs per status.' },
    finished: { type: 'integer', minimum: 0, description: 'Jobs in a terminal status.' },
    done: { type: 'boolean', description: 'True once every job is terminal.' },
    progress: { type: 'number', minimum: 0, maximum: 1, description: '`finished / size`.' },
    created_at: timestamp,
    started_at: nullableTimestamp,
    finished_at: { ...nullableTimestamp, description: 'When the last job finished, once done.' },
    results: { type: 'string', description: 'Path of the results, in submission order.' },
    job_ids: {
      type: 'array',
      items: uuid,
      description: 'Only in the answer to the submit: the job ids in submission order.',
    },
  },
} as const;

export const batchResultsSchema = {
  $id: 'BatchResults',
  type: 'object',
  additionalProperties: false,
  required: ['items', 'next_cursor'],
  properties: {
    items: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['index', 'job_id', 'reference', 'status', 'result', 'error'],
        properties: {
          index: { type: 'integer', minimum: 0, description: 'Position in the submitted batch.' },
          job_id: uuid,
          reference: {
            type: ['string', 'null'],
            description: "The transaction's `reference`, echoed.",
          },
          status: { type: 'string', enum: JOB_STATUSES },
          result: { oneOf: [{ $ref: 'MerchantResult' }, { type: 'null' }] },
          error: { oneOf: [{ $ref: 'JobError' }, { type: 'null' }] },
        },
      },
    },
    next_cursor: { type: ['string', 'null'], description: '`null` on the last page.' },
  },
} as const;

export const problemSchema = {
  $id: 'Problem',
  type: 'object',
  description: 'RFC 9457 problem details.',
  required: ['type', 'title', 'status'],
  properties: {
    type: { type: 'string', description: 'A relative URI naming the kind of problem.' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    retention_days: {
      type: 'number',
      description: '`410 /problems/gone`: how long finished jobs and batches are kept, in days.',
    },
    job_status: {
      type: 'string',
      description: '`409 /problems/job-already-finished`: how the job finished.',
    },
    limit: {
      type: 'integer',
      description:
        '`429 /problems/pending-quota-exceeded` and `409 /problems/webhook-limit`: the limit.',
    },
    errors: {
      type: 'array',
      items: {
        type: 'object',
        required: ['detail'],
        properties: {
          pointer: { type: 'string', description: 'JSON Pointer into the request body.' },
          line: {
            type: 'integer',
            minimum: 1,
            description: 'In a file batch: the line of the file; `pointer` is into its row.',
          },
          parameter: { type: 'string', description: 'The query parameter at fault.' },
          detail: { type: 'string' },
        },
      },
    },
  },
} as const;

/** Every schema above, by `$id`, and those of schemas-insights.ts. */
export const ALL_SCHEMAS = [
  transactionSchema,
  submittedTransactionSchema,
  batchRequestSchema,
  merchantResultSchema,
  jobErrorSchema,
  jobSchema,
  jobListSchema,
  batchSchema,
  batchResultsSchema,
  problemSchema,
  ...WEBHOOK_SCHEMAS,
  ...INSIGHT_SCHEMAS,
] as const;
