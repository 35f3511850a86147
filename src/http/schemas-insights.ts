/**
 * JSON Schemas of what the dashboard reads: `GET /stats` and `GET /batches`. Registered with the
 * others (schemas.ts `ALL_SCHEMAS`), so ajv and the OpenAPI document know them by `$id`.
 */

/** The windows `GET /stats` offers: buckets of `bucketSeconds`, `buckets` of them. */
export const STATS_WINDOWS = {
  '15m': { bucketSeconds: 60, buckets: 15 },
  '1h': { bucketSeconds: 60, buckets: 60 },
  '6h': { bucketSeconds: 300, buckets: 72 },
  '24h': { bucketSeconds: 1200, buckets: 72 },
} as const;
export type StatsWindow = keyof typeof STATS_WINDOWS;

export const statsQuerySchema = {
  $id: 'StatsQuery',
  type: 'object',
  additionalProperties: false,
  properties: {
    window: {
      type: 'string',
      enum: Object.keys(STATS_WINDOWS),
      default: '1h',
      description:
        'How far back: `15m` and `1h` in 1-minute buckets, `6h` in 5-minute, `24h` in ' +
        '20-minute buckets.',
    },
  },
} as const;

const count = { type: 'integer', minimum: 0 } as const;
const milliseconds = { type: ['integer', 'null'], minimum: 0 } as const;

const percentiles = {
  type: 'object',
  additionalProperties: false,
  required: ['p50', 'p95', 'p99'],
  description:
    'Time from submit to result, in milliseconds, of the jobs that succeeded or failed ' +
    '(`null` when there were none).',
  properties: { p50: milliseconds, p95: milliseconds, p99: milliseconds },
} as const;

export const statsSchema = {
  $id: 'Stats',
  type: 'object',
  additionalProperties: false,
  required: ['window', 'bucket_seconds', 'from', 'to', 'counts', 'latency_ms', 'series'],
  properties: {
    window: { type: 'string', enum: Object.keys(STATS_WINDOWS) },
    bucket_seconds: { type: 'integer', minimum: 1 },
    from: { type: 'string', format: 'date-time', description: 'Start of the first bucket.' },
    to: { type: 'string', format: 'date-time', description: 'When this was read.' },
    counts: {
      type: 'object',
      additionalProperties: false,
      required: ['pending', 'running', 'succeeded', 'failed', 'canceled'],
      description:
        'Your jobs `pending` and `running` now; `succeeded`, `failed` and `canceled`: those ' +
        'that finished within the window.',
      properties: {
        pending: count,
        running: count,
        succeeded: count,
        failed: count,
        canceled: count,
      },
    },
    latency_ms: { ...percentiles, description: `${percentiles.description} Whole window.` },
    series: {
      type: 'array',
      description: 'One entry per bucket, oldest first; the last one is still filling.',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['start', 'succeeded', 'failed', 'canceled', 'latency_ms'],
        properties: {
          start: { type: 'string', format: 'date-time' },
          succeeded: count,
          failed: count,
          canceled: count,
          latency_ms: percentiles,
        },
      },
    },
  },
} as const;

export const batchListSchema = {
  $id: 'BatchList',
  type: 'object',
  additionalProperties: false,
  required: ['batches', 'next_cursor'],
  properties: {
    batches: { type: 'array', items: { $ref: 'Batch' } },
    next_cursor: { type: ['string', 'null'], description: '`null` on the last page.' },
  },
} as const;

/** Response schemas (query schemas are compiled where they are used, as in validation.ts). */
export const INSIGHT_SCHEMAS = [statsSchema, batchListSchema] as const;
