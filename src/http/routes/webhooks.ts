/**
 * Webhook endpoints: register (the secret is shown once), list, read, change, delete, rotate
 * the secret; an endpoint's delivery log and redelivery. Another client's endpoint is a 404.
 */
import type { Context } from 'koa';
import type { Authenticator } from '../../auth/authenticator.js';
import type { DeliveryRow } from '../../db/sql/deliveries.js';
import type { EndpointRow } from '../../db/sql/webhooks.js';
import type { Webhooks } from '../../push/webhooks.js';
import { jsonBody, requireJson } from '../body.js';
import { authenticate, clientOf } from '../middleware.js';
import { common4xx, headers, json, page, problem, queryParameters, ref } from '../openapi.js';
import type { Route } from '../route.js';
import { pageQuerySchema } from '../schemas.js';
import {
  invalidCursor,
  parsePageQuery,
  parseWebhookCreate,
  parseWebhookUpdate,
} from '../validation.js';
import { cursors } from '../views.js';

export interface WebhookRoutesDeps {
  push: { webhooks: Webhooks };
  auth: Authenticator;
  maxBodyBytes: number;
}

const params = (ctx: Context) => ctx.params as { id?: string; delivery?: string };
const webhookLocation = (id: string) => `/webhooks/${id}`;

/** An endpoint as the API shows it (never its secret, except where `secret` is passed). */
export function webhookResource(row: EndpointRow, secret?: string) {
  return {
    id: row.id,
    url: row.url,
    description: row.description,
    events: row.event_types,
    enabled: row.enabled,
    disabled_reason: row.disabled_reason,
    disabled_at: row.disabled_at?.toISOString() ?? null,
    failing_since: row.failing_since?.toISOString() ?? null,
    last_success_at: row.last_success_at?.toISOString() ?? null,
    last_failure_at: row.last_failure_at?.toISOString() ?? null,
    previous_secret_expires_at: row.previous_secret_expires_at?.toISOString() ?? null,
    pending_deliveries: row.pending_deliveries,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    deliveries: `${webhookLocation(row.id)}/deliveries`,
    ...(secret !== undefined && { secret }),
  };
}

export function deliveryResource(row: DeliveryRow) {
  return {
    id: row.id,
    event_id: row.event_id,
    event_type: row.event_type,
    status: row.status,
    attempts: row.attempts,
    last_status: row.last_status,
    last_error: row.last_error,
    last_attempt_at: row.last_attempt_at?.toISOString() ?? null,
    next_attempt_at: row.next_attempt_at?.toISOString() ?? null,
    created_at: row.created_at.toISOString(),
    finished_at: row.finished_at?.toISOString() ?? null,
  };
}

const idParameter = (name: 'id' | 'delivery', what: string) => ({
  name,
  in: 'path',
  required: true,
  description: `The ${what} id.`,
  schema: { type: 'string', format: 'uuid' },
});
const notFound = problem('No such webhook (or delivery) of yours.');
const invalid = problem(
  'Body does not match the schema, or the url is refused (not https, or it resolves to a ' +
    'non-public address); see `errors`.',
);

