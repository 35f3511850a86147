/**
 * JSON Schemas of push delivery: webhook endpoint requests and resources, the delivery log, the
 * event message (a webhook's body, an event stream's `data:`) and the event-stream query. All but
 * the query (compiled where it is used, and shown as parameters) are part of ALL_SCHEMAS
 * (schemas.ts), so ajv validates with them and the OpenAPI document shows them;
 * the OpenAPI `webhooks` section (the payloads a receiver gets) is built here too.
 */
import { EVENT_TYPES } from '../db/sql/events.js';

const uuid = { type: 'string', format: 'uuid' } as const;
const timestamp = { type: 'string', format: 'date-time' } as const;
const nullableTimestamp = { type: ['string', 'null'], format: 'date-time' } as const;
const JOB_EVENT_TYPES = EVENT_TYPES.filter((t) => t.startsWith('job.'));

const url = {
  type: 'string',
  minLength: 1,
  maxLength: 2000,
  description:
    'Where events are POSTed: https, resolving only to public addresses (checked at ' +
    'registration and at every delivery). http and private addresses only with ' +
    'WEBHOOK_ALLOW_PRIVATE=true.',
  examples: ['https://example.com/webhooks/merchant'],
} as const;
const events = {
  type: 'array',
  minItems: 1,
  uniqueItems: true,
  items: { type: 'string', enum: EVENT_TYPES },
  description: 'The event types to send; omitted at creation: all of them.',
} as const;
const description = {
  type: ['string', 'null'],
  minLength: 1,
  maxLength: 500,
  pattern: '\\S',
  description: 'Your own note about the endpoint.',
} as const;

export const webhookCreateSchema = {
  $id: 'WebhookCreate',
  type: 'object',
  additionalProperties: false,
  required: ['url'],
  properties: { url, events, description },
} as const;

export const webhookUpdateSchema = {
  $id: 'WebhookUpdate',
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    url,
    events: { ...events, description: 'The event types to send.' },
    description,
    enabled: {
      type: 'boolean',
      description:
        '`false` stops deliveries (they wait); `true` resumes them and clears a disabled state.',
    },
  },
} as const;

export const webhookSchema = {
  $id: 'Webhook',
  type: 'object',
  additionalProperties: false,
  required: [
    'id',
    'url',
    'description',
    'events',
    'enabled',
    'disabled_reason',
    'disabled_at',
    'failing_since',
    'last_success_at',
    'last_failure_at',
    'previous_secret_expires_at',
    'pending_deliveries',
    'created_at',
    'updated_at',
    'deliveries',
  ],
  properties: {
    id: uuid,
    url: { type: 'string' },
    description: { type: ['string', 'null'] },
    events: { type: 'array', items: { type: 'string', enum: EVENT_TYPES } },
    enabled: { type: 'boolean' },
    disabled_reason: {
      type: ['string', 'null'],
      enum: ['manual', 'gone', 'failing', null],
      description:
        '`manual` (PATCH), `gone` (the receiver answered 410) or `failing` (no success for ' +
        'WEBHOOK_DISABLE_AFTER_MS); `null` while enabled.',
    },
    disabled_at: nullableTimestamp,
    failing_since: {
      ...nullableTimestamp,
      description: 'The first failed attempt since the last success.',
    },
    last_success_at: nullableTimestamp,
    last_failure_at: nullableTimestamp,
    previous_secret_expires_at: {
      ...nullableTimestamp,
      description: 'After a rotation: until when the previous secret still signs.',
    },
    pending_deliveries: {
      type: 'integer',
      minimum: 0,
      description:
        'Deliveries waiting for their next attempt or being attempted now: neither delivered ' +
        'nor given up. A backlog that grows while `failing_since` is set is an endpoint in trouble.',
    },
    created_at: timestamp,
    updated_at: timestamp,
    deliveries: { type: 'string', description: 'Path of the delivery log.' },
    secret: {
      type: 'string',
      pattern: '^whsec_',
      description:
        'The signing secret (Standard Webhooks, `whsec_` + base64). Only in the answers to ' +
        'the create and rotate-secret calls: store it then.',
    },
  },
} as const;

export const webhookListSchema = {
  $id: 'WebhookList',
  type: 'object',
  additionalProperties: false,
  required: ['webhooks'],
  properties: { webhooks: { type: 'array', items: { $ref: 'Webhook' } } },
} as const;

export const webhookDeliverySchema = {
  $id: 'WebhookDelivery',
  type: 'object',
  additionalProperties: false,
  required: [
    'id',
    'event_id',
    'event_type',
    'status',
    'attempts',
    'last_status',
    'last_error',
    'last_attempt_at',
    'next_attempt_at',
    'created_at',
    'finished_at',
  ],
  properties: {
    id: { ...uuid, description: 'Also the `webhook-id` header of every attempt.' },
    event_id: {
      type: 'string',
      pattern: '^[0-9]+$',
      description: 'The event (`id:` on GET /events).',
    },
    event_type: { type: 'string', enum: EVENT_TYPES },
    status: {
      type: 'string',
      enum: ['pending', 'delivering', 'delivered', 'failed'],
      description: '`pending` until due (again), `delivering` during an attempt.',
    },
    attempts: { type: 'integer', minimum: 0 },
    last_status: { type: ['integer', 'null'], description: 'HTTP status of the last answer.' },
    last_error: {
      type: ['string', 'null'],
      description: 'Why the last attempt failed (status, timeout, connection, refused address).',
    },
    last_attempt_at: nullableTimestamp,
    next_attempt_at: { ...nullableTimestamp, description: 'When it is tried next, if pending.' },
    created_at: timestamp,
    finished_at: nullableTimestamp,
  },
} as const;

