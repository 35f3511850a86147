/**
 * The OpenAPI document describes push delivery: the management routes, the event stream, and
 * (OpenAPI 3.1 `webhooks`) the payloads a receiver gets; and what the service sends matches it.
 */
import SwaggerParser from '@apidevtools/swagger-parser';
import { expect } from 'chai';
import type { OpenAPIV3_1 } from 'openapi-types';
import { createAjv } from '../src/http/validation.js';
import { eventually } from './support/db.js';
import { type Harness, startHarness, submitJob } from './support/harness.js';
import { TestHeuristic, echoAfter, tx } from './support/heuristics.js';
import { pushConfig, register } from './support/push.js';
import { Receiver } from './support/receiver.js';
import { openEvents, serve } from './support/sse.js';

describe('OpenAPI: webhooks and the event stream', () => {
  let h: Harness;
  let receiver: Receiver;
  before(async () => {
    receiver = await Receiver.start();
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), config: pushConfig() });
  });
  after(async () => {
    await h.stop();
    await receiver.close();
  });

  it('documents the routes and, under `webhooks`, each payload, in a document a validator accepts', async () => {
    const { body } = await h.http.get('/openapi.json').expect(200);
    const api = (await SwaggerParser.validate(structuredClone(body))) as OpenAPIV3_1.Document;
    expect(Object.keys(api.paths ?? {})).to.include.members([
      '/webhooks',
      '/webhooks/{id}',
      '/webhooks/{id}/rotate-secret',
      '/webhooks/{id}/deliveries',
      '/webhooks/{id}/deliveries/{delivery}/redeliver',
      '/events',
    ]);
    expect(Object.keys(body.paths['/webhooks/{id}'])).to.have.members(['get', 'patch', 'delete']);
    expect(Object.keys(body.webhooks)).to.deep.equal([
      'job.succeeded',
      'job.failed',
      'job.canceled',
      'batch.completed',
    ]);
    const received = body.webhooks['job.succeeded'].post;
    expect(received.requestBody.content['application/json'].schema).to.deep.equal({
      $ref: '#/components/schemas/Event',
    });
    expect(received.parameters.map((p: { name: string }) => p.name)).to.deep.equal([
      'webhook-id',
      'webhook-timestamp',
      'webhook-signature',
    ]);
    expect(body.paths['/events'].get.responses['200'].content).to.have.property(
      'text/event-stream',
    );
    expect(body.components.schemas.WebhookCreate.required).to.deep.equal(['url']);
  });

  it('answers, webhook bodies and stream messages match the documented schemas', async () => {
    const ajv = createAjv();
    const check = (schema: string, value: unknown) => {
      const validate = ajv.getSchema(schema);
      if (!validate) throw new Error(`no schema ${schema}`);
      expect(validate(value), `${schema}: ${ajv.errorsText(validate.errors)}`).to.equal(true);
    };
    const server = await serve(h);
    const stream = await openEvents(server.base, h.key.key);
    try {
      const created = await h.http
        .post('/webhooks')
        .send({ url: `${receiver.url}/a` })
        .expect(201);
      check('Webhook', created.body);
      const { id } = await register(h, receiver);
      check('WebhookList', (await h.http.get('/webhooks')).body);
      check('Webhook', (await h.http.patch(`/webhooks/${id}`).send({ description: 'x' })).body);
      check('Webhook', (await h.http.post(`/webhooks/${id}/rotate-secret`)).body);
      await submitJob(h, 'Netflix');
      await h.http
        .post('/normalize_merchant/batch')
        .send({ transactions: [tx('A')] })
        .expect(202);
      await eventually(async () => receiver.received.length >= 6 && stream.messages.length === 3);
      for (const r of receiver.received) check('Event', JSON.parse(r.body));
      for (const m of stream.messages) check('Event', JSON.parse(m.data));
      const log = await eventually(async () => {
        const page = (await h.http.get(`/webhooks/${id}/deliveries`)).body;
        return page.deliveries.every((d: { status: string }) => d.status === 'delivered') && page;
      });
      check('WebhookDeliveryList', log);
      check(
        'WebhookDelivery',
        (await h.http.post(`/webhooks/${id}/deliveries/${log.deliveries[0].id}/redeliver`)).body,
      );
      check('Problem', (await h.http.post('/webhooks').send({}).expect(422)).body);
    } finally {
      stream.close();
      await server.close();
    }
  });
});