export function webhookRoutes(deps: WebhookRoutesDeps): Route[] {
  const { webhooks } = deps.push;
  const auth = authenticate(deps.auth);
  const body = [requireJson, jsonBody(deps.maxBodyBytes)];
  return [
    {
      // Register an endpoint: 201 with its signing secret, shown this once.
      method: 'post',
      path: '/webhooks',
      handle: [
        auth,
        ...body,
        async (ctx) => {
          const input = parseWebhookCreate(ctx.request.body);
          const { endpoint, secret } = await webhooks.create(clientOf(ctx).id, input);
          ctx.status = 201;
          ctx.set('Location', webhookLocation(endpoint.id));
          ctx.set('Cache-Control', 'no-store');
          ctx.body = webhookResource(endpoint, secret);
        },
      ],
      doc: {
        operationId: 'createWebhook',
        tags: ['Webhooks'],
        summary: 'Register a webhook endpoint',
        description:
          'From now on, the events you choose (all by default) are POSTed to `url`, signed with ' +
          'the `secret` in this answer: store it, it is not shown again. A client may have up ' +
          'to 20 endpoints.',
        requestBody: { required: true, content: json(ref('WebhookCreate')) },
        responses: {
          '201': {
            description: 'Registered; `secret` is shown only here (and by rotate-secret).',
            headers: { Location: headers.Location },
            content: json(ref('Webhook')),
          },
          '409': problem('You have as many endpoints as a client may (20).'),
          '415': problem('Body is not JSON.'),
          '422': invalid,
          ...common4xx,
        },
      },
    },
    {
      method: 'get',
      path: '/webhooks',
      handle: [
        auth,
        async (ctx) => {
          const rows = await webhooks.list(clientOf(ctx).id);
          ctx.set('Cache-Control', 'no-store');
          ctx.body = { webhooks: rows.map((row) => webhookResource(row)) };
        },
      ],
      doc: {
        operationId: 'listWebhooks',
        tags: ['Webhooks'],
        summary: 'Your webhook endpoints, oldest first',
        description: 'All your endpoints, with their status (never their secrets).',
        responses: {
          '200': { description: 'All of them.', content: json(ref('WebhookList')) },
          ...common4xx,
        },
      },
    },
    {
      method: 'get',
      path: '/webhooks/:id',
      handle: [
        auth,
        async (ctx) => {
          const row = await webhooks.get(clientOf(ctx).id, params(ctx).id ?? '');
          ctx.set('Cache-Control', 'no-store');
          ctx.body = webhookResource(row);
        },
      ],
      doc: {
        operationId: 'getWebhook',
        tags: ['Webhooks'],
        summary: 'One webhook endpoint and its status',
        description:
          'Whether it is enabled (or why not), since when it has been failing, and its last ' +
          'success and failure.',
        parameters: [idParameter('id', 'webhook')],
        responses: {
          '200': { description: 'The endpoint.', content: json(ref('Webhook')) },
          '404': notFound,
          ...common4xx,
        },
      },
    },
    {
      // Change url, events, description; enable (clears a disabled state) or disable.
      method: 'patch',
      path: '/webhooks/:id',
      handle: [
        auth,
        ...body,
        async (ctx) => {
          const patch = parseWebhookUpdate(ctx.request.body);
          const row = await webhooks.update(clientOf(ctx).id, params(ctx).id ?? '', patch);
          ctx.set('Cache-Control', 'no-store');
          ctx.body = webhookResource(row);
        },
      ],
      doc: {
        operationId: 'updateWebhook',
        tags: ['Webhooks'],
        summary: 'Change, enable or disable an endpoint',
        description:
          'Change its url, events or description; `enabled: false` holds its deliveries, ' +
          '`enabled: true` resumes them and clears a disabled state.',
        parameters: [idParameter('id', 'webhook')],
        requestBody: { required: true, content: json(ref('WebhookUpdate')) },
        responses: {
          '200': { description: 'Changed.', content: json(ref('Webhook')) },
          '404': notFound,
          '415': problem('Body is not JSON.'),
          '422': invalid,
          ...common4xx,
        },
      },
    },
    {
      // Delete an endpoint and its delivery log; nothing more is sent to it.
      method: 'delete',
      path: '/webhooks/:id',
      handle: [
        auth,
        async (ctx) => {
          await webhooks.remove(clientOf(ctx).id, params(ctx).id ?? '');
          ctx.status = 204;
        },
      ],
      doc: {
        operationId: 'deleteWebhook',
        tags: ['Webhooks'],
        summary: 'Delete an endpoint and its delivery log',
        description: 'Nothing more is sent to it, including deliveries not yet made.',
        parameters: [idParameter('id', 'webhook')],
        responses: { '204': { description: 'Deleted.' }, '404': notFound, ...common4xx },
      },
    },
    {
      // A new secret; the old one keeps signing beside it for 24 h.
      method: 'post',
      path: '/webhooks/:id/rotate-secret',
      handle: [
        auth,
        async (ctx) => {
          const { endpoint, secret } = await webhooks.rotateSecret(
            clientOf(ctx).id,
            params(ctx).id ?? '',
          );
          ctx.set('Cache-Control', 'no-store');
          ctx.body = webhookResource(endpoint, secret);
        },
      ],
      doc: {
        operationId: 'rotateWebhookSecret',
        tags: ['Webhooks'],
        summary: 'Rotate the signing secret',
        description:
          'Returns the new secret (shown only here). For 24 hours every message is signed with ' +
          'both secrets (two `v1,` signatures), so receivers can switch without losing any.',
        parameters: [idParameter('id', 'webhook')],
        responses: {
          '200': {
            description: 'The endpoint with its new `secret`.',
            content: json(ref('Webhook')),
          },
          '404': notFound,
          ...common4xx,
        },
      },
    },
    {
      // The delivery log: newest event first, cursor pages.
      method: 'get',
      path: '/webhooks/:id/deliveries',
      handle: [
        auth,
        async (ctx) => {
          const { limit, cursor } = parsePageQuery(ctx.query);
          const before = cursor === undefined ? undefined : cursors.decode('event', cursor);
          if (cursor !== undefined && before === undefined) throw invalidCursor();
          const id = params(ctx).id ?? '';
          const rows = await webhooks.deliveries(clientOf(ctx).id, id, {
            beforeEventId: before,
            limit: limit + 1,
          });
          const page = rows.slice(0, limit);
          const last = page.at(-1);
          const next = rows.length > limit && last ? cursors.encode('event', last.event_id) : null;
          if (next) {
            ctx.set(
              'Link',
              `<${webhookLocation(id)}/deliveries?limit=${limit}&cursor=${next}>; rel="next"`,
            );
          }
          ctx.set('Cache-Control', 'no-store');
          ctx.body = { deliveries: page.map(deliveryResource), next_cursor: next };
        },
      ],
      doc: {
        operationId: 'listWebhookDeliveries',
        tags: ['Webhooks'],
        summary: "An endpoint's delivery log, newest event first",
        description:
          'One delivery per event sent to the endpoint: its status, attempts, and the last ' +
          'answer or error; cursor pages (follow `Link` or pass `next_cursor`).',
        parameters: [idParameter('id', 'webhook'), ...queryParameters(pageQuerySchema)],
        responses: {
          '200': page('One page.', 'WebhookDeliveryList'),
          '404': notFound,
          ...common4xx,
        },
      },
    },
    {
      // Send a delivery again now, with a fresh retry schedule.
      method: 'post',
      path: '/webhooks/:id/deliveries/:delivery/redeliver',
      handle: [
        auth,
        async (ctx) => {
          const { id = '', delivery = '' } = params(ctx);
          const row = await webhooks.redeliver(clientOf(ctx).id, id, delivery);
          ctx.status = 202;
          ctx.set('Cache-Control', 'no-store');
          ctx.body = deliveryResource(row);
        },
      ],
      doc: {
        operationId: 'redeliverWebhook',
        tags: ['Webhooks'],
        summary: 'Send a delivery again',
        description:
          'Makes the delivery due now with a fresh retry schedule and the same `webhook-id` ' +
          '(whether it was delivered or failed). On a disabled endpoint it waits until the ' +
          'endpoint is enabled.',
        parameters: [idParameter('id', 'webhook'), idParameter('delivery', 'delivery')],
        responses: {
          '202': { description: 'Due now.', content: json(ref('WebhookDelivery')) },
          '404': notFound,
          '409': problem('An attempt of this delivery is in flight right now.'),
          ...common4xx,
        },
      },
    },
  ];
}