export const webhookDeliveryListSchema = {
  $id: 'WebhookDeliveryList',
  type: 'object',
  additionalProperties: false,
  required: ['deliveries', 'next_cursor'],
  properties: {
    deliveries: { type: 'array', items: { $ref: 'WebhookDelivery' } },
    next_cursor: { type: ['string', 'null'], description: '`null` on the last page.' },
  },
} as const;

export const eventSchema = {
  $id: 'Event',
  description:
    'A webhook body, and the `data:` of a GET /events message. `data` is the resource exactly ' +
    'as GET /jobs/{id} or GET /batches/{id} returns it (`null` if it was purged meanwhile).',
  oneOf: [
    {
      type: 'object',
      additionalProperties: false,
      required: ['type', 'timestamp', 'data'],
      properties: {
        type: { type: 'string', enum: JOB_EVENT_TYPES },
        timestamp: { ...timestamp, description: 'When the job finished (the event was logged).' },
        data: { oneOf: [{ $ref: 'Job' }, { type: 'null' }] },
      },
    },
    {
      type: 'object',
      additionalProperties: false,
      required: ['type', 'timestamp', 'data'],
      properties: {
        type: { type: 'string', const: 'batch.completed' },
        timestamp: { ...timestamp, description: "When the batch's last job finished." },
        data: { oneOf: [{ $ref: 'Batch' }, { type: 'null' }] },
      },
    },
  ],
} as const;

export const eventsQuerySchema = {
  $id: 'EventsQuery',
  type: 'object',
  additionalProperties: false,
  properties: {
    after: {
      type: 'string',
      pattern: '^[0-9]{1,19}$',
      description:
        'Start right after this event id (what `Last-Event-ID` does on a reconnect, which wins ' +
        'when both are sent). Without either, the stream starts now.',
    },
    types: {
      type: 'string',
      pattern: `^(${EVENT_TYPES.join('|')})(,(${EVENT_TYPES.join('|')}))*$`.replace(/\./g, '\\.'),
      description: 'Only these event types, comma-separated, e.g. `job.failed,batch.completed`.',
    },
    batch: { ...uuid, description: 'Only the events of this batch (its jobs and its completion).' },
  },
} as const;

export const WEBHOOK_SCHEMAS = [
  webhookCreateSchema,
  webhookUpdateSchema,
  webhookSchema,
  webhookListSchema,
  webhookDeliverySchema,
  webhookDeliveryListSchema,
  eventSchema,
] as const;

const signedHeader = (name: string, description: string, example: string) => ({
  name,
  in: 'header',
  required: true,
  description,
  schema: { type: 'string', examples: [example] },
});

/** The OpenAPI 3.1 `webhooks` section: what a receiver is sent, one entry per event type. */
export function webhookOperations(): Record<string, unknown> {
  return Object.fromEntries(
    EVENT_TYPES.map((type) => [
      type,
      {
        post: {
          operationId: `receive_${type.replace('.', '_')}`,
          tags: ['Webhooks'],
          // Sent by the service, signed; no API key involved.
          security: [],
          summary: `${type}, POSTed to your endpoint`,
          description:
            'Signed per Standard Webhooks: verify `webhook-signature` over ' +
            '`{webhook-id}.{webhook-timestamp}.{raw body}` with your `whsec_` secret (e.g. the ' +
            '`standardwebhooks` package), reject old timestamps, and deduplicate on ' +
            '`webhook-id`: delivery is at least once. Answer 2xx quickly; 410 disables the ' +
            'endpoint; anything else (or no answer within WEBHOOK_TIMEOUT_MS) is retried with ' +
            'backoff for about 3 days. Redirects are not followed.',
          parameters: [
            signedHeader(
              'webhook-id',
              'The delivery id: the same on every attempt of this delivery.',
              '5f0c7a52-4f1e-4c56-9d57-6d0f6c8b2a11',
            ),
            signedHeader('webhook-timestamp', 'Unix seconds of this attempt.', '1764000000'),
            signedHeader(
              'webhook-signature',
              '`v1,<base64 HMAC-SHA256>`; during a secret rotation, one per secret, space-separated.',
              'v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=',
            ),
          ],
          requestBody: {
            required: true,
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Event' } } },
          },
          responses: {
            '2XX': { description: 'Delivered.' },
            '410': { description: 'Gone: the endpoint is disabled, nothing more is sent.' },
            default: { description: 'Not delivered: retried with backoff.' },
          },
        },
      },
    ]),
  );
}
